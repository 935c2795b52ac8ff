// Test plugins: the example plugin (suite/plugin/examples) with one fault, chosen at compile
// time. maskcheck's isolation must survive each of them, and its properties must catch the bug.
//   FAULT_CRASH     attention_forward dereferences NULL (queries still answer)
//   FAULT_HANG      attention_forward never returns
//   FAULT_LOAD      the entry point itself crashes, while maskcheck loads the library
//   FAULT_LOAD_HANG the entry point never returns
//   FAULT_ABI       the table reports ABI FAULT_ABI_MAJOR.FAULT_ABI_MINOR
//   FAULT_LSE_INF   log-sum-exp +inf for fully masked rows, as FlashAttention writes it: a named
//                   deviation (empty_row_lse), not a failure unless --strict
//   FAULT_RIGHT_PADDING  the masking bug: the padding side is ignored, every batch is taken as
//                   right-padded (a kernel written for training batches, fed left-padded prompts)
//   FAULT_PICKY     declines attention over packed documents (UNSUPPORTED, with the reason)
//   FAULT_OVERRUN   attention_forward writes one element past the end of `out`
//   FAULT_LEAK      attention_forward leaks 64 MiB per call (touched, so resident)
//   FAULT_ORPHAN    attention_forward forks a child that calls setsid, forks a grandchild that
//                   sleeps forever (its pid written to $MASKCHECK_TEST_ORPHAN_FILE), and exits:
//                   the grandchild is an orphan in a session of its own
//   FAULT_UNWRITTEN attention_forward leaves the output rows of queries that see no key as it
//                   found them (unwritten) instead of writing zeros
//   FAULT_KEEP      no fault: asks for the keep-mask tensor and reads only that, and declares
//                   that it has no log-sum-exp (and insists on never being asked for it)
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define EXAMPLE_PLUGIN_NO_ENTRY
#include "example_plugin.c"

