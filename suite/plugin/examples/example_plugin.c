// example_plugin.c: a complete maskcheck plugin (maskcheck/plugin.h), on the CPU, in plain C99.
//
// It provides the operations of the ABI for float64, float32, float16 and bfloat16:
//   attention_forward         out = softmax(q k^T * scale + mask) v and its log-sum-exp
//                             q: [B, H, Lq, D], k, v: [B, Hkv, Lk, D]; O(B H Lq Lk D); with
//                             soft-capping, ALiBi and sink logits (ABI 1.3)
//   attention_varlen_forward  the same in the packed (varlen) layout, q: [Tq, H, D], k, v:
//                             [Tk, Hkv, D] with cu_seqlens (ABI 1.1)
//   attention_backward        dq, dk, dv of attention_forward's out for an upstream gradient
//                             dout, the same mask logic; grouped-query dk, dv summed over each
//                             group (ABI 1.2); O(B H Lq Lk D)
//   softmax_forward           y = softmax(x * scale + mask), x, y: [B, H, Lq, Lk]; O(B H Lq Lk)
//   cross_entropy             loss, per-row losses and dlogits (times grad_output when given),
//                             logits: [N, V]; O(N V)
// with every mask feature of the ABI: padding on either side, causal in both alignments,
// sliding windows, packed documents, grouped-query heads, and the keep tensor when the host
// passes one. Every tensor is read in its own dtype (load() converts float16 and bfloat16 with
// the header's maskcheck_f16_to_f32 and maskcheck_bf16_to_f32, store() rounds with
// maskcheck_f32_to_f16 and maskcheck_f32_to_bf16), so the same code serves a table that declares
// mixed storage (ABI 1.1: q in float32 beside k and v in float16). It declines
// (MASKCHECK_UNSUPPORTED, with the reason) what it does not do: head dims above 256.
//
// It is written to be read, not to be fast: elements go through load() and store(), every sum
// is in double, scores are recomputed rather than tiled. A real kernel replaces the loops; the
// argument checks, the mask logic (visible_keys) and the status handling carry over.
//
// Build it alone (or with examples/CMakeLists.txt, against an installed maskcheck):
//   cc -std=c99 -O2 -shared -fPIC -fvisibility=hidden -I<prefix>/include example_plugin.c
//      -o libmaskcheck_example_plugin.so -lm
// and test and time it:
//   maskcheck verify --plugin ./libmaskcheck_example_plugin.so
//   maskcheck bench --plugin ./libmaskcheck_example_plugin.so --filter '^cpu/softmax/'
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <maskcheck/plugin.h>

enum { kMaxHeadDim = 256 };  // one output row is accumulated on the stack

// ---- status and messages ---------------------------------------------------------------------

static maskcheck_status fail(maskcheck_status status, char* msg, size_t msg_size, const char* fmt,
                             ...) {
  va_list args;
  va_start(args, fmt);
  if (msg && msg_size > 0) vsnprintf(msg, msg_size, fmt, args);
  va_end(args);
  return status;
}

// ---- elements --------------------------------------------------------------------------------

static int is_dtype(DLDataType t, int code, int bits) {
  return t.code == code && t.bits == bits && t.lanes == 1;
}

// The dtypes this plugin reads and writes: float64, float32, float16, bfloat16.
static int computes_in(DLDataType t) {
  return is_dtype(t, kDLFloat, 64) || is_dtype(t, kDLFloat, 32) || is_dtype(t, kDLFloat, 16) ||
         is_dtype(t, kDLBfloat, 16);
}

// Element i of a float tensor (float64, float32, float16 or bfloat16), as a double.
static double load(const DLTensor* t, int64_t i) {
  const char* base = (const char*)t->data + t->byte_offset;
  if (t->dtype.bits == 64) return ((const double*)base)[i];
  if (t->dtype.bits == 32) return ((const float*)base)[i];
  const uint16_t h = ((const uint16_t*)base)[i];
  return t->dtype.code == kDLBfloat ? maskcheck_bf16_to_f32(h) : maskcheck_f16_to_f32(h);
}

// Stores v into element i, rounding to nearest even.
static void store(const DLTensor* t, int64_t i, double v) {
  char* base = (char*)t->data + t->byte_offset;
  if (t->dtype.bits == 64) {
    ((double*)base)[i] = v;
  } else if (t->dtype.bits == 32) {
    ((float*)base)[i] = (float)v;
  } else {
    // Through float32: the double rounding this implies is off by at most a tie, far inside
    // maskcheck's tolerance for 16-bit dtypes.
    const float f = (float)v;
    ((uint16_t*)base)[i] =
        t->dtype.code == kDLBfloat ? maskcheck_f32_to_bf16(f) : maskcheck_f32_to_f16(f);
  }
}

// ---- argument checks -------------------------------------------------------------------------

