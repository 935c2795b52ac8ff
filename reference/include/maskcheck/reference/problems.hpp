// Problem types: the shapes and options of every operation, with validation.
//
// Conventions (the contract between reference, kernels and adapters):
// - A keep-mask holds 1 where attention is allowed (Hugging Face attention_mask, PyTorch SDPA
//   boolean attn_mask). The structured MaskSpec below is the source of every mask.
// - Padding: sequence b has q_lens[b] valid queries and k_lens[b] valid keys. Right padding puts
//   them at [0, len), left padding at [L - len, L). Padded queries see nothing.
// - Causal and sliding window are measured from the diagonal of the segment the query lies in
//   (the sequence's valid range, or its document when cu_seqlens are given), with segment-relative
//   positions: bottom-right alignment puts the diagonal at k = q + (seg_k_len - seg_q_len)
//   (FlashAttention >= 2.1, flashinfer: the last query sees the last key), top-left at k = q
//   (PyTorch is_causal=True). causal == window (unbounded, 0).
// - Packed documents: cu_seqlens_q[b] / cu_seqlens_k[b] split sequence b's valid range into
//   documents ([0, ..., len], non-decreasing, same count for q and k); q and k must share one.
// - Prefix-LM (prefix_lens, with causal): the first P_b keys of each segment of sequence b are a
//   bidirectional prefix: the causal clause becomes k <= max(diag, P_b - 1), so a query whose
//   diagonal lies in the prefix sees the whole prefix and later queries stay causal (and see the
//   prefix unless a window cuts it off). The window still applies. P_b >= 0 may exceed a
//   segment (that segment is then bidirectional).
// - Chunked attention (chunk = C > 0, Llama 4): a query sees only keys of its own chunk, the
//   chunks being [j C, (j + 1) C) in segment key positions and the query's chunk that of its
//   diagonal; with causal, causal inside the chunk. It equals documents of C keys when queries
//   and keys are aligned (self-attention).
// - Attention sinks (sink_tokens = S > 0, StreamingLLM): the first S keys of each segment are
//   visible to every query that sees any key, whatever the window's left bound: they are exempt
//   from that bound only (causal, the window's right bound and the chunk still apply to them),
//   so a row's visible keys become two intervals, the sinks and the window after a gap.
// - A query with no visible key (a "fully masked row") gets zero output, zero weights and
//   log-sum-exp -inf; never NaN.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "maskcheck/reference/common.hpp"
#include "maskcheck/reference/philox.hpp"

namespace maskcheck {

enum class PaddingSide : std::uint8_t { right, left };
enum class Alignment : std::uint8_t { bottom_right, top_left };
enum class Reduction : std::uint8_t { none, sum, mean };

// A window side without limit.
inline constexpr std::int64_t kUnbounded = std::numeric_limits<std::int64_t>::max();
// Largest bounded window side accepted (keeps diagonal arithmetic far from overflow).
inline constexpr std::int64_t kMaxWindow = std::int64_t{1} << 40;
inline constexpr std::int64_t kDefaultIgnoreIndex = -100;

struct Window {
  std::int64_t left = kUnbounded;   // keys up to `left` before the diagonal
  std::int64_t right = kUnbounded;  // keys up to `right` after the diagonal
  bool operator==(const Window&) const = default;
};

// The structured mask of an attention-shaped problem, [B, Lq, Lk], shared by all heads.
struct MaskSpec {
  std::int64_t B = 1;
  std::int64_t Lq = 0;
  std::int64_t Lk = 0;
  std::vector<std::int32_t> q_lens;  // [B] valid queries per sequence; empty: all Lq
  std::vector<std::int32_t> k_lens;  // [B] valid keys per sequence; empty: all Lk
  PaddingSide padding = PaddingSide::right;
  bool causal = false;
  Alignment alignment = Alignment::bottom_right;
  std::optional<Window> window;
  std::vector<std::vector<std::int32_t>> cu_seqlens_q;  // [B][docs + 1]; empty: one document
  std::vector<std::vector<std::int32_t>> cu_seqlens_k;
  std::vector<std::int32_t>
      prefix_lens;               // [B] prefix-LM prefix lengths (needs causal); empty: none
  std::int64_t chunk = 0;        // chunked attention: chunk length; 0: none
  std::int64_t sink_tokens = 0;  // attention sinks: the first S keys of each segment; 0: none

