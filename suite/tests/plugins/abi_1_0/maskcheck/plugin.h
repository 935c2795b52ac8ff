/* The plugin ABI header as maskcheck 1.0 shipped it (maskcheck/plugin.h at ABI 1.0), kept
 * unchanged to build abi10_plugin.c: a plugin built against an older minor version must keep
 * loading. */
/* maskcheck plugin ABI, version 1.0: test your own kernels with `maskcheck verify --plugin`.
 *
 * A plugin is a shared library that exports one C function, maskcheck_plugin_v1(), returning a
 * table: what the plugin is (name, ABI version, device, dtypes per operation, flags) and its
 * operations (masked attention forward, masked softmax, cross-entropy forward + backward).
 * maskcheck dlopen()s the library in a child process, checks the ABI version, and runs its whole
 * property catalogue against the plugin: every tensor the plugin sees is a DLPack DLTensor built
 * from a randomized, shrinking test case, and every output is compared with a naive fp64
 * reference. A plugin that crashes or hangs fails, and the rest of the run carries on.
 *
 * The header is C99 and C++ alike. It needs DLPack's <dlpack/dlpack.h> (0.6 or later; DLTensor
 * has not changed since). A minimal plugin:
 *
 *   #include <maskcheck/plugin.h>
 *
 *   static maskcheck_status my_attention(const maskcheck_attention_args* a, char* msg,
 *                                        size_t msg_size) { ... }
 *
 *   MASKCHECK_PLUGIN_EXPORT const maskcheck_plugin* maskcheck_plugin_v1(void) {
 *     static maskcheck_plugin p;
 *     p.abi_major = MASKCHECK_PLUGIN_ABI_VERSION_MAJOR;
 *     p.abi_minor = MASKCHECK_PLUGIN_ABI_VERSION_MINOR;
 *     p.name = "my_kernels";
 *     ...
 *     p.attention_dtypes = MASKCHECK_DTYPE_F32 | MASKCHECK_DTYPE_BF16;
 *     p.attention_forward = my_attention;
 *     return &p;
 *   }
 *
 * suite/plugin/examples/example_plugin.c is a complete, correct plugin to start from.
 *
 * ------------------------------------------------------------------------------------------
 * Semantics (the same contract as maskcheck's reference, reference/.../problems.hpp)
 *
 * Mask polarity: a keep-mask holds 1 where attention is allowed (Hugging Face attention_mask,
 * PyTorch SDPA boolean attn_mask).
 *
 * The mask of an attention-shaped problem is [B, Lq, Lk], shared by every head. Query q of
 * sequence b may see key k when all of these hold:
 *   padding:   sequence b has q_lens[b] valid queries and k_lens[b] valid keys, at [0, len) with
 *              right padding or at [L - len, L) with left padding. A padded query sees nothing;
 *              a padded key is seen by nobody.
 *   documents: with cu_seqlens, q and k lie in the same document (below).
 *   causal:    k <= diag(q).
 *   window:    diag(q) - window_left <= k <= diag(q) + window_right.
 * Causal and window are measured from the diagonal of the *segment* the query lies in: the
 * sequence's valid range, or the query's document when cu_seqlens are given, in positions
 * relative to the segment's start (qi = q - segment start, likewise for keys):
 *   bottom-right alignment (the default; FlashAttention >= 2.1, flashinfer):
 *     diag(qi) = qi + (segment_k_len - segment_q_len)   -- the last query sees the last key;
 *   top-left alignment (PyTorch is_causal=True):  diag(qi) = qi.
 * causal is the window (unbounded, 0); both may be given, and then both apply.
 *
 * Documents (packed sequences inside a padded batch): cu_seqlens_q/k of sequence b split its
 * *valid* query and key ranges into documents: non-decreasing offsets from 0 to q_lens[b]
 * (k_lens[b]), the same number of documents for q and k. Offsets are relative to the first
 * valid position (so with left padding, document 0 starts at Lq - q_lens[b]). Documents may be
 * empty. A query belongs to the last document starting at or before it.
 *
 * Fully masked rows: a query with no visible key (a padded query, left padding + causal,
 * bottom-right causal with more queries than keys, an empty document, a window that misses
 * every key) outputs all zeros, softmax weights all zeros, log-sum-exp -inf. Never NaN, and
 * never FlashAttention's +inf.
 *
 * Garbage: padded positions of q, k and v (and of softmax inputs) may hold NaN, inf or huge
 * values, and keys masked for some rows may hold huge finite values; no bit of any output may
 * depend on them. Every output element must be written: maskcheck fills outputs with NaN before
 * each call.
 *
 * Cross-entropy over logits [N, V], int64 labels [N] (ignore_index or a class in [0, V)),
 * optional per-row weights w [N] >= 0 (1 when absent), label smoothing eps in [0, 1]:
 *   l_i = -(1 - eps) log p_i[y_i] - (eps / V) sum_j log p_i[j],  p_i = softmax(logits_i);
 *   losses[i] = w_i l_i, and 0 for ignored rows;
 *   count = rows whose label is not ignore_index; weight_sum = sum of their w_i;
 *   reduction none/sum: loss = sum_i w_i l_i; mean: sum_i w_i l_i / weight_sum, and 0 when
 *   weight_sum is 0 (PyTorch gives NaN there; maskcheck's contract is 0).
 *   dlogits = d loss / d logits of the reduced loss (for `none`, of the sum of the rows):
 *     (softmax_i - (1 - eps) onehot(y_i) - eps / V) * w_i / norm, norm = weight_sum for mean
 *     and 1 otherwise; ignored rows get exactly 0, and so does every row for mean when
 *     weight_sum is 0. ignore_index is never a class (it is < 0 or >= V).
 *   A label outside [0, V) other than ignore_index is an error: return
 *   MASKCHECK_INVALID_ARGUMENT (maskcheck checks that you do).
 *
 * ------------------------------------------------------------------------------------------
 * Calls
 *
 * Every operation takes its arguments, a message buffer and its size, and returns a status:
 *   MASKCHECK_OK                the outputs are written;
 *   MASKCHECK_UNSUPPORTED       the plugin does not take this problem (a dtype, a head dim, a
 *                               mask feature): write the reason to the message buffer; maskcheck
 *                               skips the case and shows the reason beside the skipped count;
 *   MASKCHECK_INVALID_ARGUMENT  the inputs are invalid (an out-of-range label);
 *   MASKCHECK_INTERNAL          anything else that went wrong (an allocation, a CUDA error).
 * The message is NUL-terminated text, truncated to msg_size (snprintf(msg, msg_size, ...)); it is
 * ignored with MASKCHECK_OK.
 *
 * Queries: before running a case, maskcheck calls the operation with args->query != 0 and every
 * tensor's data == NULL (shapes, dtypes, devices and the mask description are as in the real
 * call). Answer MASKCHECK_OK if you would run it, or MASKCHECK_UNSUPPORTED with a reason. A
 * query must not touch tensor data. Every call is asked first, including the problems a property
 * derives from the drawn case (a sequence alone, left padding for right, causal as the window
 * (unbounded, 0), a wider window): declining any of them skips the case. Declining in the real
 * call after accepting the query fails the case.
 *
 * Tensors: DLPack DLTensors with dtype lanes 1, byte_offset 0, strides always given (never NULL)
 * and compact row-major in ABI 1.0, data aligned to 256 bytes, on the device the plugin declared
 * (device_type, device_id). Inputs must not be modified. Tensors never alias. Zero-sized
 * dimensions occur (B = 0, Lq = 0, N = 0, ...) and still have a non-NULL data pointer.
 * Calls come from one thread at a time; a plugin may keep global state (a workspace, a handle).
 * On CUDA the plugin runs on args->stream (a cudaStream_t) and maskcheck synchronizes it after
 * the call.
 *
 * The floating-point dtype of every op is one of F64, F32, F16, BF16 (DLPack kDLFloat 64/32/16,
 * kDLBfloat 16). Auxiliary float tensors (log-sum-exp, per-row losses, weights) are float32, or
 * float64 when the op's dtype is F64. Masks are uint8 (kDLUInt 8) holding 0 or 1.
 *
 * ABI versioning: the major version is part of the entry symbol's name and must equal
 * MASKCHECK_PLUGIN_ABI_VERSION_MAJOR; maskcheck accepts plugins built against its own minor
 * version or an older one, and refuses newer ones. Minor versions only append fields to the
 * structs: maskcheck reads no table field newer than the plugin's abi_minor, and a plugin never
 * needs the argument fields it does not know.
 */
