// Test plugins: the example plugin (suite/plugin/examples) with one fault, chosen at compile
// time. maskcheck's isolation must survive each of them, and its properties must catch the bug.
//   FAULT_CRASH     attention_forward dereferences NULL (queries still answer)
//   FAULT_HANG      attention_forward never returns
//   FAULT_LOAD      the entry point itself crashes, while maskcheck loads the library
//   FAULT_LOAD_HANG the entry point never returns
//   FAULT_ABI       the table reports ABI FAULT_ABI_MAJOR.FAULT_ABI_MINOR (1.0 or 1.1: an older
//                   table whose later fields, still set as in the example, must not be read)
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
//   FAULT_CRASH_SHAPE  attention_forward dereferences NULL for one shape only (head dim D with
//                   D % 4 == 3 and more than 4 keys), after printing a line to stderr: the crash
//                   is shrunk and saved like any failure
//   FAULT_STORAGE   no fault, ABI 1.1 mixed storage: f16 attention with q and out in float32
//                   beside k and v in float16 (llama.cpp's layout); the example reads each tensor
//                   in its own dtype
//   FAULT_OVERROUND declares float32 attention but rounds k and v to float16 before computing:
//                   it rounds more than it declares
//   FAULT_ADDITIVE  no fault: asks for the additive mask tensor (ABI 1.1; float16 in f16 cases,
//                   float32 otherwise) and reads only that
//   FAULT_UNAVAILABLE  declines to load with a reason (ABI 1.1's unavailable)
//   FAULT_NULL      prints 40 lines to stderr and returns NULL from the entry point
//   FAULT_CRASH_BACKWARD  attention_backward (ABI 1.2) dereferences NULL (queries still answer)
//   FAULT_BACKWARD_CAUSAL the backward ignores the causal clause: every key of the row's segment
//                   contributes (a backward kernel written apart from its forward)
//   FAULT_BACKWARD_UNWRITTEN  the backward leaves the dk rows of keys that no query sees as it
//                   found them (unwritten) instead of writing zeros
//   FAULT_BACKWARD_DTYPES  an invalid table: float32 attention, a backward for every dtype
//   FAULT_CE_UPSTREAM_READ  cross_entropy multiplies the gradient rows of ignored labels by their
//                   grad_output too (0 * NaN: the NaN maskcheck puts there leaks into dlogits)
//   FAULT_CE_UPSTREAM_DTYPES  an invalid table: cross-entropy in float32 only, an upstream
//                   gradient for every dtype
//   FAULT_SINK_IGNORED  declares every score modifier (ABI 1.3) but drops the sink logits: each
//                   row's weights still sum to 1
//   FAULT_MODS_UNKNOWN  an invalid table: score_modifiers with a bit ABI 1.3 does not define
//   FAULT_SINKS_IGNORED  an ABI 1.4 plugin that ignores maskcheck_mask.sink_tokens: a StreamingLLM
//                   cache served by a plain sliding-window kernel
//   FAULT_PAGED_IN_ORDER  ABI 1.5's paged KV cache with the block table ignored: sequence b's
//                   i-th page taken as page (b * max_pages + i) % num_pages, as if allocated in
//                   order
// Keep, storage, additive and the backward faults keep the example's attention_backward; the
// others have none (dtypes 0: a 1.2 table without the entry). Only those without a fault in the
// padded layout keep the varlen entry.
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define EXAMPLE_PLUGIN_NO_ENTRY
#include "example_plugin.c"

