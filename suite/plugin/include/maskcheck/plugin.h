/* maskcheck plugin ABI, version 1.3: test your own kernels with `maskcheck verify --plugin` and
 * time them with `maskcheck bench --plugin`.
 *
 * A plugin is a shared library that exports one C function, maskcheck_plugin_v1(), returning a
 * table: what the plugin is (name, ABI version, device, dtypes per operation, flags) and its
 * operations (masked attention forward, in the padded and the packed (varlen) layout, masked
 * attention backward, masked softmax, cross-entropy forward + backward).
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
 * What ABI 1.1 added (appended fields only: a plugin built against 1.0 loads unchanged):
 *   - maskcheck_plugin.storage: mixed storage precision, the dtype of each tensor per case dtype
 *     (q in f32 beside k and v in f16, ...); see "Mixed storage" below;
 *   - MASKCHECK_FLAG_ADDITIVE_MASK and maskcheck_mask.additive: the mask as an additive 0 / -inf
 *     tensor (f32 or f16) for kernels that take one;
 *   - maskcheck_plugin.attention_varlen_forward: attention in the packed (varlen) layout;
 *   - maskcheck_plugin.unavailable: a plugin that cannot run here declines to load, with a reason;
 *   - maskcheck_f16_to_f32() and the other conversions at the end of this header.
 *
 * What ABI 1.2 added (appended fields only: plugins built against 1.0 and 1.1 load unchanged):
 *   - maskcheck_plugin.attention_backward and attention_backward_dtypes: the gradients dq, dk, dv
 *     of masked attention for an upstream gradient dout; see "Attention backward" below. Without
 *     it (an older table, or dtypes 0) the attention.backward.* properties are skipped, saying so.
 *   - maskcheck_mask.prefix_lens and chunk: prefix-LM and chunked attention (see the semantics);
 *     a 1.0 or 1.1 plugin is not given masks that use them unless it takes a mask tensor;
 *   - maskcheck_plugin.cross_entropy_upstream_dtypes and maskcheck_cross_entropy_args.grad_output:
 *     cross-entropy's backward for an upstream gradient instead of ones (per row for reduction
 *     none, one scalar for mean and sum). Without it the cross_entropy.upstream.* properties are
 *     skipped, saying so.
 *
 *
 * What ABI 1.3 added:
 *   - maskcheck_plugin.score_modifiers and maskcheck_attention_args.softcap, alibi_slopes and
 *     sink_logits: attention's score modifiers (see "Score modifiers" below). A plugin is handed
 *     only the modifiers it declares; cases with others are skipped, saying which it lacks.
 *
 * What ABI 1.4 added:
 *   - maskcheck_mask.sink_tokens: attention sinks (StreamingLLM; the sinks clause below). A
 *     plugin built against an older ABI is never handed a mask with sinks unless it takes a mask
 *     tensor (keep or additive), which holds them already. A 1.4 plugin that does not implement
 *     them answers queries with them MASKCHECK_UNSUPPORTED.
 *
 * What ABI 1.5 added:
 *   - maskcheck_plugin.attention_features and maskcheck_attention_args.block_table,
 *     block_table_host, page_size, key_chunk, key_begin, key_end: attention over a paged KV cache
 *     and split-KV chunks (see "Paged KV cache" and "Split-KV chunks" below), handed only to
 *     plugins that declare them; without them attention.pagedEqualsContiguous and
 *     splitKvMergesToUnsplit are skipped, saying so.
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
 *   causal:    k <= diag(q); with prefix-LM (ABI 1.2, prefix_lens): k <= max(diag(q), P_b - 1),
 *              P_b = prefix_lens[b]: a query whose diagonal lies in the prefix sees the whole
 *              prefix (bidirectional), later ones stay causal. prefix_lens comes with causal only.
 *   window:    diag(q) - window_left <= k <= diag(q) + window_right.
 *   chunk:     (ABI 1.2, chunk = C > 0, Llama 4's chunked attention) k and diag(q) lie in the
 *              same chunk: floor(k / C) == floor(diag(q) / C), floor for negative diag(q) too.
 *   sinks:     (ABI 1.4, sink_tokens = S > 0, StreamingLLM's attention sinks) the one clause that
 *              widens the others: a query that sees at least one key by the clauses above also
 *              sees each of the first S keys of its segment (k < S in segment positions) that
 *              passes every clause except the window's left bound. So sinks survive a sliding
 *              window, but causal, the window's right bound and the chunk still apply to them, and
 *              a row that sees nothing (a padded query, a window past every key) sees no sink.
 *              A row's keys are then two intervals: the sinks, a gap, the window.
 * Causal, window, prefix and chunk are measured from the diagonal of the *segment* the query
 * lies in: the sequence's valid range, or the query's document when cu_seqlens are given, in
 * positions relative to the segment's start (qi = q - segment start, likewise for keys):
 *   bottom-right alignment (the default; FlashAttention >= 2.1, flashinfer):
 *     diag(qi) = qi + (segment_k_len - segment_q_len)   -- the last query sees the last key;
 *   top-left alignment (PyTorch is_causal=True):  diag(qi) = qi.
 * causal is the window (unbounded, 0); both may be given, and then both apply. Key positions in
 * the prefix and chunk clauses are segment-relative too (each document has its own prefix of P_b
 * keys and its own chunks).
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
 * Garbage: padded positions of q, k and v may hold NaN, inf or huge values, and keys masked for
 * some rows only (future keys, outside the window, other documents) may hold huge finite values,
 * never NaN or inf (a tiled kernel multiplies their zero weight by V). Softmax inputs may hold
 * NaN, inf or huge values at every masked-out position. No bit of any output may depend on
 * them. Every output element must be written: maskcheck fills outputs with a signaling NaN
 * before each call, and an element still holding it afterwards fails the case (it is never
 * taken for the fully-masked-row-NaN convention).
 *
 * Scales: any finite value; 0 means uniform weights over the visible keys, a negative scale
 * reverses the preference. Softmax's default is 1, attention's 1/sqrt(D); args->scale is always
 * set to the value to apply.
 *
 * Score modifiers (ABI 1.3; attention forward only, each one declared in score_modifiers), in
 * this order on each visible pair's score s = scale * <q, k>, all before the mask (a masked key
 * keeps weight exactly 0 whatever a modifier would make of its score):
 *   soft-capping (Gemma 2, softcap > 0):  s = softcap * tanh(s / softcap);
 *   ALiBi (alibi_slopes):  s -= alibi_slopes[h] * |k - diag(q)|, diag(q) as in the mask clauses
 *                          (segment-relative, in the mask's alignment), per query head h;
 *   sink logits (gpt-oss, sink_logits):  e^sink_logits[h] joins the softmax denominator of every
 *                          row of head h that sees a key, with no value: the row's weights sum
 *                          to 1 - e^(sink - lse), lse = log(e^sink + sum_j e^s_j). A row with no
 *                          visible key still outputs 0 and log-sum-exp -inf.
 * The keep and additive mask tensors hold the mask only (no ALiBi bias).
 *
 * Paged KV cache (ABI 1.5, MASKCHECK_ATTN_PAGED_KV in attention_features; vLLM's layout): k and
 * v of attention_forward are then caches [num_pages, page_size, Hkv, D] and args->block_table an
 * int32 [B, max_pages] table: logical key j of sequence b (right padding, j < k_lens[b]) lives in
 * page block_table[b][j / page_size], slot j % page_size. Pages come in any order and may be
 * shared; table entries past a sequence's pages, unused pages and the tail of a sequence's last
 * page hold garbage and must never be read. The mask, out and lse are those of the logical
 * padded problem [B, H, Lq, D] with Lk keys.
 *
 * Split-KV chunks (ABI 1.5, MASKCHECK_ATTN_KEY_CHUNK): with args->key_chunk set, attention over
 * the keys [key_begin, key_end) of the padded key axis alone (each row's visible keys
 * intersected with them; no sink logit, which is a chunk of its own): out and lse of the chunk,
 * 0 and -inf for a row that sees none of its keys; lse is always requested. The chunks of a split
 * merge into the unsplit rows by the log-sum-exp rule.
 *
 * The keep tensor (MASKCHECK_FLAG_KEEP_TENSOR) holds exactly 0 or 1.
 *
 * Attention backward (ABI 1.2): the gradients of out = softmax(q k^T * scale + mask) v, the
 * forward above with the same mask, for an upstream gradient dout = d loss / d out:
 *   p_ij  = the forward's softmax weight of key j in row i (0 for a masked key)
 *   dv_j  = sum_i p_ij dout_i                       dp_ij = dout_i . v_j
 *   ds_ij = p_ij (dp_ij - sum_j' p_ij' dp_ij')       (sum_j' p_ij' dp_ij' = dout_i . out_i)
 *   dq_i  = scale sum_j ds_ij k_j                   dk_j  = scale sum_i ds_ij q_i
 * summed over the visible (i, j) pairs only. Grouped-query attention: dk and dv of kv head g sum
 * the contributions of all its query heads g * (H / Hkv) ... (g + 1) * (H / Hkv) - 1. Exact zeros:
 * a key that no query of its sequence sees (a padded key, a key outside every row's window or
 * causal range) gets dk = dv = 0 exactly, and a query that sees no key (a fully masked row, a
 * padded query) gets dq = 0 exactly; never NaN. Garbage: as for the forward, padded positions of
 * q, k, v *and dout* may hold NaN, inf or huge values (the rows of dout for padded or fully
 * masked queries are never meaningful), and keys masked for some rows only may hold huge finite
 * values; no bit of any gradient may depend on them. Only out is differentiated: no log-sum-exp
 * is given and none is differentiated (there is no dlse input; a kernel whose backward needs the
 * forward's out or log-sum-exp, as FlashAttention's does, recomputes them). Deterministic: two
 * calls with the same inputs must give bitwise the same dq, dk and dv (attention.backward
 * .deterministic), so accumulating dk and dv with atomics in a varying order fails.
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
 *   Upstream gradient (ABI 1.2, grad_output): dlogits above is the gradient of the loss for an
 *   upstream gradient of ones. With grad_output, row i's gradient is multiplied by g_i =
 *   grad_output[i] for reduction none, and by g = grad_output[0] for mean and sum (the gradient
 *   of the reduced loss). An ignored row's g_i is never read: its gradient stays exactly 0
 *   whatever g_i holds, NaN included (maskcheck puts NaN there to check).
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
 * and compact row-major (ABI 1.0 to 1.2), data aligned to 256 bytes, on the device the plugin
 * declared (device_type, device_id). Inputs must not be modified. Tensors never alias. Zero-sized
 * dimensions occur (B = 0, Lq = 0, N = 0, ...) and still have a non-NULL data pointer.
 * Calls come from one thread at a time; a plugin may keep global state (a workspace, a handle).
 * On CUDA the plugin runs on args->stream (a cudaStream_t) and maskcheck synchronizes it after
 * the call.
 *
 * The floating-point dtype of every op is one of F64, F32, F16, BF16 (DLPack kDLFloat 64/32/16,
 * kDLBfloat 16). Auxiliary float tensors (log-sum-exp, per-row losses, weights) are float32, or
 * float64 when the op's dtype is F64. Keep masks are uint8 (kDLUInt 8) holding 0 or 1; additive
 * masks are float32 or float16 holding 0 or -inf.
 *
 * Mixed storage (ABI 1.1): by default every floating tensor of a call is in the case's dtype t.
 * A kernel that stores some tensors otherwise (Q and the output in f32 beside K and V in f16, as
 * llama.cpp's KV cache does) declares it in storage[MASKCHECK_DTYPE_INDEX_*] for each dtype t it
 * lists: maskcheck then hands it each tensor in its declared dtype, draws each input's values in
 * that dtype, and feeds the reference exactly the same values. A tensor may be stored in t or in
 * a dtype holding every value of t (f64 or f32 for f16 and bf16, f64 for f32): t is the narrowest
 * storage of the case, and the tolerance (the naive baseline in t, t's floor) is t's. So Q in f32
 * with K and V in f16 is an f16 case whose q and out are f32; a kernel that computes such a case
 * correctly passes, and one that rounds more than it declares (K to bf16 in an f16 case, anything
 * to f16 in an f32 case) fails.
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
#include <string.h>

#include <dlpack/dlpack.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MASKCHECK_PLUGIN_ABI_VERSION_MAJOR 1
#define MASKCHECK_PLUGIN_ABI_VERSION_MINOR 5

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
/* Indices of maskcheck_plugin.storage (ABI 1.1): the bit number of the dtype. */
#define MASKCHECK_DTYPE_INDEX_F64 0
#define MASKCHECK_DTYPE_INDEX_F32 1
#define MASKCHECK_DTYPE_INDEX_F16 2
#define MASKCHECK_DTYPE_INDEX_BF16 3