#if defined(FAULT_CRASH)
#define FAULT_NAME "crash"
static maskcheck_status faulty_attention(const maskcheck_attention_args* a, char* msg,
                                         size_t msg_size) {
  if (a->query) return example_attention(a, msg, msg_size);
  volatile int* volatile nowhere = NULL;
  *nowhere = 1;
  return MASKCHECK_OK;
}
#elif defined(FAULT_HANG)
#define FAULT_NAME "hang"
static maskcheck_status faulty_attention(const maskcheck_attention_args* a, char* msg,
                                         size_t msg_size) {
  if (a->query) return example_attention(a, msg, msg_size);
  for (;;) pause();
}
#elif defined(FAULT_LSE_INF)
#define FAULT_NAME "lse_inf"
static maskcheck_status faulty_attention(const maskcheck_attention_args* a, char* msg,
                                         size_t msg_size) {
  const maskcheck_status s = example_attention(a, msg, msg_size);
  if (s != MASKCHECK_OK || a->query || !a->lse) return s;
  const int64_t rows = a->lse->shape[0] * a->lse->shape[1] * a->lse->shape[2];
  for (int64_t r = 0; r < rows; ++r)
    if (load(a->lse, r) == -INFINITY) store(a->lse, r, INFINITY);
  return s;
}
#elif defined(FAULT_RIGHT_PADDING)
#define FAULT_NAME "right_padding"
static maskcheck_status faulty_attention(const maskcheck_attention_args* a, char* msg,
                                         size_t msg_size) {
  maskcheck_mask m = *a->mask;
  m.padding = MASKCHECK_PADDING_RIGHT;
  maskcheck_attention_args b = *a;
  b.mask = &m;
  return example_attention(&b, msg, msg_size);
}
#elif defined(FAULT_PICKY)
#define FAULT_NAME "picky"
static maskcheck_status faulty_attention(const maskcheck_attention_args* a, char* msg,
                                         size_t msg_size) {
  if (a->mask && a->mask->doc_ptr)
    return fail(MASKCHECK_UNSUPPORTED, msg, msg_size, "picky plugin: no packed documents");
  return example_attention(a, msg, msg_size);
}
#elif defined(FAULT_OVERRUN)
#define FAULT_NAME "overrun"
static maskcheck_status faulty_attention(const maskcheck_attention_args* a, char* msg,
                                         size_t msg_size) {
  const maskcheck_status s = example_attention(a, msg, msg_size);
  if (s != MASKCHECK_OK || a->query) return s;
  int64_t n = 1;
  for (int d = 0; d < a->out->ndim; ++d) n *= a->out->shape[d];
  store(a->out, n, 0.0);  // a tail tile without its bounds check
  return s;
}
#elif defined(FAULT_LEAK)
#define FAULT_NAME "leak"
static void* volatile leaked;  // a chain through the blocks: the compiler cannot drop them
static maskcheck_status faulty_attention(const maskcheck_attention_args* a, char* msg,
                                         size_t msg_size) {
  if (!a->query) {
    const size_t n = (size_t)64 << 20;
    char* lost = malloc(n);
    if (lost) {
      memset(lost, 1, n);
      *(void**)lost = leaked;
      leaked = lost;
    }
  }
  return example_attention(a, msg, msg_size);
}
#elif defined(FAULT_ORPHAN)
#define FAULT_NAME "orphan"
static maskcheck_status faulty_attention(const maskcheck_attention_args* a, char* msg,
                                         size_t msg_size) {
  static int started = 0;
  if (!a->query && !started) {
    started = 1;
    const pid_t child = fork();
    if (child == 0) {
      setsid();
      const pid_t grandchild = fork();
      if (grandchild == 0) {
        for (;;) pause();
      }
      const char* path = getenv("MASKCHECK_TEST_ORPHAN_FILE");
      FILE* f = path ? fopen(path, "a") : NULL;
      if (f) {
        fprintf(f, "%d\n", (int)grandchild);
        fclose(f);
      }
      _exit(0);
    }
    if (child > 0) waitpid(child, NULL, 0);
  }
  return example_attention(a, msg, msg_size);
}
#elif defined(FAULT_UNWRITTEN)
#define FAULT_NAME "unwritten"
static maskcheck_status faulty_attention(const maskcheck_attention_args* a, char* msg,
                                         size_t msg_size) {
  if (a->query) return example_attention(a, msg, msg_size);
  const DLTensor* o = a->out;
  int64_t n = 1;
  for (int d = 0; d < o->ndim; ++d) n *= o->shape[d];
  const size_t width = (size_t)(o->dtype.bits / 8), row = (size_t)o->shape[3] * width;
  unsigned char* before = malloc((size_t)n * width + 1);
  if (!before) return fail(MASKCHECK_INTERNAL, msg, msg_size, "out of memory");
  memcpy(before, o->data, (size_t)n * width);
  const maskcheck_status s = example_attention(a, msg, msg_size);
  /* The rows the example wrote as zeros (no visible key) go back to what they held. */
  for (int64_t r = 0; s == MASKCHECK_OK && r < n / o->shape[3]; ++r) {
    int zero = 1;
    for (int64_t d = 0; d < o->shape[3] && zero; ++d) zero = load(o, r * o->shape[3] + d) == 0.0;
    if (zero) memcpy((unsigned char*)o->data + (size_t)r * row, before + (size_t)r * row, row);
  }
  free(before);
  return s;
}
#elif defined(FAULT_KEEP)
static maskcheck_status faulty_attention(const maskcheck_attention_args* a, char* msg,
                                         size_t msg_size) {
  if (a->lse) return fail(MASKCHECK_INVALID_ARGUMENT, msg, msg_size, "lse despite NO_LSE");
  if (!a->mask->keep) return fail(MASKCHECK_INVALID_ARGUMENT, msg, msg_size, "no keep tensor");
  return example_attention(a, msg, msg_size);
}
#else
#define faulty_attention example_attention
#endif

MASKCHECK_PLUGIN_EXPORT const maskcheck_plugin* maskcheck_plugin_v1(void) {
  static maskcheck_plugin p;
  p = example;
  p.attention_forward = faulty_attention;
#ifdef FAULT_NAME
  p.name = FAULT_NAME;
#endif
#if defined(FAULT_LOAD)
  p.name = "load";
  volatile int* volatile nowhere = NULL;
  *nowhere = 1;
#elif defined(FAULT_LOAD_HANG)
  for (;;) pause();
#elif defined(FAULT_ABI_MAJOR)
  p.name = "abi";
  p.abi_major = FAULT_ABI_MAJOR;
  p.abi_minor = FAULT_ABI_MINOR;
#elif defined(FAULT_KEEP)
  p.name = "keep";
  p.flags = MASKCHECK_FLAG_KEEP_TENSOR | MASKCHECK_FLAG_NO_LSE;
#endif
  return &p;
}
