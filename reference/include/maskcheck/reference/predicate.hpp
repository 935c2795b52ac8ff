// The one visibility predicate. Every path (reference, CPU kernels, CUDA kernels, adapters that
// materialize masks) asks this header whether query q of sequence b may attend to key k.
//
// visible(q, k) is the conjunction of five clauses, each of which limits k to an interval:
//   padding:   q lies in its sequence's valid query range; k in the valid key range;
//   documents: k lies in the document that contains q (cu_seqlens);
//   causal:    k <= max(diag(q), P_b - 1), P_b the prefix length of prefix-LM (0 without);
//   window:    diag(q) - left <= k <= diag(q) + right;
//   chunk:     k lies in the chunk of diag(q): floor(k / C) == floor(diag(q) / C);
// where diag(q) is the key aligned with q inside its segment (document, or whole sequence):
// bottom-right: diag = q_seg + (seg_k_len - seg_q_len); top-left: diag = q_seg, and k, P_b and
// the chunks are counted from the segment's first key.
// An intersection of intervals is an interval, so visible_keys() returns it and visible() tests
// membership. A new clause changes visible_keys() and nothing else: the padding clause's ranges
// (valid_ranges) and the tile bounds of kernels (TileBounds, the fold of visible_keys() over a
// tile's rows) are derived here, never re-derived by a kernel.
#pragma once

#include <cstdint>
#include <limits>
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
  const std::int32_t* prefix_lens = nullptr;  // [B] prefix-LM (with causal), or nullptr: none
  std::int64_t chunk = 0;                     // chunked attention: chunk length, or 0: none
};

// Half-open key interval [begin, end) in padded key coordinates; empty when end <= begin.
// Positions are std::int64_t (KeyRange); a kernel whose positions fit in 32 bits may hold them as
// BasicKeyRange<int> to spend one register on each.
template <class Index>
struct BasicKeyRange {
  Index begin = 0;
  Index end = 0;
  MC_HD constexpr bool empty() const { return end <= begin; }
  MC_HD constexpr bool contains(Index k) const { return begin <= k && k < end; }
  MC_HD constexpr Index size() const { return end > begin ? end - begin : 0; }
};
using KeyRange = BasicKeyRange<std::int64_t>;

namespace detail {
template <class Index>
MC_HD constexpr Index min_of(Index a, Index b) {
  return a < b ? a : b;
}
template <class Index>
MC_HD constexpr Index max_of(Index a, Index b) {
  return a > b ? a : b;
}
MC_HD constexpr std::int64_t min64(std::int64_t a, std::int64_t b) {
  return min_of(a, b);
}
MC_HD constexpr std::int64_t max64(std::int64_t a, std::int64_t b) {
  return max_of(a, b);
}
// floor(a / c) for c > 0 and any sign of a.
MC_HD constexpr std::int64_t floor_div(std::int64_t a, std::int64_t c) {
  return a >= 0 ? a / c : -((-a + c - 1) / c);
}
}  // namespace detail

// First valid position of a sequence of `len` tokens padded to `padded` positions.
MC_HD constexpr std::int64_t valid_begin(PaddingSide side, std::int64_t padded, std::int64_t len) {
  return side == PaddingSide::left ? padded - len : 0;
}

// The padding clause of sequence b: its valid queries [q0, q0 + q_len) and keys [k0, k0 + k_len).
struct ValidRanges {
  std::int64_t q0 = 0, q_len = 0, k0 = 0, k_len = 0;
  MC_HD constexpr bool has_query(std::int64_t q) const { return q0 <= q && q < q0 + q_len; }
  MC_HD constexpr KeyRange keys() const { return KeyRange{k0, k0 + k_len}; }
};

MC_HD constexpr ValidRanges valid_ranges(const MaskView& m, std::int64_t b) {
  const std::int64_t q_len = m.q_lens ? m.q_lens[b] : m.Lq;
  const std::int64_t k_len = m.k_lens ? m.k_lens[b] : m.Lk;
  return ValidRanges{valid_begin(m.padding, m.Lq, q_len), q_len,
                     valid_begin(m.padding, m.Lk, k_len), k_len};
}