/* Bits of maskcheck_plugin.flags. */
/* Pass every attention and softmax mask as a keep tensor (maskcheck_mask.keep) as well: for
 * kernels that take an explicit [B, Lq, Lk] mask rather than lengths and flags. */
#define MASKCHECK_FLAG_KEEP_TENSOR (1u << 0)
/* attention_forward never writes log-sum-exp: maskcheck draws only cases that do not ask for it
 * (args->lse is always NULL). Without the flag about half the cases ask for it. */
#define MASKCHECK_FLAG_NO_LSE (1u << 1)
/* ABI 1.1: pass every attention and softmax mask as an additive tensor (maskcheck_mask.additive)
 * as well: 0 where attention is allowed, -inf elsewhere, in float32 or, when storage[t].mask says
 * so, float16; for kernels that add a materialized mask to the scores. */
#define MASKCHECK_FLAG_ADDITIVE_MASK (1u << 2)

/* Enumerations of maskcheck_mask. */
#define MASKCHECK_PADDING_RIGHT 0
#define MASKCHECK_PADDING_LEFT 1
#define MASKCHECK_ALIGN_BOTTOM_RIGHT 0
#define MASKCHECK_ALIGN_TOP_LEFT 1
/* A window side without limit (INT64_MAX); bounded sides are in [0, 2^40]. */
#define MASKCHECK_UNBOUNDED INT64_MAX

