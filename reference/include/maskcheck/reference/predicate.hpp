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
// An intersection of intervals is an interval: visible_keys() returns it. One more clause is a
// union, attention sinks (StreamingLLM, S = sink_tokens): a row that sees a key by the five
// clauses also sees the first S keys of its segment that pass every clause but the window's left
// bound. Those lie at the segment's start, so a row's keys are at most two intervals, row_keys():
// the sinks, then a gap, then visible_keys() (sinks that touch the window are merged into it, so
// a row with a non-empty `sinks` really has a gap). A row sees a key iff visible_keys() is not
// empty. A new clause changes row_keys() and nothing else: the padding clause's ranges
// (valid_ranges) and the tile bounds of kernels (TileBounds, the fold of row_keys() over a tile's
// rows) are derived here, never re-derived by a kernel.
#pragma once

#include <cstdint>
#include <limits>
#include <type_traits>
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
  std::int64_t sink_tokens = 0;               // attention sinks: S keys per segment, or 0: none
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
// The limits of a signed index type (std::numeric_limits is host-only in device code).
template <class Index>
MC_HD constexpr Index index_max() {
  return static_cast<Index>(static_cast<std::make_unsigned_t<Index>>(-1) >> 1);
}
template <class Index>
MC_HD constexpr Index index_min() {
  return -index_max<Index>() - 1;
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

// The keys visible to query q of sequence b: at most two intervals (see the header comment),
// `sinks` before `keys` with a gap between them; `sinks` is empty without attention sinks, and
// both are empty for a row that sees no key.
struct RowKeys {
  KeyRange sinks;  // the sink keys the window's left bound would drop, or empty
  KeyRange keys;   // the five clauses' interval (with any sink keys that touch it)
  MC_HD constexpr bool empty() const { return keys.empty(); }
  MC_HD constexpr bool contains(std::int64_t k) const {
    return keys.contains(k) || sinks.contains(k);
  }
  MC_HD constexpr std::int64_t size() const { return keys.size() + sinks.size(); }
  // f(k) for each visible key, in increasing order.
  template <class F>
  MC_HD constexpr void for_each(F&& f) const {
    for (std::int64_t k = sinks.begin; k < sinks.end; ++k) f(k);
    for (std::int64_t k = keys.begin; k < keys.end; ++k) f(k);
  }
};

namespace detail {
// The clauses of query q of sequence b relative to its segment: [lo_w, hi) the five clauses'
// interval, [lo, hi) the same without the window's left bound (where sinks may be).
struct RowClauses {
  bool valid = false;
  std::int64_t key0 = 0, lo = 0, lo_w = 0, hi = 0;
};
MC_HD constexpr RowClauses row_clauses(const MaskView& m, std::int64_t b, std::int64_t q) {
  // Padding and documents: the query's segment (keys limited to it).
  const QuerySegment s = query_segment(m, b, q);
  if (!s.valid) return RowClauses{};
  const std::int64_t diag = s.diag;
  // Causal (relaxed to the whole prefix for prefix-LM), the window's right bound and the chunk,
  // relative to the segment's diagonal; then the window's left bound.
  std::int64_t lo = 0, hi = s.k_len;
  if (m.causal)
    hi = min64(hi, m.prefix_lens != nullptr ? max64(diag + 1, m.prefix_lens[b]) : diag + 1);
  if (m.window_right != kUnbounded) hi = min64(hi, diag + m.window_right + 1);
  if (m.chunk > 0) {
    const std::int64_t first = floor_div(diag, m.chunk) * m.chunk;
    lo = max64(lo, first);
    hi = min64(hi, first + m.chunk);
  }
  const std::int64_t lo_w = m.window_left != kUnbounded ? max64(lo, diag - m.window_left) : lo;
  return RowClauses{true, s.key0, lo, lo_w, hi};
}
}  // namespace detail

MC_HD constexpr RowKeys row_keys(const MaskView& m, std::int64_t b, std::int64_t q) {
  const detail::RowClauses c = detail::row_clauses(m, b, q);
  if (!c.valid || c.hi <= c.lo_w) return RowKeys{};  // no key: no sink either
  RowKeys r;
  r.keys = KeyRange{c.key0 + c.lo_w, c.key0 + c.hi};
  // Sinks: the first S keys of the segment, within [lo, hi); merged when they reach the window.
  const std::int64_t sink_end = detail::min64(c.hi, m.sink_tokens);
  if (c.lo < sink_end) {
    if (sink_end >= c.lo_w) {
      r.keys.begin = c.key0 + c.lo;
    } else {
      r.sinks = KeyRange{c.key0 + c.lo, c.key0 + sink_end};
    }
  }
  return r;
}

// The interval of row_keys(): all of the row's keys unless it has attention sinks apart from it.
MC_HD constexpr KeyRange visible_keys(const MaskView& m, std::int64_t b, std::int64_t q) {
  const detail::RowClauses c = detail::row_clauses(m, b, q);
  if (!c.valid || c.hi <= c.lo_w) return KeyRange{0, 0};
  const bool merged =
      c.lo < detail::min64(c.hi, m.sink_tokens) && detail::min64(c.hi, m.sink_tokens) >= c.lo_w;
  return KeyRange{c.key0 + (merged ? c.lo : c.lo_w), c.key0 + c.hi};
}

MC_HD constexpr bool visible(const MaskView& m, std::int64_t b, std::int64_t q, std::int64_t k) {
  return row_keys(m, b, q).contains(k);
}

// ---- Tile bounds: the fold of row_keys() over a tile's query rows --------------------------
// What a kernel asks about a tile of query rows and a tile of keys [k_begin, k_end) (k_begin <
// k_end): may it skip the key tile, and may it skip the per-element test? Both answers come from
// TileBounds, the fold of the rows' intervals, so they stay right by construction when
// visible_keys() gains a clause. The fold is associative and commutative with TileBounds{} as
// its identity: a CPU loop over the rows and a CUDA warp's xor-shuffle butterfly (each lane
// folding its own rows, then combine() with the partner lane's value) give the same bounds.
// Index as in BasicKeyRange: std::int64_t (TileBounds), or int in a kernel whose key positions
// fit in 32 bits (the CUDA flash kernel: 64-bit bounds in its main loop cost it registers).
// Gap = false leaves the gap out (a kernel that keeps one interval per row and declines attention
// sinks: the CUDA kernels, whose registers it would cost).
template <class Index, bool Gap>
struct GapOf {
  using type = BasicKeyRange<Index>;
  static MC_HD constexpr type none() {
    return type{detail::index_min<Index>(), detail::index_max<Index>()};
  }
};
template <class Index>
struct GapOf<Index, false> {
  struct type {};
  static MC_HD constexpr type none() { return type{}; }
};

template <class Index, bool Gap = true>
struct BasicTileBounds {
  // [min begin, max end) over the rows that see a key: no row sees a key outside it (empty
  // when no row sees any key).
  BasicKeyRange<Index> span{std::numeric_limits<Index>::max(), std::numeric_limits<Index>::min()};
  // [max begin, min end) over the same rows: the keys that every row seeing a key sees.
  BasicKeyRange<Index> common{std::numeric_limits<Index>::min(), std::numeric_limits<Index>::max()};
  // Keys that no row sees although they may lie inside the span: the intersection over the rows
  // of each row's keys below its interval that it does not see (between its sinks and its window,
  // or below its window without sinks; everything for a row without keys). The gap between
  // attention sinks and a window shared by the rows lies in it.
  [[no_unique_address]] typename GapOf<Index, Gap>::type gap = GapOf<Index, Gap>::none();
  // Whether some row sees no key at all.
  bool any_empty_row = false;

  // No row sees a key of [k_begin, k_end): it lies outside the span or inside the gap, and the
  // key tile can be skipped. (A gap between the intervals of two documents' rows is not known.)
  MC_HD constexpr bool skips(Index k_begin, Index k_end) const {
    if constexpr (Gap) {
      if (gap.begin <= k_begin && k_end <= gap.end) return true;
    }
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

// The fold's two steps: the bounds of one row whose visible keys are `keys` (row_keys of the
// row; with Index = int the caller guarantees that they fit), or one interval `keys` ...
template <class Index = std::int64_t, bool Gap = true>
MC_HD constexpr BasicTileBounds<Index, Gap> row_tile_bounds(RowKeys keys) {
  BasicTileBounds<Index, Gap> t;
  if (keys.empty()) {
    t.any_empty_row = true;
    return t;
  }
  const auto k =
      BasicKeyRange<Index>{static_cast<Index>(keys.keys.begin), static_cast<Index>(keys.keys.end)};
  t.common = k;
  t.span =
      keys.sinks.empty() ? k : BasicKeyRange<Index>{static_cast<Index>(keys.sinks.begin), k.end};
  if constexpr (Gap) {
    t.gap = keys.sinks.empty() ? BasicKeyRange<Index>{detail::index_min<Index>(), k.begin}
                               : BasicKeyRange<Index>{static_cast<Index>(keys.sinks.end), k.begin};
  }
  return t;
}
template <class Index = std::int64_t, bool Gap = true>
MC_HD constexpr BasicTileBounds<Index, Gap> row_tile_bounds(KeyRange keys) {
  return row_tile_bounds<Index, Gap>(RowKeys{KeyRange{0, 0}, keys});
}

// ... and the bounds of the union of two sets of rows.
template <class Index, bool Gap>
MC_HD constexpr BasicTileBounds<Index, Gap> combine(const BasicTileBounds<Index, Gap>& l,
                                                    const BasicTileBounds<Index, Gap>& r) {
  BasicTileBounds<Index, Gap> t;
  t.span = BasicKeyRange<Index>{detail::min_of(l.span.begin, r.span.begin),
                                detail::max_of(l.span.end, r.span.end)};
  t.common = BasicKeyRange<Index>{detail::max_of(l.common.begin, r.common.begin),
                                  detail::min_of(l.common.end, r.common.end)};
  if constexpr (Gap) {
    t.gap = BasicKeyRange<Index>{detail::max_of(l.gap.begin, r.gap.begin),
                                 detail::min_of(l.gap.end, r.gap.end)};
  }
  t.any_empty_row = l.any_empty_row || r.any_empty_row;
  return t;
}

// The bounds of queries [q_begin, q_end) of sequence b.
MC_HD constexpr TileBounds tile_bounds(const MaskView& m, std::int64_t b, std::int64_t q_begin,
                                       std::int64_t q_end) {
  TileBounds t;
  for (std::int64_t q = q_begin; q < q_end; ++q) t = combine(t, row_tile_bounds(row_keys(m, b, q)));
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