// The segment of query q of sequence b: its first key (padded key coordinates), its key count,
// and the query's diagonal relative to that first key (the alignment's; the ALiBi distance and
// the causal, window and chunk clauses count from it). `valid` is false for a padded query.
struct QuerySegment {
  bool valid = false;
  std::int64_t key0 = 0;   // the segment's first key
  std::int64_t k_len = 0;  // its keys
  std::int64_t diag = 0;   // the diagonal, relative to key0 (may lie outside [0, k_len))
};

MC_HD constexpr QuerySegment query_segment(const MaskView& m, std::int64_t b, std::int64_t q) {
  // Padding: the query must be valid.
  const ValidRanges v = valid_ranges(m, b);
  if (!v.has_query(q)) return QuerySegment{};
  const std::int64_t qi = q - v.q0;

  // Documents: the segment is the document holding qi (the last one starting at or before qi,
  // which skips empty documents); without documents it is the whole valid range.
  std::int64_t seg_q = 0, seg_q_len = v.q_len, seg_k = 0, seg_k_len = v.k_len;
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
  const std::int64_t diag =
      (qi - seg_q) + (m.alignment == Alignment::bottom_right ? seg_k_len - seg_q_len : 0);
  return QuerySegment{true, v.k0 + seg_k, seg_k_len, diag};
}

// The key on query q's diagonal in padded key coordinates (ALiBi's reference point); meaningful
// for a valid query only.
MC_HD constexpr std::int64_t query_diagonal(const MaskView& m, std::int64_t b, std::int64_t q) {
  const QuerySegment s = query_segment(m, b, q);
  return s.key0 + s.diag;
}

// The keys visible to query q of sequence b (see the header comment for the clauses).
MC_HD constexpr KeyRange visible_keys(const MaskView& m, std::int64_t b, std::int64_t q) {
  // Padding and documents: the query's segment (keys limited to it).
  const QuerySegment s = query_segment(m, b, q);
  if (!s.valid) return KeyRange{0, 0};
  const std::int64_t diag = s.diag;

  // Causal (relaxed to the whole prefix for prefix-LM), window and chunk, relative to the
  // segment's diagonal.
  std::int64_t lo = 0, hi = s.k_len;
  if (m.causal)
    hi = detail::min64(
        hi, m.prefix_lens != nullptr ? detail::max64(diag + 1, m.prefix_lens[b]) : diag + 1);
  if (m.window_left != kUnbounded) lo = detail::max64(lo, diag - m.window_left);
  if (m.window_right != kUnbounded) hi = detail::min64(hi, diag + m.window_right + 1);
  if (m.chunk > 0) {
    const std::int64_t first = detail::floor_div(diag, m.chunk) * m.chunk;
    lo = detail::max64(lo, first);
    hi = detail::min64(hi, first + m.chunk);
  }
  if (hi < lo) hi = lo;
  return KeyRange{s.key0 + lo, s.key0 + hi};
}

MC_HD constexpr bool visible(const MaskView& m, std::int64_t b, std::int64_t q, std::int64_t k) {
  return visible_keys(m, b, q).contains(k);
}

// ---- Tile bounds: the fold of visible_keys() over a tile's query rows ----------------------
// What a kernel asks about a tile of query rows and a tile of keys [k_begin, k_end) (k_begin <
// k_end): may it skip the key tile, and may it skip the per-element test? Both answers come from
// TileBounds, the fold of the rows' intervals, so they stay right by construction when
// visible_keys() gains a clause. The fold is associative and commutative with TileBounds{} as
// its identity: a CPU loop over the rows and a CUDA warp's xor-shuffle butterfly (each lane
// folding its own rows, then combine() with the partner lane's value) give the same bounds.
// Index as in BasicKeyRange: std::int64_t (TileBounds), or int in a kernel whose key positions
// fit in 32 bits (the CUDA flash kernel: 64-bit bounds in its main loop cost it registers).
template <class Index>
struct BasicTileBounds {
  // [min begin, max end) over the rows that see a key: no row sees a key outside it (empty
  // when no row sees any key).
  BasicKeyRange<Index> span{std::numeric_limits<Index>::max(), std::numeric_limits<Index>::min()};
  // [max begin, min end) over the same rows: the keys that every row seeing a key sees.
  BasicKeyRange<Index> common{std::numeric_limits<Index>::min(), std::numeric_limits<Index>::max()};
  // Whether some row sees no key at all.
  bool any_empty_row = false;