/* Reductions of cross-entropy. */
/* maskcheck_plugin.score_modifiers (ABI 1.3) */
#define MASKCHECK_MOD_SOFTCAP 1u     /* logit soft-capping */
#define MASKCHECK_MOD_ALIBI 2u       /* ALiBi */
#define MASKCHECK_MOD_SINK_LOGITS 4u /* learned sink logits */
/* maskcheck_plugin.attention_features (ABI 1.5) */
#define MASKCHECK_ATTN_PAGED_KV 1u  /* a paged KV cache (args->block_table) */
#define MASKCHECK_ATTN_KEY_CHUNK 2u /* split-KV chunks (args->key_chunk) */

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
  /* ABI 1.1: the same mask as an additive tensor [B, Lq, Lk], 0 = may attend, -inf = masked,
   * float32 or float16 (storage[t].mask), on the plugin's device, shared by every head (a kernel
   * taking [B, H, Lq, Lk] broadcasts it with stride 0 over H); NULL unless the plugin sets
   * MASKCHECK_FLAG_ADDITIVE_MASK. */
  const DLTensor* additive;
  /* ABI 1.2: prefix-LM and chunked attention (the clauses above). A plugin built against an
   * older ABI is never handed a mask that uses them unless it takes a mask tensor (keep or
   * additive), which holds them already. A 1.2 plugin that does not implement them answers
   * queries with them MASKCHECK_UNSUPPORTED. */
  const int32_t* prefix_lens; /* [B] (only with causal), or NULL: no prefix */
  int64_t chunk;              /* chunk length C > 0, or 0: no chunking */
  /* ABI 1.4: attention sinks (the sinks clause above), handed to older plugins only through a
   * mask tensor as for ABI 1.2's fields. */
  int64_t sink_tokens; /* S > 0 sink keys per segment, or 0: none */
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
  /* ABI 1.3: the score modifiers (see "Score modifiers"), set only when the plugin declares them
   * in score_modifiers (0 and NULL otherwise); the arrays are host memory, also in queries. */
  double softcap;             /* > 0: soft-capping with this cap; 0: none */
  const double* alibi_slopes; /* [H] ALiBi slopes, or NULL: no ALiBi */
  const double* sink_logits;  /* [H] learned sink logits, or NULL: none */
  /* ABI 1.5: a paged KV cache and split-KV chunks (see above), set only for a plugin that
   * declares them in attention_features (NULL and 0 otherwise). */
  const DLTensor* block_table;     /* int32 [B, max_pages] on the plugin's device, or NULL: k and
                                      v in the padded layout */
  const int32_t* block_table_host; /* the same table in host memory */
  int64_t page_size;               /* tokens per page (with block_table) */
  int32_t key_chunk;               /* non-zero: keys [key_begin, key_end) only */
  int32_t reserved1;
  int64_t key_begin, key_end;
} maskcheck_attention_args;