// Checks one tensor: present, on the CPU, the dtype, and a compact row-major shape `shape`.
// dtype.bits == 0 takes any floating dtype the plugin reads (a tensor of mixed storage).
static maskcheck_status check_tensor(const DLTensor* t, const char* name, DLDataType dtype,
                                     int ndim, const int64_t* shape, char* msg, size_t msg_size) {
  if (!t) return fail(MASKCHECK_INVALID_ARGUMENT, msg, msg_size, "%s is missing", name);
  if (t->device.device_type != kDLCPU)
    return fail(MASKCHECK_INVALID_ARGUMENT, msg, msg_size, "%s is not on the CPU", name);
  if (dtype.bits == 0
          ? !computes_in(t->dtype)
          : t->dtype.code != dtype.code || t->dtype.bits != dtype.bits || t->dtype.lanes != 1)
    return fail(MASKCHECK_INVALID_ARGUMENT, msg, msg_size, "%s has dtype code %d bits %d", name,
                t->dtype.code, t->dtype.bits);
  if (t->ndim != ndim)
    return fail(MASKCHECK_INVALID_ARGUMENT, msg, msg_size, "%s has %d dimensions, not %d", name,
                t->ndim, ndim);
  int64_t stride = 1;
  for (int d = ndim - 1; d >= 0; --d) {
    if (t->shape[d] != shape[d])
      return fail(MASKCHECK_INVALID_ARGUMENT, msg, msg_size, "%s.shape[%d] = %lld, expected %lld",
                  name, d, (long long)t->shape[d], (long long)shape[d]);
    if (t->strides && shape[d] > 1 && t->strides[d] != stride)
      return fail(MASKCHECK_UNSUPPORTED, msg, msg_size, "%s is not compact row-major", name);
    stride *= shape[d];
  }
  return MASKCHECK_OK;
}

// The dtype of log-sum-exp, per-row losses and weights: float64 in a float64 case, else float32.
// A case is float64 when its narrowest tensor is (mixed storage never narrows below the case's
// dtype), so the narrowest of the tensors given decides.
static DLDataType aux_dtype(DLDataType t) {
  DLDataType a = {kDLFloat, (uint8_t)(t.bits == 64 ? 64 : 32), 1};
  return a;
}
static DLDataType narrowest(DLDataType a, DLDataType b) {
  return b.bits < a.bits ? b : a;
}
// Any floating dtype this plugin reads: each tensor in its own (mixed storage, ABI 1.1).
static const DLDataType kAnyFloat = {kDLFloat, 0, 1};

// ---- the mask ----------------------------------------------------------------------------------

// The keys that query q of sequence b may see, as the interval [*lo, *hi) of padded key
// positions (empty when *hi <= *lo): the intersection of the padding, document, causal (with
// prefix-LM), window and chunk clauses of plugin.h. The interval form is what lets a kernel skip
// whole key tiles.
// *diagonal (when not NULL) receives the key on the query's diagonal in padded positions, the
// reference point of ALiBi's distances (ABI 1.3). [*slo, *shi) (when not NULL) receives the
// row's attention sinks (ABI 1.4): the first sink_tokens keys of the segment that pass every
// clause but the window's left bound, for a row that sees a key (they may overlap [*lo, *hi)).
static void row_interval(const maskcheck_mask* m, int64_t b, int64_t q, int64_t* lo, int64_t* hi,
                         int64_t* diagonal, int64_t* slo, int64_t* shi) {
  const int64_t q_len = m->q_lens ? m->q_lens[b] : m->q_len;
  const int64_t k_len = m->k_lens ? m->k_lens[b] : m->k_len;
  const int left = m->padding == MASKCHECK_PADDING_LEFT;
  const int64_t q0 = left ? m->q_len - q_len : 0;  // first valid query
  const int64_t k0 = left ? m->k_len - k_len : 0;  // first valid key
  *lo = *hi = 0;
  if (slo) *slo = *shi = 0;
  if (q < q0 || q >= q0 + q_len) return;  // a padded query sees nothing
  const int64_t qi = q - q0;

  // The segment: the query's document (the last one starting at or before qi, which skips
  // empty documents), or the whole valid range.
  int64_t seg_q = 0, seg_q_len = q_len, seg_k = 0, seg_k_len = k_len;
  if (m->doc_ptr) {
    const int32_t* cq = m->cu_seqlens_q + m->doc_ptr[b];
    const int32_t* ck = m->cu_seqlens_k + m->doc_ptr[b];
    const int64_t docs = m->doc_ptr[b + 1] - m->doc_ptr[b] - 1;
    int64_t d = 0;
    for (int64_t i = 1; i < docs; ++i)
      if (cq[i] <= qi) d = i;
    seg_q = cq[d];
    seg_q_len = cq[d + 1] - cq[d];
    seg_k = ck[d];
    seg_k_len = ck[d + 1] - ck[d];
  }

  // Causal (up to the whole prefix with prefix-LM), window and chunk, around the diagonal of the
  // segment.
  const int64_t shift = m->alignment == MASKCHECK_ALIGN_BOTTOM_RIGHT ? seg_k_len - seg_q_len : 0;
  const int64_t diag = (qi - seg_q) + shift;
  int64_t first = 0, end = seg_k_len;
  if (m->causal) {
    int64_t causal_end = diag + 1;
    if (m->prefix_lens && m->prefix_lens[b] > causal_end) causal_end = m->prefix_lens[b];
    if (causal_end < end) end = causal_end;
  }
  if (m->window_right != MASKCHECK_UNBOUNDED && diag + m->window_right + 1 < end)
    end = diag + m->window_right + 1;
  if (m->chunk > 0) {  // the chunk of the diagonal, floor division for a negative one too
    const int64_t c = diag >= 0 ? diag / m->chunk : -((-diag + m->chunk - 1) / m->chunk);
    if (c * m->chunk > first) first = c * m->chunk;
    if (c * m->chunk + m->chunk < end) end = c * m->chunk + m->chunk;
  }
  const int64_t sink_first = first;  // sinks are exempt from the window's left bound only
  if (m->window_left != MASKCHECK_UNBOUNDED && diag - m->window_left > first)
    first = diag - m->window_left;
  if (end < first) end = first;
  *lo = k0 + seg_k + first;
  *hi = k0 + seg_k + end;
  if (diagonal) *diagonal = k0 + seg_k + diag;
  if (slo && end > first && m->sink_tokens > 0) {
    const int64_t sink_end = m->sink_tokens < end ? m->sink_tokens : end;
    if (sink_first < sink_end) {
      *slo = k0 + seg_k + sink_first;
      *shi = k0 + seg_k + sink_end;
    }
  }
}
// The keys a row may see lie in [*lo, *hi): its interval, widened down to its sinks.
static void visible_keys(const maskcheck_mask* m, int64_t b, int64_t q, int64_t* lo, int64_t* hi) {
  int64_t slo, shi;
  row_interval(m, b, q, lo, hi, NULL, &slo, &shi);
  if (shi > slo && slo < *lo) *lo = slo;
}

