// The one visibility predicate. Every path (reference, CPU kernels, CUDA kernels, adapters that
// materialize masks) asks this header whether query q of sequence b may attend to key k.
//
// visible(q, k) is the conjunction of four clauses, each of which limits k to an interval:
//   padding:   q lies in its sequence's valid query range; k in the valid key range;
//   documents: k lies in the document that contains q (cu_seqlens);
//   causal:    k <= diag(q);
//   window:    diag(q) - left <= k <= diag(q) + right;
// where diag(q) is the key aligned with q inside its segment (document, or whole sequence):
// bottom-right: diag = q_seg + (seg_k_len - seg_q_len); top-left: diag = q_seg.
// An intersection of intervals is an interval, so visible_keys() returns it and visible() tests
// membership; kernels derive tile skipping from the same interval (tile_key_span and
// tile_fully_visible below), never from a formula of their own.
#pragma once

#include <cstdint>
#include <vector>

#include "maskcheck/reference/common.hpp"
#include "maskcheck/reference/problems.hpp"

namespace maskcheck {

// A MaskSpec flattened into plain arrays (usable in device code once the arrays live there).
struct MaskView {
  std::int64_t B = 1, Lq = 0, Lk = 0;
  const std::int32_t* q_lens = nullptr;   // [B], or nullptr: every sequence has Lq queries
  const std::int32_t* k_lens = nullptr;   // [B], or nullptr: Lk keys
  const std::int32_t* doc_ptr = nullptr;  // [B + 1] offsets into cu_q / cu_k, or nullptr
  const std::int32_t* cu_q = nullptr;     // sequence b: cu_q[doc_ptr[b] .. doc_ptr[b + 1])
  const std::int32_t* cu_k = nullptr;
  std::int64_t window_left = kUnbounded;
  std::int64_t window_right = kUnbounded;
  PaddingSide padding = PaddingSide::right;
  bool causal = false;
  Alignment alignment = Alignment::bottom_right;
};

// Half-open key interval [begin, end) in padded key coordinates; empty when end <= begin.
struct KeyRange {
  std::int64_t begin = 0;
  std::int64_t end = 0;
  MC_HD constexpr bool empty() const { return end <= begin; }
  MC_HD constexpr bool contains(std::int64_t k) const { return begin <= k && k < end; }
  MC_HD constexpr std::int64_t size() const { return end > begin ? end - begin : 0; }
};

namespace detail {
MC_HD constexpr std::int64_t min64(std::int64_t a, std::int64_t b) {
  return a < b ? a : b;
}
MC_HD constexpr std::int64_t max64(std::int64_t a, std::int64_t b) {
  return a > b ? a : b;
}
}  // namespace detail

// First valid position of a sequence of `len` tokens padded to `padded` positions.
MC_HD constexpr std::int64_t valid_begin(PaddingSide side, std::int64_t padded, std::int64_t len) {
  return side == PaddingSide::left ? padded - len : 0;
}

// The keys visible to query q of sequence b (see the header comment for the clauses).
MC_HD constexpr KeyRange visible_keys(const MaskView& m, std::int64_t b, std::int64_t q) {
  // Padding: the query must be valid; keys are limited to the valid key range.
  const std::int64_t q_len = m.q_lens ? m.q_lens[b] : m.Lq;
  const std::int64_t k_len = m.k_lens ? m.k_lens[b] : m.Lk;
  const std::int64_t q0 = valid_begin(m.padding, m.Lq, q_len);
  const std::int64_t k0 = valid_begin(m.padding, m.Lk, k_len);
  if (q < q0 || q >= q0 + q_len) return KeyRange{0, 0};
  const std::int64_t qi = q - q0;

  // Documents: the segment is the document holding qi (the last one starting at or before qi,
  // which skips empty documents); without documents it is the whole valid range.
  std::int64_t seg_q = 0, seg_q_len = q_len, seg_k = 0, seg_k_len = k_len;
  if (m.doc_ptr != nullptr) {
    const std::int32_t* cq = m.cu_q + m.doc_ptr[b];
    const std::int32_t* ck = m.cu_k + m.doc_ptr[b];
    std::int64_t lo = 0, hi = m.doc_ptr[b + 1] - m.doc_ptr[b] - 1;  // documents in [lo, hi)
    while (hi - lo > 1) {
      const std::int64_t mid = lo + (hi - lo) / 2;
      if (cq[mid] <= qi) {
        lo = mid;
      } else {
        hi = mid;
      }
    }
    seg_q = cq[lo];
    seg_q_len = cq[lo + 1] - cq[lo];
    seg_k = ck[lo];
    seg_k_len = ck[lo + 1] - ck[lo];
  }

  // Causal and window, relative to the segment's diagonal.
  const std::int64_t diag =
      (qi - seg_q) + (m.alignment == Alignment::bottom_right ? seg_k_len - seg_q_len : 0);
  std::int64_t lo = 0, hi = seg_k_len;
  if (m.causal) hi = detail::min64(hi, diag + 1);
  if (m.window_left != kUnbounded) lo = detail::max64(lo, diag - m.window_left);
  if (m.window_right != kUnbounded) hi = detail::min64(hi, diag + m.window_right + 1);
  if (hi < lo) hi = lo;
  return KeyRange{k0 + seg_k + lo, k0 + seg_k + hi};
}

MC_HD constexpr bool visible(const MaskView& m, std::int64_t b, std::int64_t q, std::int64_t k) {
  return visible_keys(m, b, q).contains(k);
}

// Derived tile helpers for kernels. Queries [q_begin, q_end) of sequence b:
// the smallest key interval holding every visible key of the tile (empty if none) ...
MC_HD constexpr KeyRange tile_key_span(const MaskView& m, std::int64_t b, std::int64_t q_begin,
                                       std::int64_t q_end) {
  KeyRange span{0, 0};
  for (std::int64_t q = q_begin; q < q_end; ++q) {
    const KeyRange r = visible_keys(m, b, q);
    if (r.empty()) continue;
    if (span.empty()) {
      span = r;
    } else {
      span.begin = detail::min64(span.begin, r.begin);
      span.end = detail::max64(span.end, r.end);
    }
  }
  return span;
}

// ... and whether every (q, k) of the tile [q_begin, q_end) x [k_begin, k_end) is visible, in
// which case a kernel may skip the per-element predicate.
MC_HD constexpr bool tile_fully_visible(const MaskView& m, std::int64_t b, std::int64_t q_begin,
                                        std::int64_t q_end, std::int64_t k_begin,
                                        std::int64_t k_end) {
  for (std::int64_t q = q_begin; q < q_end; ++q) {
    const KeyRange r = visible_keys(m, b, q);
    if (r.begin > k_begin || r.end < k_end) return false;
  }
  return true;
}

// Owns the flattened arrays of a MaskSpec; view() points into them.
class FlatMask {
 public:
  explicit FlatMask(const MaskSpec& spec);  // validates the spec
  MaskView view() const;
  const std::vector<std::int32_t>& q_lens() const { return q_lens_; }
  const std::vector<std::int32_t>& k_lens() const { return k_lens_; }
  const std::vector<std::int32_t>& doc_ptr() const { return doc_ptr_; }
  const std::vector<std::int32_t>& cu_q() const { return cu_q_; }
  const std::vector<std::int32_t>& cu_k() const { return cu_k_; }

 private:
  MaskView base_;
  std::vector<std::int32_t> q_lens_, k_lens_, doc_ptr_, cu_q_, cu_k_;
};

}  // namespace maskcheck