  std::int64_t q_len(std::int64_t b) const { return q_lens.empty() ? Lq : q_lens[b]; }
  std::int64_t k_len(std::int64_t b) const { return k_lens.empty() ? Lk : k_lens[b]; }
  bool has_documents() const { return !cu_seqlens_q.empty(); }
  // Prefix-LM or chunking: the clauses that ABI 1.2 added to plugins' mask descriptor and that
  // adapters with a mask logic of their own must decline unless they implement them.
  bool has_prefix_or_chunk() const { return !prefix_lens.empty() || chunk > 0; }
  // Attention-sink tokens: the clause ABI 1.4 added (a row's keys are two intervals).
  bool has_sink_tokens() const { return sink_tokens > 0; }
  // Throws InvalidArgument naming the first bad field.
  void validate() const;
  bool operator==(const MaskSpec&) const = default;
};

// Masked softmax: y = softmax(x * scale + mask) over the last axis. x, y: [B, H, Lq, Lk].
// The scale defaults to 1 (x are scores already; attention's default 1/sqrt(D) belongs to the
// product q.k it computes itself) and may be any finite value, 0 and negative included.
// Masked-out entries of x are never read: they may hold NaN or +-inf.
struct SoftmaxProblem {
  MaskSpec mask;
  std::int64_t H = 1;
  double scale = 1.0;
  void validate() const;
  std::int64_t numel() const;
};

// Score modifiers of attention (each optional, all combinable), applied to each visible pair's
// score s = scale * <q_i, k_j> in this order, all before the mask (a masked key keeps weight
// exactly 0, whatever a modifier would make of its score):
//   1. soft-capping (Gemma 2): s = softcap * tanh(s / softcap) for softcap > 0 (0: none);
//   2. ALiBi: s += -alibi_slopes[h] * |j - diag(i)|, with diag(i) the key on query i's diagonal
//      in the mask's alignment (bottom-right: the last query of a segment faces its last key),
//      both counted inside the query's segment as the predicate does (predicate.hpp's
//      query_diagonal); alibi_slopes: [H] finite values (alibi_slope_schedule(H) is the usual one);
//   3. learned sink logits (gpt-oss): sink_logits[h] joins the softmax denominator of every row
//      of head h that sees a key, with no value: out_i = sum_j e^s_j v_j / (e^sink + sum_j e^s_j)
//      and lse_i = log(e^sink + sum_j e^s_j), so a row's weights sum to 1 - e^(sink - lse_i).
//      A row without a visible key still outputs 0 and lse -inf. sink_logits: [H], finite.
struct ScoreModifiers {
  double softcap = 0;
  std::vector<double> alibi_slopes;  // [H] or empty: no ALiBi
  std::vector<double> sink_logits;   // [H] or empty: no sink logits
  bool any() const { return softcap != 0 || !alibi_slopes.empty() || !sink_logits.empty(); }
  // "softcap, alibi": the modifiers present ("" for none).
  std::string describe() const;
  // Throws InvalidArgument naming the first bad field (softcap 0 or in [2^-10, 2^20]).
  void validate(std::int64_t H) const;
  bool operator==(const ScoreModifiers&) const = default;
};
// The ALiBi slope schedule of Press et al. (and Hugging Face's build_alibi_tensor): for n the
// largest power of two <= H, slopes 2^(-8 i / n) for i = 1..n, then (H > n) every other slope of
// the schedule for 2n heads, 2^(-4 i / n) for i = 1, 3, 5, ... H must be >= 1.
std::vector<double> alibi_slope_schedule(std::int64_t H);

// Attention's shape beside its mask: heads, kv heads, head dim and scale. Kernels take it with
// the mask's flattened view (which carries B, Lq and Lk), so that the mask reaches them once.
struct AttentionShape {
  std::int64_t H = 1;
  std::int64_t Hkv = 1;
  std::int64_t D = 1;
  std::optional<double> scale;  // default 1/sqrt(D)
  ScoreModifiers mods;          // soft-capping, ALiBi, sink logits (none by default)
  double effective_scale() const;
  // Throws InvalidArgument naming the first bad field, or the tensor of a [B, Lq, Lk] mask
  // whose element count overflows.
  void validate(std::int64_t B, std::int64_t Lq, std::int64_t Lk) const;
};

// Attention forward: O = softmax(Q K^T * scale + mask) V.
// q: [B, H, Lq, D], k, v: [B, Hkv, Lk, D], out: [B, H, Lq, D], lse: [B, H, Lq].
// Head h reads kv head h / (H / Hkv) (grouped-query attention). The scale defaults to 1/sqrt(D)
// and may be any finite value (0: uniform weights over the visible keys; negative: reversed).
// NaN and +-inf may sit in padding only (queries and keys outside a sequence's valid range),
// never in a key that some query of its sequence sees: keys masked for some rows only (causal,
// window, other documents) must be finite, because a tiled kernel multiplies their weight, an
// exact 0, by their values, and 0 * NaN is NaN.
struct AttentionProblem {
  MaskSpec mask;
  std::int64_t H = 1;
  std::int64_t Hkv = 1;
  std::int64_t D = 1;
  std::optional<double> scale;  // default 1/sqrt(D)
  ScoreModifiers mods;          // applied to the scores before the mask (see ScoreModifiers)
  AttentionShape shape() const { return AttentionShape{H, Hkv, D, scale, mods}; }
  double effective_scale() const;
  void validate() const;
  std::int64_t q_numel() const;
  std::int64_t kv_numel() const;
  std::int64_t lse_numel() const;
};

// A paged KV cache (vLLM, flashinfer): the keys and values of an attention problem stored in
// pages of page_size tokens, k_cache and v_cache [num_pages, page_size, Hkv, D], and a block table
// [B, max_pages]: logical key j of sequence b (0 <= j < k_len(b); a cache is never left-padded)
// lives in page block_table[b * max_pages + j / page_size], slot j % page_size. Pages may come in
// any order and be shared between sequences. Never read (they may hold anything): the table's
// entries past a sequence's ceil(k_len / page_size) pages (-1 is usual), pages no sequence uses,
// and the slots past k_len in a sequence's last page. The problem stays the logical one, with
// Lk <= max_pages * page_size; every mask clause applies to logical key positions.
// The cache row of logical key j of sequence b: page block_table[b * max_pages + j / page_size],
// slot j % page_size (the one place the layout is spelled out; kernels hold the table as a
// pointer).
MC_HD constexpr std::int64_t paged_slot(const std::int32_t* block_table, std::int64_t max_pages,
                                        std::int64_t page_size, std::int64_t b, std::int64_t j) {
  return std::int64_t{block_table[b * max_pages + j / page_size]} * page_size + j % page_size;
}

struct PagedKv {
  std::int64_t page_size = 16;
  std::int64_t num_pages = 0;
  std::int64_t max_pages = 0;
  std::vector<std::int32_t> block_table;  // [B, max_pages]
  // The pages sequence b uses: ceil(k_len / page_size).
  static std::int64_t pages_of(std::int64_t k_len, std::int64_t page_size) {
    return (k_len + page_size - 1) / page_size;
  }
  // Throws InvalidArgument naming the first bad field (page_size in [1, 2^16], the table's size,
  // an entry a sequence uses outside [0, num_pages), left padding, Lk beyond the table).
  void validate(const AttentionProblem& p) const;
  std::int64_t cache_numel(const AttentionProblem& p) const;  // num_pages * page_size * Hkv * D
  // paged_slot() of this cache (the table must hold sequence b's pages).
  std::int64_t slot(std::int64_t b, std::int64_t j) const {
    return paged_slot(block_table.data(), max_pages, page_size, b, j);
  }
  bool operator==(const PagedKv&) const = default;
};
// The front door of paged attention: the problem, the cache and the sizes of q and the caches.
void validate_paged_inputs(const AttentionProblem& p, const PagedKv& kv, std::size_t q_size,
                           std::size_t k_size, std::size_t v_size);

// Attention in the packed (varlen) layout, with no padding at all: sequence b owns rows
// [cu_seqlens_q[b], cu_seqlens_q[b+1]) of q, out: [T_q, H, D] and rows [cu_seqlens_k[b],
// cu_seqlens_k[b+1]) of k, v: [T_k, Hkv, D]; lse: [H, T_q]. Causal and window apply per sequence.
// It equals the padded problem of padded(): the sequences right-padded to the longest.
struct VarlenAttentionProblem {
  std::int64_t H = 1, Hkv = 1, D = 1;
  std::vector<std::int32_t> cu_seqlens_q, cu_seqlens_k;  // [B + 1] each
  bool causal = false;
  Alignment alignment = Alignment::bottom_right;
  std::optional<Window> window;
  std::optional<double> scale;
  std::int64_t batch() const { return static_cast<std::int64_t>(cu_seqlens_q.size()) - 1; }
  std::int64_t total_q() const { return cu_seqlens_q.empty() ? 0 : cu_seqlens_q.back(); }
  std::int64_t total_k() const { return cu_seqlens_k.empty() ? 0 : cu_seqlens_k.back(); }
  AttentionProblem padded() const;  // validates
  void validate() const;
};

// Cross-entropy. logits: [N, V], labels: [N], weights: [N] (optional, >= 0).
// l_i = -(1 - eps) log p_i[y_i] - eps/V sum_j log p_i[j] for labels != ignore_index;
// none: w_i l_i per row (0 for ignored rows); sum: sum_i w_i l_i;
// mean: sum_i w_i l_i / sum_i w_i over contributing rows (0 when nothing contributes).
// Backward gives dlogits of the reduced loss (for `none`, of the sum of the rows).
struct LossProblem {
  std::int64_t N = 0;
  std::int64_t V = 1;
  std::int64_t ignore_index = kDefaultIgnoreIndex;
  double label_smoothing = 0.0;
  Reduction reduction = Reduction::mean;
  bool weighted = false;
  void validate() const;
};

// Causal-LM labels: labels[b, t] = ids[b, t + 1] when positions t and t + 1 are both valid
// (attention mask 1) and t + 1 is not part of the prompt (its index within the sequence, i.e. its
// offset from the sequence's first valid position, is at least prompt_lens[b]: a hole in the keep
// mask still counts as a position); ignore_index elsewhere. ids, keep, labels: [B, L];
// prompt_lens: [B].
struct LmLabelsProblem {
  std::int64_t B = 1;
  std::int64_t L = 0;
  std::int64_t ignore_index = kDefaultIgnoreIndex;
  void validate() const;
};

// BERT-style MLM masking, ids/keep/special/continuation: [B, L].
// Each eligible token (keep = 1, special = 0) is selected with probability p; of the selected,
// a fraction p_mask becomes mask_id, p_random a uniform token in [0, V), the rest stay.
// Randomness: Philox4x32-10, key = seed, counter = (position in sequence, sequence, 0, 0).
// With whole_word, a continuation token (continuation = 1) follows its word's first token.
// max_predictions > 0 caps the selected tokens per sequence (smallest draws win, whole words).
struct MlmProblem {
  std::int64_t B = 1;
  std::int64_t L = 0;
  std::int64_t V = 2;
  std::int64_t mask_id = 0;
  double p = 0.15;
  double p_mask = 0.8;
  double p_random = 0.1;
  std::uint64_t seed = 0;
  bool whole_word = false;
  std::int32_t max_predictions = 0;
  std::int64_t ignore_index = kDefaultIgnoreIndex;
  void validate() const;
};

// Validation of an operation's inputs beyond its shapes, shared by every implementation's front
// door: labels in [0, V) or ignore_index, weights finite and >= 0; valid MLM tokens in [0, V).
// The attention front door: validates the problem and the sizes of q, k and v.
void validate_attention_inputs(const AttentionProblem& p, std::size_t q_size, std::size_t k_size,
                               std::size_t v_size);
// The same, and dout [B, H, Lq, D] of attention backward.
void validate_attention_inputs(const AttentionProblem& p, std::size_t q_size, std::size_t k_size,
                               std::size_t v_size, std::size_t dout_size);
void validate_loss_inputs(const LossProblem& p, std::span<const std::int64_t> labels,
                          std::span<const double> weights);
// Cross-entropy's upstream gradient: empty (ones), or with a backward [N] for reduction none and
// [1] for mean and sum. Its values are not checked (NaN and inf propagate like any gradient).
void validate_upstream_gradient(const LossProblem& p, bool backward,
                                std::span<const double> grad_output);
void validate_mlm_inputs(const MlmProblem& p, std::span<const std::int64_t> ids,
                         std::span<const std::uint8_t> keep, std::span<const std::uint8_t> special,
                         std::span<const std::uint8_t> continuation);
// The integer thresholds every MLM implementation compares Philox draws against.
MlmThresholds mlm_thresholds(const MlmProblem& p);

std::string to_string(PaddingSide s);
std::string to_string(Alignment a);
std::string to_string(Reduction r);
PaddingSide padding_side_from_string(std::string_view s);
Alignment alignment_from_string(std::string_view s);
Reduction reduction_from_string(std::string_view s);

}  // namespace maskcheck