// The keys to scan for row (b, q), and whether key k among them is visible. With a keep tensor
// (MASKCHECK_FLAG_KEEP_TENSOR) the tensor alone decides, as in a kernel that only takes a mask.
static void row_keys(const maskcheck_mask* m, int64_t b, int64_t q, int64_t* lo, int64_t* hi) {
  if (m->keep) {
    *lo = 0;
    *hi = m->k_len;
  } else {
    visible_keys(m, b, q, lo, hi);
  }
}
static int sees(const maskcheck_mask* m, int64_t b, int64_t q, int64_t k) {
  if (!m->keep) {
    if (m->sink_tokens <= 0) return 1;  // row_keys() returned exactly the visible interval
    // With sinks, row_keys() spans the sinks, the gap and the interval: test k against both.
    int64_t lo, hi, slo, shi;
    row_interval(m, b, q, &lo, &hi, NULL, &slo, &shi);
    return (k >= lo && k < hi) || (k >= slo && k < shi);
  }
  const uint8_t* keep = (const uint8_t*)m->keep->data + m->keep->byte_offset;
  return keep[(b * m->q_len + q) * m->k_len + k] != 0;
}

static maskcheck_status check_mask(const maskcheck_mask* m, int64_t B, int64_t Lq, int64_t Lk,
                                   char* msg, size_t msg_size) {
  if (!m) return fail(MASKCHECK_INVALID_ARGUMENT, msg, msg_size, "mask is missing");
  if (m->batch != B || m->q_len != Lq || m->k_len != Lk)
    return fail(MASKCHECK_INVALID_ARGUMENT, msg, msg_size,
                "mask is [%lld, %lld, %lld], the tensors say [%lld, %lld, %lld]",
                (long long)m->batch, (long long)m->q_len, (long long)m->k_len, (long long)B,
                (long long)Lq, (long long)Lk);
  if (m->keep) {
    const DLDataType u8 = {kDLUInt, 8, 1};
    const int64_t shape[3] = {B, Lq, Lk};
    return check_tensor(m->keep, "mask.keep", u8, 3, shape, msg, msg_size);
  }
  return MASKCHECK_OK;
}

// ---- attention ---------------------------------------------------------------------------------

// The heads of every attention entry: a head dim this plugin takes (a row of the output, or of a
// gradient, lives on the stack), and H a multiple of Hkv.
static maskcheck_status check_heads(int64_t H, int64_t Hkv, int64_t D, char* msg, size_t msg_size) {
  if (D > kMaxHeadDim)
    return fail(MASKCHECK_UNSUPPORTED, msg, msg_size,
                "example plugin: head dim %lld > %d (a row lives on the stack)", (long long)D,
                kMaxHeadDim);
  if (Hkv < 1 || H % Hkv != 0)
    return fail(MASKCHECK_INVALID_ARGUMENT, msg, msg_size,
                "H = %lld is not a multiple of Hkv = %lld", (long long)H, (long long)Hkv);
  return MASKCHECK_OK;
}

// Where the keys of one query row live: key k is row `first + k * stride` (in rows of D) of k and
// v, or, in a paged cache (ABI 1.5, table not NULL), row `slot * Hkv + hk` of the caches with
// slot = table[b * max_pages + k / page_size] * page_size + k % page_size; the mask (with its keep
// tensor, if any) of row (b, i) says which of them it sees.
typedef struct Keys {
  const maskcheck_mask* mask;
  int64_t b, i;
  int64_t first, stride;
  const int32_t* table;
  int64_t max_pages, page_size, Hkv, hk;
} Keys;
static int64_t key_row(const Keys* keys, int64_t j) {
  if (!keys->table) return keys->first + j * keys->stride;
  const int64_t page = keys->table[keys->b * keys->max_pages + j / keys->page_size];
  return (page * keys->page_size + j % keys->page_size) * keys->Hkv + keys->hk;
}