  // [k_begin, k_end) lies outside the span, so no row sees a key of it: the key tile can be
  // skipped. (A gap inside the span, between the intervals of two documents' rows, is not.)
  MC_HD constexpr bool skips(Index k_begin, Index k_end) const {
    return span.end <= k_begin || k_end <= span.begin;
  }
  // Every row that sees a key sees all of [k_begin, k_end): a kernel that writes rows without
  // visible keys as empty rows (whatever it computed for them) needs no per-element test.
  MC_HD constexpr bool unmasked(Index k_begin, Index k_end) const {
    return common.begin <= k_begin && k_end <= common.end;
  }
  // Every (q, k) of the tile is visible.
  MC_HD constexpr bool fully_visible(Index k_begin, Index k_end) const {
    return !any_empty_row && unmasked(k_begin, k_end);
  }
};
using TileBounds = BasicTileBounds<std::int64_t>;

// The fold's two steps: the bounds of one row whose visible keys are `keys` (visible_keys of
// the row; with Index = int the caller guarantees that they fit) ...
template <class Index = std::int64_t>
MC_HD constexpr BasicTileBounds<Index> row_tile_bounds(KeyRange keys) {
  BasicTileBounds<Index> t;
  if (keys.empty()) {
    t.any_empty_row = true;
  } else {
    t.span = BasicKeyRange<Index>{static_cast<Index>(keys.begin), static_cast<Index>(keys.end)};
    t.common = t.span;
  }
  return t;
}

// ... and the bounds of the union of two sets of rows.
template <class Index>
MC_HD constexpr BasicTileBounds<Index> combine(const BasicTileBounds<Index>& l,
                                               const BasicTileBounds<Index>& r) {
  BasicTileBounds<Index> t;
  t.span = BasicKeyRange<Index>{detail::min_of(l.span.begin, r.span.begin),
                                detail::max_of(l.span.end, r.span.end)};
  t.common = BasicKeyRange<Index>{detail::max_of(l.common.begin, r.common.begin),
                                  detail::min_of(l.common.end, r.common.end)};
  t.any_empty_row = l.any_empty_row || r.any_empty_row;
  return t;
}

// The bounds of queries [q_begin, q_end) of sequence b.
MC_HD constexpr TileBounds tile_bounds(const MaskView& m, std::int64_t b, std::int64_t q_begin,
                                       std::int64_t q_end) {
  TileBounds t;
  for (std::int64_t q = q_begin; q < q_end; ++q)
    t = combine(t, row_tile_bounds(visible_keys(m, b, q)));
  return t;
}

// One-question forms: the smallest key interval holding every visible key of the rows (empty if
// none), and whether every (q, k) of [q_begin, q_end) x [k_begin, k_end) is visible.
MC_HD constexpr KeyRange tile_key_span(const MaskView& m, std::int64_t b, std::int64_t q_begin,
                                       std::int64_t q_end) {
  const KeyRange span = tile_bounds(m, b, q_begin, q_end).span;
  return span.empty() ? KeyRange{0, 0} : span;
}
MC_HD constexpr bool tile_fully_visible(const MaskView& m, std::int64_t b, std::int64_t q_begin,
                                        std::int64_t q_end, std::int64_t k_begin,
                                        std::int64_t k_end) {
  return tile_bounds(m, b, q_begin, q_end).fully_visible(k_begin, k_end);
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
  const std::vector<std::int32_t>& prefix_lens() const { return prefix_lens_; }

 private:
  MaskView base_;
  std::vector<std::int32_t> q_lens_, k_lens_, doc_ptr_, cu_q_, cu_k_, prefix_lens_;
};

}  // namespace maskcheck