/* ABI 1.1: attention in the packed (varlen) layout of FlashAttention's varlen API: B sequences
 * without padding, one after the other. Sequence b holds queries [cu_seqlens_q[b],
 * cu_seqlens_q[b + 1]) and keys [cu_seqlens_k[b], cu_seqlens_k[b + 1]); causal and the window are
 * measured from its diagonal (bottom-right: the last query sees the last key; top-left: query i
 * sees key i), as for a sequence of the padded layout. A sequence may be empty on either side.
 *   q, out: [Tq, H, D]   k, v: [Tk, Hkv, D]   (Tq = cu_seqlens_q[B], Tk = cu_seqlens_k[B])
 *   lse:    [H, Tq] float32 (float64 for F64), or NULL when not requested
 * in the storage of the padded layout (storage[t].q, .k, .v, .out). */
typedef struct maskcheck_attention_varlen_args {
  const DLTensor* q;
  const DLTensor* k;
  const DLTensor* v;
  const DLTensor* out;
  const DLTensor* lse;              /* may be NULL */
  const DLTensor* cu_seqlens_q;     /* int32 [B + 1], on the plugin's device */
  const DLTensor* cu_seqlens_k;     /* int32 [B + 1], on the plugin's device */
  const int32_t* cu_seqlens_q_host; /* the same offsets in host memory */
  const int32_t* cu_seqlens_k_host;
  int64_t batch;                      /* B */
  int64_t max_seqlen_q, max_seqlen_k; /* the longest sequence on each side */
  int32_t causal;                     /* non-zero: k <= diag(q) */
  int32_t alignment;                  /* MASKCHECK_ALIGN_BOTTOM_RIGHT or _TOP_LEFT */
  int64_t window_left;                /* or MASKCHECK_UNBOUNDED */
  int64_t window_right;               /* or MASKCHECK_UNBOUNDED */
  double scale;
  int32_t query;
  int32_t reserved0;
  void* stream;
} maskcheck_attention_varlen_args;