// The score modifiers of one row (ABI 1.3): soft-cap (0: none), ALiBi slope (0: none) with the
// row's diagonal, and whether a sink logit joins the denominator.
typedef struct Mods {
  double softcap, slope, sink;
  int64_t diagonal;
  int has_sink;
} Mods;

// One output row: softmax(q_row . keys^T * scale) over the visible keys in [lo, hi), times v,
// with the score modifiers `mods` (NULL: none). score: scratch of at least hi entries. A row with
// no visible key is all zeros, with log-sum-exp -inf (not NaN: nothing is divided by a zero sum).
static void attend_row(const DLTensor* q, int64_t q_row, const DLTensor* k, const DLTensor* v,
                       const Keys* keys, int64_t lo, int64_t hi, int64_t D, double scale,
                       const Mods* mods, double* score, const DLTensor* out, int64_t out_row,
                       const DLTensor* lse, int64_t lse_index) {
  // Pass 1: the scores of the visible keys, and their maximum.
  double max = -INFINITY;
  int64_t visible = 0;
  for (int64_t j = lo; j < hi; ++j) {
    if (!sees(keys->mask, keys->b, keys->i, j)) continue;
    const int64_t row = key_row(keys, j);
    double dot = 0;
    for (int64_t d = 0; d < D; ++d) dot += load(q, q_row * D + d) * load(k, row * D + d);
    score[j] = dot * scale;
    if (mods && mods->softcap > 0) score[j] = mods->softcap * tanh(score[j] / mods->softcap);
    if (mods && mods->slope != 0)
      score[j] -=
          mods->slope * (double)(j > mods->diagonal ? j - mods->diagonal : mods->diagonal - j);
    if (score[j] > max) max = score[j];
    ++visible;
  }
  // The sink logit joins the denominator of a row that sees a key (and its max).
  const int sink = mods && mods->has_sink && visible > 0;
  if (sink && mods->sink > max) max = mods->sink;
  // Pass 2: the softmax-weighted sum of values.
  double acc[kMaxHeadDim] = {0}, sum = sink ? exp(mods->sink - max) : 0;
  for (int64_t j = lo; j < hi && visible > 0; ++j) {
    if (!sees(keys->mask, keys->b, keys->i, j)) continue;
    const double p = exp(score[j] - max);
    const int64_t row = key_row(keys, j);
    sum += p;
    for (int64_t d = 0; d < D; ++d) acc[d] += p * load(v, row * D + d);
  }
  for (int64_t d = 0; d < D; ++d) store(out, out_row * D + d, visible > 0 ? acc[d] / sum : 0.0);
  if (lse) store(lse, lse_index, visible > 0 ? max + log(sum) : -INFINITY);
}

static maskcheck_status example_attention(const maskcheck_attention_args* a, char* msg,
                                          size_t msg_size) {
  if (!a->q || a->q->ndim != 4 || !a->k || a->k->ndim != 4)
    return fail(MASKCHECK_INVALID_ARGUMENT, msg, msg_size, "q and k must be 4-dimensional");
  const DLDataType dt = narrowest(a->q->dtype, a->k->dtype);
  const int64_t B = a->q->shape[0], H = a->q->shape[1], Lq = a->q->shape[2], D = a->q->shape[3];
  // A paged cache (ABI 1.5): k, v [num_pages, page_size, Hkv, D]; Lk is the mask's.
  const int paged = a->block_table != NULL;
  const int64_t Hkv = paged ? a->k->shape[2] : a->k->shape[1];
  const int64_t Lk = paged ? (a->mask ? a->mask->k_len : 0) : a->k->shape[2];
  maskcheck_status s = check_heads(H, Hkv, D, msg, msg_size);
  if (s) return s;
  const int64_t q_shape[4] = {B, H, Lq, D}, lse_shape[3] = {B, H, Lq};
  const int64_t kv_shape[4] = {paged ? a->k->shape[0] : B, paged ? a->page_size : Hkv,
                               paged ? Hkv : Lk, D};
  const DLDataType i32 = {kDLInt, 32, 1};
  const int64_t table_shape[2] = {B, paged ? a->block_table->shape[1] : 0};
  if ((s = check_tensor(a->q, "q", kAnyFloat, 4, q_shape, msg, msg_size)) ||
      (s = check_tensor(a->k, "k", kAnyFloat, 4, kv_shape, msg, msg_size)) ||
      (s = check_tensor(a->v, "v", kAnyFloat, 4, kv_shape, msg, msg_size)) ||
      (s = check_tensor(a->out, "out", kAnyFloat, 4, q_shape, msg, msg_size)) ||
      (a->lse && (s = check_tensor(a->lse, "lse", aux_dtype(dt), 3, lse_shape, msg, msg_size))) ||
      (paged &&
       (s = check_tensor(a->block_table, "block_table", i32, 2, table_shape, msg, msg_size))) ||
      (s = check_mask(a->mask, B, Lq, Lk, msg, msg_size)))
    return s;
  if (a->key_chunk && (a->key_begin < 0 || a->key_begin > a->key_end || a->key_end > Lk))
    return fail(MASKCHECK_INVALID_ARGUMENT, msg, msg_size,
                "key chunk [%lld, %lld) is not within the %lld keys", (long long)a->key_begin,
                (long long)a->key_end, (long long)Lk);
  if (a->query) return MASKCHECK_OK;

  double* score = (double*)malloc((size_t)(Lk > 0 ? Lk : 1) * sizeof(double));
  if (!score) return fail(MASKCHECK_INTERNAL, msg, msg_size, "out of memory");
  const int64_t group = H / Hkv;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < Lq; ++i) {
        const int64_t row = (b * H + h) * Lq + i;  // of out and lse
        const Keys keys = {a->mask,         b,         i, (b * Hkv + h / group) * Lk, 1,
                           a->block_table_host, table_shape[1], a->page_size, Hkv, h / group};
        int64_t lo, hi;
        row_keys(a->mask, b, i, &lo, &hi);
        if (a->key_chunk) {  // a split-KV chunk (ABI 1.5): its keys only
          if (lo < a->key_begin) lo = a->key_begin;
          if (hi > a->key_end) hi = a->key_end;
        }
        // ABI 1.3's score modifiers (declared in the table, so the fields are always there).
        Mods mods = {a->softcap, a->alibi_slopes ? a->alibi_slopes[h] : 0.0,
                     a->sink_logits ? a->sink_logits[h] : 0.0, 0, a->sink_logits != NULL};
        if (a->alibi_slopes) {
          int64_t vlo, vhi;
          row_interval(a->mask, b, i, &vlo, &vhi, &mods.diagonal, NULL, NULL);
        }
        attend_row(a->q, row, a->k, a->v, &keys, lo, hi, D, a->scale, &mods, score, a->out, row,
                   a->lse, row);
      }
  free(score);
  return MASKCHECK_OK;
}