#if defined(FAULT_UNWRITTEN) || defined(FAULT_BACKWARD_UNWRITTEN)
// The bytes of an output before a call (NULL when out of memory), and putting back, after it, the
// rows (of the last dimension) that the call wrote as all zeros: outputs left unwritten where
// they should be zero.
static int64_t numel(const DLTensor* t) {
  int64_t n = 1;
  for (int d = 0; d < t->ndim; ++d) n *= t->shape[d];
  return n;
}
static unsigned char* copy_bytes(const DLTensor* t) {
  const size_t bytes = (size_t)numel(t) * (size_t)(t->dtype.bits / 8);
  unsigned char* copy = malloc(bytes + 1);
  if (copy) memcpy(copy, t->data, bytes);
  return copy;
}
static void unwrite_zero_rows(const DLTensor* t, const unsigned char* before) {
  const int64_t D = t->shape[t->ndim - 1];
  const size_t row = (size_t)D * (size_t)(t->dtype.bits / 8);
  for (int64_t r = 0; D > 0 && r < numel(t) / D; ++r) {
    int zero = 1;
    for (int64_t d = 0; d < D && zero; ++d) zero = load(t, r * D + d) == 0.0;
    if (zero) memcpy((unsigned char*)t->data + (size_t)r * row, before + (size_t)r * row, row);
  }
}
#endif

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
  unsigned char* before = copy_bytes(a->out);
  if (!before) return fail(MASKCHECK_INTERNAL, msg, msg_size, "out of memory");
  const maskcheck_status s = example_attention(a, msg, msg_size);
  /* The rows the example wrote as zeros (no visible key) go back to what they held. */
  if (s == MASKCHECK_OK) unwrite_zero_rows(a->out, before);
  free(before);
  return s;
}
#elif defined(FAULT_CRASH_BACKWARD)
#define FAULT_NAME "crash_backward"
#define FAULTY_BACKWARD
static maskcheck_status faulty_backward(const maskcheck_attention_backward_args* a, char* msg,
                                        size_t msg_size) {
  if (a->query) return example_attention_backward(a, msg, msg_size);
  volatile int* volatile nowhere = NULL;
  *nowhere = 1;
  return MASKCHECK_OK;
}
#elif defined(FAULT_BACKWARD_CAUSAL)
#define FAULT_NAME "backward_causal"
#define FAULTY_BACKWARD
static maskcheck_status faulty_backward(const maskcheck_attention_backward_args* a, char* msg,
                                        size_t msg_size) {
  maskcheck_mask m = *a->mask;
  m.causal = 0;
  maskcheck_attention_backward_args b = *a;
  b.mask = &m;
  return example_attention_backward(&b, msg, msg_size);
}
#elif defined(FAULT_BACKWARD_UNWRITTEN)
#define FAULT_NAME "backward_unwritten"
#define FAULTY_BACKWARD
static maskcheck_status faulty_backward(const maskcheck_attention_backward_args* a, char* msg,
                                        size_t msg_size) {
  if (a->query) return example_attention_backward(a, msg, msg_size);
  unsigned char* before = copy_bytes(a->dk);
  if (!before) return fail(MASKCHECK_INTERNAL, msg, msg_size, "out of memory");
  const maskcheck_status s = example_attention_backward(a, msg, msg_size);
  /* The key rows the example wrote as zeros in dk (no query sees them) go back to what they held.
   */
  if (s == MASKCHECK_OK) unwrite_zero_rows(a->dk, before);
  free(before);
  return s;
}
#elif defined(FAULT_SINK_IGNORED)
#define FAULT_NAME "sink_ignored"
static maskcheck_status faulty_attention(const maskcheck_attention_args* a, char* msg,
                                         size_t msg_size) {
  maskcheck_attention_args b = *a;
  b.sink_logits = NULL;
  return example_attention(&b, msg, msg_size);
}
#elif defined(FAULT_SINKS_IGNORED)
#define FAULT_NAME "sinks_ignored"
static maskcheck_status faulty_attention(const maskcheck_attention_args* a, char* msg,
                                         size_t msg_size) {
  maskcheck_attention_args b = *a;
  maskcheck_mask m = *a->mask;
  m.sink_tokens = 0;
  b.mask = &m;
  return example_attention(&b, msg, msg_size);
}
#elif defined(FAULT_PAGED_IN_ORDER)
#define FAULT_NAME "paged_in_order"
static maskcheck_status faulty_attention(const maskcheck_attention_args* a, char* msg,
                                         size_t msg_size) {
  if (a->query || !a->block_table) return example_attention(a, msg, msg_size);
  const int64_t B = a->block_table->shape[0], max_pages = a->block_table->shape[1];
  const int64_t num_pages = a->k->shape[0];
  int32_t* table = (int32_t*)malloc((size_t)(B * max_pages > 0 ? B * max_pages : 1) * 4);
  if (!table) return fail(MASKCHECK_INTERNAL, msg, msg_size, "out of memory");
  for (int64_t i = 0; i < B * max_pages; ++i)
    table[i] = num_pages > 0 ? (int32_t)(i % num_pages) : 0;
  maskcheck_attention_args b = *a;
  b.block_table_host = table;
  const maskcheck_status s = example_attention(&b, msg, msg_size);
  free(table);
  return s;
}
#elif defined(FAULT_CE_UPSTREAM_READ)
#define FAULT_NAME "ce_upstream_read"
#define HAVE_FAULTY_CROSS_ENTROPY
#define faulty_attention example_attention
static maskcheck_status faulty_cross_entropy(const maskcheck_cross_entropy_args* a,
                                             maskcheck_loss_totals* totals, char* msg,
                                             size_t msg_size) {
  const maskcheck_status s = example_cross_entropy(a, totals, msg, msg_size);
  if (s != MASKCHECK_OK || a->query || !a->dlogits || !a->grad_output ||
      a->reduction != MASKCHECK_REDUCTION_NONE)
    return s;
  const int64_t N = a->logits->shape[0], V = a->logits->shape[1];
  const int64_t* labels = (const int64_t*)((const char*)a->labels->data + a->labels->byte_offset);
  for (int64_t i = 0; i < N; ++i)
    if (labels[i] == a->ignore_index)
      for (int64_t j = 0; j < V; ++j)
        store(a->dlogits, i * V + j, load(a->dlogits, i * V + j) * load(a->grad_output, i));
  return s;
}
#elif defined(FAULT_KEEP)
static maskcheck_status faulty_attention(const maskcheck_attention_args* a, char* msg,
                                         size_t msg_size) {
  if (a->lse) return fail(MASKCHECK_INVALID_ARGUMENT, msg, msg_size, "lse despite NO_LSE");
  if (!a->mask->keep) return fail(MASKCHECK_INVALID_ARGUMENT, msg, msg_size, "no keep tensor");
  return example_attention(a, msg, msg_size);
}
#elif defined(FAULT_CRASH_SHAPE)
#define FAULT_NAME "crash_shape"
static maskcheck_status faulty_attention(const maskcheck_attention_args* a, char* msg,
                                         size_t msg_size) {
  if (a->query) return example_attention(a, msg, msg_size);
  if (a->q->shape[3] % 4 == 3 && a->k->shape[2] > 4) {
    fprintf(stderr, "crash_shape plugin: D = %lld, Lk = %lld is the shape it dies on\n",
            (long long)a->q->shape[3], (long long)a->k->shape[2]);
    fflush(stderr);
    volatile int* volatile nowhere = NULL;
    *nowhere = 1;
  }
  return example_attention(a, msg, msg_size);
}
#elif defined(FAULT_OVERROUND)
#define FAULT_NAME "overround"
// k or v with every element rounded to float16 (as float32), in `buf`.
static DLTensor rounded_to_f16(const DLTensor* t, float* buf) {
  DLTensor r = *t;
  int64_t n = 1;
  for (int d = 0; d < t->ndim; ++d) n *= t->shape[d];
  for (int64_t i = 0; i < n; ++i)
    buf[i] = maskcheck_f16_to_f32(maskcheck_f32_to_f16((float)load(t, i)));
  r.data = buf;
  return r;
}
static maskcheck_status faulty_attention(const maskcheck_attention_args* a, char* msg,
                                         size_t msg_size) {
  if (a->query) return example_attention(a, msg, msg_size);
  int64_t n = 1;
  for (int d = 0; d < a->k->ndim; ++d) n *= a->k->shape[d];
  float* kb = (float*)malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
  float* vb = (float*)malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
  if (!kb || !vb) {
    free(kb);
    free(vb);
    return fail(MASKCHECK_INTERNAL, msg, msg_size, "out of memory");
  }
  const DLTensor k = rounded_to_f16(a->k, kb), v = rounded_to_f16(a->v, vb);
  maskcheck_attention_args b = *a;
  b.k = &k;
  b.v = &v;
  const maskcheck_status s = example_attention(&b, msg, msg_size);
  free(kb);
  free(vb);
  return s;
}
#elif defined(FAULT_ADDITIVE)
#define FAULT_NAME "additive"
// The keep mask an additive mask stands for: 0 -> 1, -inf -> 0; anything else is an error.
static maskcheck_status keep_from_additive(const maskcheck_mask* m, uint8_t** keep, DLTensor* t,
                                           int64_t* shape, char* msg, size_t msg_size) {
  const DLTensor* add = m->additive;
  if (!add) return fail(MASKCHECK_INVALID_ARGUMENT, msg, msg_size, "no additive mask tensor");
  if (add->dtype.code != kDLFloat || (add->dtype.bits != 32 && add->dtype.bits != 16))
    return fail(MASKCHECK_INVALID_ARGUMENT, msg, msg_size, "additive mask of dtype %d/%d",
                add->dtype.code, add->dtype.bits);
  const int64_t n = m->batch * m->q_len * m->k_len;
  *keep = (uint8_t*)malloc((size_t)(n > 0 ? n : 1));
  if (!*keep) return fail(MASKCHECK_INTERNAL, msg, msg_size, "out of memory");
  for (int64_t i = 0; i < n; ++i) {
    const double x = load(add, i);
    if (x != 0.0 && x != -INFINITY) {
      free(*keep);
      return fail(MASKCHECK_INVALID_ARGUMENT, msg, msg_size, "additive mask[%lld] = %g",
                  (long long)i, x);
    }
    (*keep)[i] = x == 0.0;
  }
  shape[0] = m->batch;
  shape[1] = m->q_len;
  shape[2] = m->k_len;
  memset(t, 0, sizeof *t);
  t->data = *keep;
  t->device.device_type = kDLCPU;
  t->ndim = 3;
  t->dtype.code = kDLUInt;
  t->dtype.bits = 8;
  t->dtype.lanes = 1;
  t->shape = shape;
  return MASKCHECK_OK;
}
static maskcheck_status faulty_attention(const maskcheck_attention_args* a, char* msg,
                                         size_t msg_size) {
  if (a->query)
    return a->mask->additive ? example_attention(a, msg, msg_size)
                             : fail(MASKCHECK_INVALID_ARGUMENT, msg, msg_size,
                                    "no additive mask tensor in a query");
  uint8_t* keep = NULL;
  DLTensor t;
  int64_t shape[3];
  maskcheck_status s = keep_from_additive(a->mask, &keep, &t, shape, msg, msg_size);
  if (s != MASKCHECK_OK) return s;
  maskcheck_mask m = *a->mask;
  m.keep = &t;
  maskcheck_attention_args b = *a;
  b.mask = &m;
  s = example_attention(&b, msg, msg_size);
  free(keep);
  return s;
}
static maskcheck_status faulty_softmax(const maskcheck_softmax_args* a, char* msg,
                                       size_t msg_size) {
  if (a->query) return example_softmax(a, msg, msg_size);
  uint8_t* keep = NULL;
  DLTensor t;
  int64_t shape[3];
  maskcheck_status s = keep_from_additive(a->mask, &keep, &t, shape, msg, msg_size);
  if (s != MASKCHECK_OK) return s;
  maskcheck_mask m = *a->mask;
  m.keep = &t;
  maskcheck_softmax_args b = *a;
  b.mask = &m;
  s = example_softmax(&b, msg, msg_size);
  free(keep);
  return s;
}
#define HAVE_FAULTY_SOFTMAX
#else
#define faulty_attention example_attention
#endif
#ifdef FAULTY_BACKWARD
#define faulty_attention example_attention
#else
#define faulty_backward example_attention_backward
#endif