/* ABI 1.2: attention backward (see "Attention backward" above), in the padded layout of
 * attention_forward, with the same mask descriptor (and keep or additive tensor, per the flags):
 *   q, dout, dq: [B, H, Lq, D]      k, v, dk, dv: [B, Hkv, Lk, D]   (H % Hkv == 0)
 * dout is the upstream gradient of out; dq, dk and dv are outputs, every element of which must be
 * written (zeros where the contract says so). Storage: q, k and v as in attention_forward
 * (storage[t].q, .k, .v), dout as out (storage[t].out), and each gradient as its operand: dq as
 * q, dk as k, dv as v. No log-sum-exp and no forward output are given. */
typedef struct maskcheck_attention_backward_args {
  const DLTensor* q;
  const DLTensor* k;
  const DLTensor* v;
  const DLTensor* dout;
  const DLTensor* dq; /* output */
  const DLTensor* dk; /* output */
  const DLTensor* dv; /* output */
  const maskcheck_mask* mask;
  double scale;  /* always set, as for attention_forward */
  int32_t query; /* non-zero: answer whether you support this call; data pointers are NULL */
  int32_t reserved0;
  void* stream; /* CUDA: the cudaStream_t to run on; NULL on the CPU */
} maskcheck_attention_backward_args;

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
  /* ABI 1.2: the upstream gradient, [N] for reduction none and [1] for mean and sum, float32
   * (float64 for F64) on the plugin's device, given only with dlogits and only for a dtype of
   * cross_entropy_upstream_dtypes; NULL: ones. Older plugins never read it. */
  const DLTensor* grad_output;
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
typedef maskcheck_status (*maskcheck_attention_varlen_fn)(
    const maskcheck_attention_varlen_args* args, char* msg, size_t msg_size);