// Attention in the packed (varlen) layout (ABI 1.1): q, out [Tq, H, D], k, v [Tk, Hkv, D], lse
// [H, Tq]. Each sequence is a padded batch of one without padding, so the mask logic is the same
// visible_keys() on a mask descriptor of that one sequence.
static maskcheck_status example_attention_varlen(const maskcheck_attention_varlen_args* a,
                                                 char* msg, size_t msg_size) {
  if (!a->q || a->q->ndim != 3 || !a->k || a->k->ndim != 3)
    return fail(MASKCHECK_INVALID_ARGUMENT, msg, msg_size, "q and k must be 3-dimensional");
  const DLDataType dt = narrowest(a->q->dtype, a->k->dtype), i32 = {kDLInt, 32, 1};
  const int64_t Tq = a->q->shape[0], H = a->q->shape[1], D = a->q->shape[2];
  const int64_t Tk = a->k->shape[0], Hkv = a->k->shape[1], B = a->batch;
  maskcheck_status s = check_heads(H, Hkv, D, msg, msg_size);
  if (s) return s;
  const int64_t q_shape[3] = {Tq, H, D}, kv_shape[3] = {Tk, Hkv, D}, lse_shape[2] = {H, Tq},
                cu_shape[1] = {B + 1};
  if ((s = check_tensor(a->q, "q", kAnyFloat, 3, q_shape, msg, msg_size)) ||
      (s = check_tensor(a->k, "k", kAnyFloat, 3, kv_shape, msg, msg_size)) ||
      (s = check_tensor(a->v, "v", kAnyFloat, 3, kv_shape, msg, msg_size)) ||
      (s = check_tensor(a->out, "out", kAnyFloat, 3, q_shape, msg, msg_size)) ||
      (a->lse && (s = check_tensor(a->lse, "lse", aux_dtype(dt), 2, lse_shape, msg, msg_size))) ||
      (s = check_tensor(a->cu_seqlens_q, "cu_seqlens_q", i32, 1, cu_shape, msg, msg_size)) ||
      (s = check_tensor(a->cu_seqlens_k, "cu_seqlens_k", i32, 1, cu_shape, msg, msg_size)))
    return s;
  if (a->query) return MASKCHECK_OK;

  double* score = (double*)malloc((size_t)(Tk > 0 ? Tk : 1) * sizeof(double));
  if (!score) return fail(MASKCHECK_INTERNAL, msg, msg_size, "out of memory");
  const int64_t group = H / Hkv;
  for (int64_t b = 0; b < B; ++b) {
    const int64_t q0 = a->cu_seqlens_q_host[b], k0 = a->cu_seqlens_k_host[b];
    maskcheck_mask one;
    memset(&one, 0, sizeof one);
    one.batch = 1;
    one.q_len = a->cu_seqlens_q_host[b + 1] - q0;
    one.k_len = a->cu_seqlens_k_host[b + 1] - k0;
    one.causal = a->causal;
    one.alignment = a->alignment;
    one.window_left = a->window_left;
    one.window_right = a->window_right;
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < one.q_len; ++i) {
        const int64_t row = (q0 + i) * H + h;  // of q and out
        const Keys keys = {&one, 0, i, k0 * Hkv + h / group, Hkv, NULL, 0, 0, 0, 0};
        int64_t lo, hi;
        visible_keys(&one, 0, i, &lo, &hi);
        attend_row(a->q, row, a->k, a->v, &keys, lo, hi, D, a->scale, NULL, score, a->out, row,
                   a->lse, h * Tq + q0 + i);
      }
  }
  free(score);
  return MASKCHECK_OK;
}