MASKCHECK_PLUGIN_EXPORT const maskcheck_plugin* maskcheck_plugin_v1(void) {
  static maskcheck_plugin p;
  p = example;
  p.attention_forward = faulty_attention;
  p.attention_backward = faulty_backward;
#ifdef HAVE_FAULTY_SOFTMAX
  p.softmax_forward = faulty_softmax;
#endif
#ifdef HAVE_FAULTY_CROSS_ENTROPY
  p.cross_entropy = faulty_cross_entropy;
#endif
#if !defined(FAULT_NONE) && !defined(FAULT_STORAGE) && !defined(FAULT_ADDITIVE)
  p.attention_varlen_forward = NULL;  // the faults are in the padded layout
#endif
#if !defined(FAULT_KEEP) && !defined(FAULT_STORAGE) && !defined(FAULT_ADDITIVE) && \
    !defined(FAULTY_BACKWARD) && !defined(FAULT_ABI_MAJOR) && !defined(FAULT_BACKWARD_DTYPES)
  p.attention_backward_dtypes = 0;  // a 1.2 table without the entry
  p.attention_backward = NULL;
#endif
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
#elif defined(FAULT_MODS_UNKNOWN)
  p.name = "mods_unknown";
  p.score_modifiers |= 8u;
#elif defined(FAULT_KEEP)
  p.name = "keep";
  p.flags = MASKCHECK_FLAG_KEEP_TENSOR | MASKCHECK_FLAG_NO_LSE;
#elif defined(FAULT_STORAGE)
  p.name = "storage";
  // f16 cases: q and out in float32, k and v in float16; every other dtype uniform.
  p.storage[MASKCHECK_DTYPE_INDEX_F16].q = MASKCHECK_DTYPE_F32;
  p.storage[MASKCHECK_DTYPE_INDEX_F16].out = MASKCHECK_DTYPE_F32;
  p.storage[MASKCHECK_DTYPE_INDEX_F16].k = MASKCHECK_DTYPE_F16;
  p.attention_dtypes = MASKCHECK_DTYPE_F32 | MASKCHECK_DTYPE_F16;
  p.attention_backward_dtypes = p.attention_dtypes;
  p.softmax_dtypes = 0;
  p.cross_entropy_dtypes = 0;
  p.cross_entropy_upstream_dtypes = 0;
#elif defined(FAULT_OVERROUND)
  p.attention_dtypes = MASKCHECK_DTYPE_F32;
#elif defined(FAULT_BACKWARD_DTYPES)
  p.name = "backward_dtypes";
  p.attention_dtypes = MASKCHECK_DTYPE_F32;  // attention_backward_dtypes stays all four
#elif defined(FAULT_ADDITIVE)
  p.flags = MASKCHECK_FLAG_ADDITIVE_MASK;
  p.storage[MASKCHECK_DTYPE_INDEX_F16].mask = MASKCHECK_DTYPE_F16;
  p.cross_entropy_dtypes = 0;
  p.cross_entropy_upstream_dtypes = 0;
#elif defined(FAULT_CE_UPSTREAM_DTYPES)
  p.name = "ce_upstream_dtypes";
  p.cross_entropy_dtypes = MASKCHECK_DTYPE_F32;  // cross_entropy_upstream_dtypes stays all four
#elif defined(FAULT_UNAVAILABLE)
  p.name = "unavailable";
  p.unavailable = "this test plugin needs a device this machine does not have";
#elif defined(FAULT_NULL)
  for (int i = 1; i <= 40; ++i) fprintf(stderr, "null plugin: diagnostic line %d of 40\n", i);
  return NULL;
#endif
  return &p;
}