typedef maskcheck_status (*maskcheck_attention_backward_fn)(
    const maskcheck_attention_backward_args* args, char* msg, size_t msg_size);
/* totals is NULL in queries. */
typedef maskcheck_status (*maskcheck_cross_entropy_fn)(const maskcheck_cross_entropy_args* args,
                                                       maskcheck_loss_totals* totals, char* msg,
                                                       size_t msg_size);

/* ABI 1.1: the dtype of each tensor of a case (see "Mixed storage" above): one MASKCHECK_DTYPE_*
 * bit per field, or 0 for the case's dtype t (all zero: every tensor in t, as in ABI 1.0). */
typedef struct maskcheck_storage {
  uint32_t q, k, v, out;    /* attention_forward, attention_varlen_forward and attention_backward
                               (ABI 1.2: dout as out, dq as q, dk as k, dv as v) */
  uint32_t x, y;            /* softmax_forward */
  uint32_t logits, dlogits; /* cross_entropy */
  uint32_t mask;            /* maskcheck_mask.additive: MASKCHECK_DTYPE_F32 (and 0) or _F16 */
  uint32_t reserved[3];     /* 0 */
} maskcheck_storage;

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

  /* ---- ABI 1.1 (read only when abi_minor >= 1) ---- */
  /* Per case dtype t, indexed by MASKCHECK_DTYPE_INDEX_*: the dtype of each tensor. Entries of
   * dtypes no operation lists are ignored. */
  maskcheck_storage storage[4];
  /* Attention in the packed (varlen) layout, for the dtypes of attention_dtypes; NULL when the
   * plugin has none (attention.varlenEqualsPadded is then skipped). Needs attention_forward. */
  maskcheck_attention_varlen_fn attention_varlen_forward;
  /* Non-NULL: the plugin cannot run here (no device, a missing dependency) and declines to load;
   * maskcheck prints this reason and exits 2. The other fields may then be left empty. */
  const char* unavailable;

  /* ---- ABI 1.2 (read only when abi_minor >= 2) ---- */
  /* Attention backward: the dtypes it takes (MASKCHECK_DTYPE_* bits, a subset of
   * attention_dtypes: its cases are attention's) and its function, on the plugin's device_type
   * like every operation. Provided when the dtypes are non-zero, and then attention_backward must
   * be set (and attention_forward: attention.backward.consistentWithForward compares the two).
   * Dtypes 0: the plugin has no backward, and the attention.backward.* properties are skipped. */
  uint32_t attention_backward_dtypes;
  maskcheck_attention_backward_fn attention_backward;
  /* The dtypes (a subset of cross_entropy_dtypes) in which cross_entropy reads
   * args->grad_output, the upstream gradient; 0: it has no such input, maskcheck never passes
   * one, and the cross_entropy.upstream.* properties are skipped. */
  uint32_t cross_entropy_upstream_dtypes;

  /* ---- ABI 1.3 (read only when abi_minor >= 3) ---- */
  /* The score modifiers attention_forward applies (MASKCHECK_MOD_* bits); 0: none. */
  uint32_t score_modifiers;

  /* ---- ABI 1.5 (read only when abi_minor >= 5) ---- */
  /* The attention_forward variants it takes (MASKCHECK_ATTN_* bits): a paged KV cache, split-KV
   * chunks; 0: neither (attention.pagedEqualsContiguous and splitKvMergesToUnsplit are skipped). */
  uint32_t attention_features;
} maskcheck_plugin;