// Attention backward (ABI 1.2): the gradients of out = softmax(q k^T * scale + mask) v for the
// upstream gradient dout, with the forward's mask logic (row_keys, sees). Per query row i and its
// visible keys j: p_ij the forward's weights, dp_ij = dout_i . v_j, ds_ij = p_ij (dp_ij - D_i) with
// D_i = sum_j p_ij dp_ij; then dq_i = scale sum_j ds_ij k_j, dk_j += scale ds_ij q_i and
// dv_j += p_ij dout_i. dk and dv sum over every query head of a kv head's group (grouped-query
// attention) in double, in a fixed order (deterministic), and are stored once at the end: a key
// no row sees keeps its exact 0, and a row that sees no key gets dq = 0 without reading its q or
// dout (which may be garbage there).
static maskcheck_status example_attention_backward(const maskcheck_attention_backward_args* a,
                                                   char* msg, size_t msg_size) {
  if (!a->q || a->q->ndim != 4 || !a->k || a->k->ndim != 4)
    return fail(MASKCHECK_INVALID_ARGUMENT, msg, msg_size, "q and k must be 4-dimensional");
  const int64_t B = a->q->shape[0], H = a->q->shape[1], Lq = a->q->shape[2], D = a->q->shape[3];
  const int64_t Hkv = a->k->shape[1], Lk = a->k->shape[2];
  maskcheck_status s = check_heads(H, Hkv, D, msg, msg_size);
  if (s) return s;
  const int64_t q_shape[4] = {B, H, Lq, D}, kv_shape[4] = {B, Hkv, Lk, D};
  if ((s = check_tensor(a->q, "q", kAnyFloat, 4, q_shape, msg, msg_size)) ||
      (s = check_tensor(a->k, "k", kAnyFloat, 4, kv_shape, msg, msg_size)) ||
      (s = check_tensor(a->v, "v", kAnyFloat, 4, kv_shape, msg, msg_size)) ||
      (s = check_tensor(a->dout, "dout", kAnyFloat, 4, q_shape, msg, msg_size)) ||
      (s = check_tensor(a->dq, "dq", kAnyFloat, 4, q_shape, msg, msg_size)) ||
      (s = check_tensor(a->dk, "dk", kAnyFloat, 4, kv_shape, msg, msg_size)) ||
      (s = check_tensor(a->dv, "dv", kAnyFloat, 4, kv_shape, msg, msg_size)) ||
      (s = check_mask(a->mask, B, Lq, Lk, msg, msg_size)))
    return s;
  if (a->query) return MASKCHECK_OK;

  const size_t kv_elems = (size_t)(B * Hkv * Lk * D);
  double* p = (double*)malloc((size_t)(Lk > 0 ? Lk : 1) * sizeof(double));
  double* dp = (double*)malloc((size_t)(Lk > 0 ? Lk : 1) * sizeof(double));
  double* dk = (double*)calloc(kv_elems > 0 ? kv_elems : 1, sizeof(double));
  double* dv = (double*)calloc(kv_elems > 0 ? kv_elems : 1, sizeof(double));
  if (!p || !dp || !dk || !dv) {
    free(p);
    free(dp);
    free(dk);
    free(dv);
    return fail(MASKCHECK_INTERNAL, msg, msg_size, "out of memory");
  }
  const int64_t group = H / Hkv;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < Lq; ++i) {
        const int64_t row = ((b * H + h) * Lq + i) * D;   // of q, dout and dq
        const int64_t keys = (b * Hkv + h / group) * Lk;  // first key row of k, v, dk and dv
        int64_t lo, hi;
        row_keys(a->mask, b, i, &lo, &hi);
        // The forward's weights p_ij over the visible keys.
        double max = -INFINITY, sum = 0;
        int64_t visible = 0;
        for (int64_t j = lo; j < hi; ++j) {
          if (!sees(a->mask, b, i, j)) continue;
          double dot = 0;
          for (int64_t d = 0; d < D; ++d)
            dot += load(a->q, row + d) * load(a->k, (keys + j) * D + d);
          p[j] = dot * a->scale;
          if (p[j] > max) max = p[j];
          ++visible;
        }
        double dq[kMaxHeadDim] = {0};
        if (visible > 0) {
          for (int64_t j = lo; j < hi; ++j)
            if (sees(a->mask, b, i, j)) sum += (p[j] = exp(p[j] - max));
          // dp_ij and D_i = sum_j p_ij dp_ij.
          double di = 0;
          for (int64_t j = lo; j < hi; ++j) {
            if (!sees(a->mask, b, i, j)) continue;
            p[j] /= sum;
            double dot = 0;
            for (int64_t d = 0; d < D; ++d)
              dot += load(a->dout, row + d) * load(a->v, (keys + j) * D + d);
            dp[j] = dot;
            di += p[j] * dot;
          }
          for (int64_t j = lo; j < hi; ++j) {
            if (!sees(a->mask, b, i, j)) continue;
            const double ds = p[j] * (dp[j] - di);
            for (int64_t d = 0; d < D; ++d) {
              const int64_t kd = (keys + j) * D + d;
              dq[d] += ds * load(a->k, kd);
              dk[kd] += a->scale * ds * load(a->q, row + d);
              dv[kd] += p[j] * load(a->dout, row + d);
            }
          }
        }
        // A row that sees no key: exactly +0 (scale * 0 would be -0 for a negative scale).
        for (int64_t d = 0; d < D; ++d) store(a->dq, row + d, visible > 0 ? a->scale * dq[d] : 0.0);
      }
  for (size_t e = 0; e < kv_elems; ++e) {
    store(a->dk, (int64_t)e, dk[e]);
    store(a->dv, (int64_t)e, dv[e]);
  }
  free(p);
  free(dp);
  free(dk);
  free(dv);
  return MASKCHECK_OK;
}