#ifndef MASKCHECK_PLUGIN_H_
#define MASKCHECK_PLUGIN_H_

#include <stddef.h>
#include <stdint.h>

#include <dlpack/dlpack.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MASKCHECK_PLUGIN_ABI_VERSION_MAJOR 1
#define MASKCHECK_PLUGIN_ABI_VERSION_MINOR 0

/* The one symbol a plugin exports, and its type. */
#define MASKCHECK_PLUGIN_ENTRY_NAME "maskcheck_plugin_v1"

#if defined(_WIN32)
#define MASKCHECK_PLUGIN_EXPORT __declspec(dllexport)
#else
#define MASKCHECK_PLUGIN_EXPORT __attribute__((visibility("default")))
#endif

/* Status codes. */
typedef int32_t maskcheck_status;
#define MASKCHECK_OK 0
#define MASKCHECK_UNSUPPORTED 1
#define MASKCHECK_INVALID_ARGUMENT 2
#define MASKCHECK_INTERNAL 3

/* Dtype bits of the *_dtypes fields. */
#define MASKCHECK_DTYPE_F64 (1u << 0)  /* kDLFloat, 64 bits */
#define MASKCHECK_DTYPE_F32 (1u << 1)  /* kDLFloat, 32 bits */
#define MASKCHECK_DTYPE_F16 (1u << 2)  /* kDLFloat, 16 bits (IEEE binary16) */
#define MASKCHECK_DTYPE_BF16 (1u << 3) /* kDLBfloat, 16 bits */