/* The entry point. maskcheck calls it once, right after loading the library. Returning NULL
 * declines to load without a reason (set `unavailable` instead, to give one); what the library
 * printed to stderr while loading is shown either way. */
typedef const maskcheck_plugin* (*maskcheck_plugin_entry_fn)(void);
MASKCHECK_PLUGIN_EXPORT const maskcheck_plugin* maskcheck_plugin_v1(void);

/* ---- 16-bit conversions (ABI 1.1), so that a plugin need not write its own -----------------
 * IEEE binary16 and bfloat16 bits <-> float, round to nearest even, overflow to infinity; a NaN
 * stays a NaN (widening keeps its bits, narrowing makes it quiet). A float holds every f16 and
 * bf16 value exactly, so a kernel reads 16-bit inputs into float without loss and rounds once when
 * it stores. */

static inline uint32_t maskcheck_float_bits_(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}
static inline float maskcheck_bits_float_(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

static inline float maskcheck_bf16_to_f32(uint16_t h) {
  return maskcheck_bits_float_((uint32_t)h << 16);
}

static inline uint16_t maskcheck_f32_to_bf16(float f) {
  const uint32_t u = maskcheck_float_bits_(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u); /* quiet NaN */
  return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

static inline float maskcheck_f16_to_f32(uint16_t h) {
  const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
  if (exp == 0x1fu) return maskcheck_bits_float_(sign | 0x7f800000u | (mant << 13)); /* inf, NaN */
  if (exp != 0) return maskcheck_bits_float_(sign | ((exp + 112u) << 23) | (mant << 13));
  /* zero or subnormal: mant * 2^-24, exact in float */
  {
    const float m = (float)mant * 5.9604644775390625e-8f;
    return sign ? -m : m;
  }
}

static inline uint16_t maskcheck_f32_to_f16(float f) {
  const uint32_t u = maskcheck_float_bits_(f);
  const uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu)); /* NaN */
  if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds past 65504: infinity */
  if (a < 0x38800000u) {
    /* below the smallest normal 2^-14: a subnormal, in units of 2^-24 (rint: to nearest even) */
    const float q = maskcheck_bits_float_(a) * 16777216.0f; /* exact: a power-of-two scaling */
    uint32_t n = (uint32_t)q;
    const float rest = q - (float)n;
    if (rest > 0.5f || (rest == 0.5f && (n & 1u))) ++n;
    return (uint16_t)(sign | n); /* n == 0x400 is the smallest normal: the bits agree */
  }
  {
    /* normal: drop 13 mantissa bits, ties to even; a carry into the exponent is correct */
    const uint32_t r = a + 0xfffu + ((a >> 13) & 1u);
    return (uint16_t)(sign | ((r - 0x38000000u) >> 13));
  }
}

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* MASKCHECK_PLUGIN_H_ */