// ---- softmax -----------------------------------------------------------------------------------

static maskcheck_status example_softmax(const maskcheck_softmax_args* a, char* msg,
                                        size_t msg_size) {
  if (!a->x || a->x->ndim != 4)
    return fail(MASKCHECK_INVALID_ARGUMENT, msg, msg_size, "x must be [B, H, Lq, Lk]");
  const int64_t B = a->x->shape[0], H = a->x->shape[1], Lq = a->x->shape[2], Lk = a->x->shape[3];
  const int64_t shape[4] = {B, H, Lq, Lk};
  maskcheck_status s;
  if ((s = check_tensor(a->x, "x", kAnyFloat, 4, shape, msg, msg_size)) ||
      (s = check_tensor(a->y, "y", kAnyFloat, 4, shape, msg, msg_size)) ||
      (s = check_mask(a->mask, B, Lq, Lk, msg, msg_size)))
    return s;
  if (a->query) return MASKCHECK_OK;

  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < Lq; ++i) {
        const int64_t row = ((b * H + h) * Lq + i) * Lk;
        int64_t lo, hi;
        row_keys(a->mask, b, i, &lo, &hi);
        double max = -INFINITY, sum = 0;
        for (int64_t k = lo; k < hi; ++k)
          if (sees(a->mask, b, i, k) && load(a->x, row + k) * a->scale > max)
            max = load(a->x, row + k) * a->scale;
        for (int64_t k = lo; k < hi; ++k)
          if (sees(a->mask, b, i, k)) sum += exp(load(a->x, row + k) * a->scale - max);
        // Masked entries are exactly 0; so is a whole row without a visible key (sum == 0).
        for (int64_t k = 0; k < Lk; ++k) {
          const int on = k >= lo && k < hi && sees(a->mask, b, i, k);
          store(a->y, row + k, on ? exp(load(a->x, row + k) * a->scale - max) / sum : 0.0);
        }
      }
  return MASKCHECK_OK;
}

// ---- cross-entropy
// -------------------------------------------------------------------------------

// log sum_j exp(logits[i, j])
static double row_logsumexp(const DLTensor* logits, int64_t i, int64_t V) {
  double max = -INFINITY, sum = 0;
  for (int64_t j = 0; j < V; ++j)
    if (load(logits, i * V + j) > max) max = load(logits, i * V + j);
  for (int64_t j = 0; j < V; ++j) sum += exp(load(logits, i * V + j) - max);
  return max + log(sum);
}