/* Bits of maskcheck_plugin.flags. */
/* Pass every attention and softmax mask as a keep tensor (maskcheck_mask.keep) as well: for
 * kernels that take an explicit [B, Lq, Lk] mask rather than lengths and flags. */
#define MASKCHECK_FLAG_KEEP_TENSOR (1u << 0)
/* attention_forward never writes log-sum-exp: maskcheck draws only cases that do not ask for it
 * (args->lse is always NULL). Without the flag about half the cases ask for it. */
#define MASKCHECK_FLAG_NO_LSE (1u << 1)

/* Enumerations of maskcheck_mask. */
#define MASKCHECK_PADDING_RIGHT 0
#define MASKCHECK_PADDING_LEFT 1
#define MASKCHECK_ALIGN_BOTTOM_RIGHT 0
#define MASKCHECK_ALIGN_TOP_LEFT 1
/* A window side without limit (INT64_MAX); bounded sides are in [0, 2^40]. */
#define MASKCHECK_UNBOUNDED INT64_MAX

/* Reductions of cross-entropy. */
#define MASKCHECK_REDUCTION_NONE 0
#define MASKCHECK_REDUCTION_SUM 1
#define MASKCHECK_REDUCTION_MEAN 2

/* The mask of an attention-shaped problem, [B, Lq, Lk], shared by all heads (see the
 * semantics above). Every field is always set; the arrays are host memory, valid during the
 * call, also in queries. */
typedef struct maskcheck_mask {
  int64_t batch;         /* B */
  int64_t q_len;         /* Lq: padded queries per sequence */
  int64_t k_len;         /* Lk: padded keys per sequence */
  const int32_t* q_lens; /* [B] valid queries per sequence, or NULL: every sequence has Lq */
  const int32_t* k_lens; /* [B] valid keys per sequence, or NULL: every sequence has Lk */
  int32_t padding;       /* MASKCHECK_PADDING_RIGHT or _LEFT: where the valid range sits */
  int32_t causal;        /* non-zero: k <= diag(q) */
  int32_t alignment;     /* MASKCHECK_ALIGN_BOTTOM_RIGHT or _TOP_LEFT: where diag(q) is */
  int32_t reserved0;     /* 0 */
  int64_t window_left;   /* keys up to window_left before diag(q), or MASKCHECK_UNBOUNDED */
  int64_t window_right;  /* keys up to window_right after diag(q), or MASKCHECK_UNBOUNDED */
  /* Documents, or all three NULL: sequence b's documents are
   *   queries [cu_seqlens_q[doc_ptr[b] + d], cu_seqlens_q[doc_ptr[b] + d + 1]) and
   *   keys    [cu_seqlens_k[doc_ptr[b] + d], cu_seqlens_k[doc_ptr[b] + d + 1])
   * for d in [0, doc_ptr[b + 1] - doc_ptr[b] - 1), relative to the sequence's first valid
   * position. Each sequence's run of offsets starts at 0 and ends at q_lens[b] (k_lens[b]). */
  const int32_t* doc_ptr;      /* [B + 1]: sequence b's offsets start at doc_ptr[b] */
  const int32_t* cu_seqlens_q; /* [doc_ptr[B]] */
  const int32_t* cu_seqlens_k; /* [doc_ptr[B]] */
  /* The same mask materialized, uint8 [B, Lq, Lk], 1 = may attend, on the plugin's device;
   * NULL unless the plugin sets MASKCHECK_FLAG_KEEP_TENSOR. A kernel that takes only a mask
   * tensor reads this and may ignore the structured fields above. */
  const DLTensor* keep;
} maskcheck_mask;

/* Attention forward: out = softmax(q k^T * scale + mask) v.
 *   q:   [B, H, Lq, D]      k, v: [B, Hkv, Lk, D] with H % Hkv == 0: head h reads kv head
 *   out: [B, H, Lq, D]            h / (H / Hkv) (grouped-query attention); all in one dtype
 *   lse: [B, H, Lq] float32 (float64 for F64): the natural log-sum-exp of each row's scaled,
 *        masked scores (-inf for a fully masked row); NULL when not requested. */