static maskcheck_status example_cross_entropy(const maskcheck_cross_entropy_args* a,
                                              maskcheck_loss_totals* totals, char* msg,
                                              size_t msg_size) {
  if (!a->logits || a->logits->ndim != 2)
    return fail(MASKCHECK_INVALID_ARGUMENT, msg, msg_size, "logits must be [N, V]");
  const DLDataType dt = a->dlogits ? narrowest(a->logits->dtype, a->dlogits->dtype)
                                   : a->logits->dtype,
                   i64 = {kDLInt, 64, 1};
  const int64_t N = a->logits->shape[0], V = a->logits->shape[1];
  const int64_t logits_shape[2] = {N, V}, rows[1] = {N};
  maskcheck_status s;
  if ((s = check_tensor(a->logits, "logits", kAnyFloat, 2, logits_shape, msg, msg_size)) ||
      (s = check_tensor(a->labels, "labels", i64, 1, rows, msg, msg_size)) ||
      (a->weights &&
       (s = check_tensor(a->weights, "weights", aux_dtype(dt), 1, rows, msg, msg_size))) ||
      (s = check_tensor(a->losses, "losses", aux_dtype(dt), 1, rows, msg, msg_size)) ||
      (a->dlogits &&
       (s = check_tensor(a->dlogits, "dlogits", kAnyFloat, 2, logits_shape, msg, msg_size))))
    return s;
  if (a->reduction < MASKCHECK_REDUCTION_NONE || a->reduction > MASKCHECK_REDUCTION_MEAN)
    return fail(MASKCHECK_INVALID_ARGUMENT, msg, msg_size, "unknown reduction %d", a->reduction);
  // ABI 1.2: the upstream gradient, [N] for reduction none, [1] for mean and sum.
  const int64_t upstream_shape[1] = {a->reduction == MASKCHECK_REDUCTION_NONE ? N : 1};
  if (a->grad_output && ((s = check_tensor(a->grad_output, "grad_output", aux_dtype(dt), 1,
                                           upstream_shape, msg, msg_size)) ||
                         (!a->dlogits && (s = fail(MASKCHECK_INVALID_ARGUMENT, msg, msg_size,
                                                   "grad_output is given without dlogits")))))
    return s;
  if (!(a->label_smoothing >= 0 && a->label_smoothing <= 1))
    return fail(MASKCHECK_INVALID_ARGUMENT, msg, msg_size, "label_smoothing %g is not in [0, 1]",
                a->label_smoothing);
  if (a->query) return MASKCHECK_OK;

  // Every label is a class or ignore_index, before anything is written.
  const int64_t* labels = (const int64_t*)((const char*)a->labels->data + a->labels->byte_offset);
  for (int64_t i = 0; i < N; ++i)
    if (labels[i] != a->ignore_index && (labels[i] < 0 || labels[i] >= V))
      return fail(MASKCHECK_INVALID_ARGUMENT, msg, msg_size,
                  "labels[%lld] = %lld is neither a class in [0, %lld) nor ignore_index %lld",
                  (long long)i, (long long)labels[i], (long long)V, (long long)a->ignore_index);

  // Forward: l_i = (1 - eps)(lse_i - x_iy) + eps (lse_i - mean_j x_ij), weighted.
  const double eps = a->label_smoothing;
  double total = 0, weight_sum = 0;
  int64_t count = 0;
  for (int64_t i = 0; i < N; ++i) {
    if (labels[i] == a->ignore_index) {
      store(a->losses, i, 0.0);  // ignored rows are never read
      continue;
    }
    const double lse = row_logsumexp(a->logits, i, V);
    double row_mean = 0;
    for (int64_t j = 0; j < V; ++j) row_mean += load(a->logits, i * V + j);
    row_mean /= (double)V;
    const double w = a->weights ? load(a->weights, i) : 1.0;
    const double l =
        w * ((1 - eps) * (lse - load(a->logits, i * V + labels[i])) + eps * (lse - row_mean));
    store(a->losses, i, l);
    total += l;
    weight_sum += w;
    ++count;
  }
  const int is_mean = a->reduction == MASKCHECK_REDUCTION_MEAN;
  totals->loss = is_mean ? (weight_sum > 0 ? total / weight_sum : 0.0) : total;
  totals->count = count;
  totals->weight_sum = weight_sum;

  // Backward of the reduced loss: (softmax - (1 - eps) onehot - eps / V) * w * up / norm, up the
  // upstream gradient (ones without grad_output), never read for a row whose gradient is 0.
  if (a->dlogits) {
    const double norm = is_mean ? weight_sum : 1.0;
    for (int64_t i = 0; i < N; ++i) {
      const int zero = labels[i] == a->ignore_index || norm == 0;
      const double lse = zero ? 0 : row_logsumexp(a->logits, i, V);
      const double w = a->weights ? load(a->weights, i) : 1.0;
      const double up =
          zero || !a->grad_output
              ? 1.0
              : load(a->grad_output, a->reduction == MASKCHECK_REDUCTION_NONE ? i : 0);
      for (int64_t j = 0; j < V; ++j) {
        const double target = (j == labels[i] ? 1 - eps : 0.0) + eps / (double)V;
        const double g =
            zero ? 0.0 : (exp(load(a->logits, i * V + j) - lse) - target) * w * up / norm;
        store(a->dlogits, i * V + j, g);
      }
    }
  }
  return MASKCHECK_OK;
}

// ---- the table ---------------------------------------------------------------------------------

#define EXAMPLE_DTYPES \
  (MASKCHECK_DTYPE_F64 | MASKCHECK_DTYPE_F32 | MASKCHECK_DTYPE_F16 | MASKCHECK_DTYPE_BF16)

static const maskcheck_plugin example = {
    .abi_major = MASKCHECK_PLUGIN_ABI_VERSION_MAJOR,
    .abi_minor = MASKCHECK_PLUGIN_ABI_VERSION_MINOR,
    .name = "example",
    .version = "1.0",
    .description = "maskcheck's example plugin: plain C99 loops, double accumulation",
    .device_type = kDLCPU,
    .device_id = 0,
    .flags = 0,
    .attention_dtypes = EXAMPLE_DTYPES,
    .softmax_dtypes = EXAMPLE_DTYPES,
    .cross_entropy_dtypes = EXAMPLE_DTYPES,
    .attention_forward = example_attention,
    .softmax_forward = example_softmax,
    .cross_entropy = example_cross_entropy,
    // ABI 1.1. Every tensor in the case's dtype (storage left zero), and the packed layout.
    .attention_varlen_forward = example_attention_varlen,
    // ABI 1.2. The backward, for every dtype of the forward.
    .attention_backward_dtypes = EXAMPLE_DTYPES,
    .attention_backward = example_attention_backward,
    // ABI 1.2. cross_entropy reads grad_output in every dtype.
    .cross_entropy_upstream_dtypes = EXAMPLE_DTYPES,
    // ABI 1.3. Every score modifier.
    .score_modifiers = MASKCHECK_MOD_SOFTCAP | MASKCHECK_MOD_ALIBI | MASKCHECK_MOD_SINK_LOGITS,
    // ABI 1.5. A paged KV cache and split-KV chunks.
    .attention_features = MASKCHECK_ATTN_PAGED_KV | MASKCHECK_ATTN_KEY_CHUNK,
};

// maskcheck's tests build variants of this plugin by including this file with
// EXAMPLE_PLUGIN_NO_ENTRY and exporting an entry of their own.
#ifndef EXAMPLE_PLUGIN_NO_ENTRY
MASKCHECK_PLUGIN_EXPORT const maskcheck_plugin* maskcheck_plugin_v1(void) {
  return &example;
}
#endif