typedef struct maskcheck_attention_args {
  const DLTensor* q;
  const DLTensor* k;
  const DLTensor* v;
  const DLTensor* out;
  const DLTensor* lse; /* may be NULL */
  const maskcheck_mask* mask;
  double scale;  /* always set: 1/sqrt(D) unless the case chose another */
  int32_t query; /* non-zero: answer whether you support this call; data pointers are NULL */
  int32_t reserved0;
  void* stream; /* CUDA: the cudaStream_t to run on; NULL on the CPU */
} maskcheck_attention_args;

/* Masked softmax over the last axis: y = softmax(x * scale + mask), x, y: [B, H, Lq, Lk],
 * one dtype. Masked entries of y are exactly 0; a fully masked row is all zeros. */
typedef struct maskcheck_softmax_args {
  const DLTensor* x;
  const DLTensor* y;
  const maskcheck_mask* mask;
  double scale;
  int32_t query;
  int32_t reserved0;
  void* stream;
} maskcheck_softmax_args;

/* Cross-entropy forward, and backward when dlogits is given (see the semantics above).
 *   logits:  [N, V] in the op's dtype
 *   labels:  [N] int64 (kDLInt 64)
 *   weights: [N] float32 (float64 for F64), or NULL: every weight is 1
 *   losses:  [N] float32 (float64 for F64), output: w_i l_i, 0 for ignored rows
 *   dlogits: [N, V] in the op's dtype, output, or NULL: forward only */
typedef struct maskcheck_cross_entropy_args {
  const DLTensor* logits;
  const DLTensor* labels;
  const DLTensor* weights; /* may be NULL */
  const DLTensor* losses;
  const DLTensor* dlogits; /* may be NULL */
  int64_t ignore_index;    /* usually -100 */
  double label_smoothing;  /* eps in [0, 1] */
  int32_t reduction;       /* MASKCHECK_REDUCTION_NONE, _SUM or _MEAN */
  int32_t query;
  void* stream;
} maskcheck_cross_entropy_args;

/* Scalar results of cross-entropy, in host memory. */
typedef struct maskcheck_loss_totals {
  double loss;       /* the reduced loss */
  int64_t count;     /* rows whose label is not ignore_index */
  double weight_sum; /* sum of their weights (count when unweighted) */
} maskcheck_loss_totals;

typedef maskcheck_status (*maskcheck_attention_fn)(const maskcheck_attention_args* args, char* msg,
                                                   size_t msg_size);
typedef maskcheck_status (*maskcheck_softmax_fn)(const maskcheck_softmax_args* args, char* msg,
                                                 size_t msg_size);
/* totals is NULL in queries. */
typedef maskcheck_status (*maskcheck_cross_entropy_fn)(const maskcheck_cross_entropy_args* args,
                                                       maskcheck_loss_totals* totals, char* msg,
                                                       size_t msg_size);

/* What maskcheck_plugin_v1() returns. Zero-initialize it and set what you provide; it must stay
 * valid while the library is loaded (a static is the usual choice). */
typedef struct maskcheck_plugin {
  uint32_t abi_major;      /* MASKCHECK_PLUGIN_ABI_VERSION_MAJOR */
  uint32_t abi_minor;      /* MASKCHECK_PLUGIN_ABI_VERSION_MINOR */
  const char* name;        /* 1-64 of [A-Za-z0-9_.+-]; maskcheck calls it "plugin:<name>" */
  const char* version;     /* free text (a release, a commit), or NULL */
  const char* description; /* one line, or NULL */
  int32_t device_type;     /* DLDeviceType of every tensor: kDLCPU, or kDLCUDA (only with a
                              maskcheck built with CUDA) */
  int32_t device_id;
  uint32_t flags; /* MASKCHECK_FLAG_* */
  /* Per operation: the dtypes it takes (MASKCHECK_DTYPE_* bits) and its function. An operation
   * is provided when its dtypes are non-zero, and then its function must be set. */
  uint32_t attention_dtypes;
  uint32_t softmax_dtypes;
  uint32_t cross_entropy_dtypes;
  maskcheck_attention_fn attention_forward;
  maskcheck_softmax_fn softmax_forward;
  maskcheck_cross_entropy_fn cross_entropy;
} maskcheck_plugin;

/* The entry point. maskcheck calls it once, right after loading the library. */
typedef const maskcheck_plugin* (*maskcheck_plugin_entry_fn)(void);
MASKCHECK_PLUGIN_EXPORT const maskcheck_plugin* maskcheck_plugin_v1(void);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* MASKCHECK_PLUGIN_H_ */
