// The tile bounds of the one predicate (TileBounds in predicate.hpp) against per-row visibility,
// for random masks (padding left and right, causal top-left and bottom-right, windows, documents,
// Lq != Lk, rows that see nothing), folded in the very steps each attention kernel folds them:
//   CPU (kernels/cpu/src/attention.cpp, RunTile): query tiles of 64 valid rows, register blocks
//     of 2 or 6 rows, key tiles of 16, 32 or 64 keys counted from the first valid key;
//   CUDA (kernels/cuda/src/attention.cu, flash_kernel): blocks of 128 query rows with 128 or 256
//     threads, each thread folding its rows, each warp its 32 lanes by an xor-shuffle butterfly
//     (emulated here lane by lane), the block its warps; key tiles of 32 or 64 keys counted from
//     the span's first key; padded layout (rows up to Lq) and packed layout (rows up to the
//     sequence's length).
// The CUDA kernel's tile logic is thus tested on machines without a GPU. The expectations come
// from visible() element by element, not from interval arithmetic.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "maskcheck/reference/predicate.hpp"
#include "maskcheck/suite/generators.hpp"

namespace mc = maskcheck;

namespace {

// The kernels' tile geometry (see the file comment).
constexpr std::int64_t kCpuQueryTile = 64;
constexpr std::int64_t kCpuBlockRows[] = {2, 6};
constexpr std::int64_t kCpuKeyTiles[] = {16, 32, 64};
struct CudaConfig {
  int threads;   // 32 * warps
  int key_tile;  // kBN
};
constexpr int kCudaBlockRows = 128;
constexpr CudaConfig kCudaConfigs[] = {{128, 64}, {128, 32}, {256, 32}};  // D <= 64, 128, 256

// Compile-time: the fold's identity and one step.
static_assert(mc::TileBounds{}.span.empty() && !mc::TileBounds{}.any_empty_row);
static_assert(mc::combine(mc::TileBounds{}, mc::row_tile_bounds(mc::KeyRange{2, 5})).span.end == 5);
static_assert(mc::row_tile_bounds(mc::KeyRange{4, 4}).any_empty_row);

// Per-row visibility, element by element: prefix[(b * Lq + q) * (Lk + 1) + k] counts the keys
// below k that query q of sequence b sees.
class Rows {
 public:
  explicit Rows(const mc::MaskSpec& m) : m_(m), flat_(m) {
    const mc::MaskView v = flat_.view();
    prefix_.assign(static_cast<std::size_t>(m.B * m.Lq * (m.Lk + 1)), 0);
    hulls_.resize(static_cast<std::size_t>(m.B * m.Lq));
    for (std::int64_t b = 0; b < m.B; ++b)
      for (std::int64_t q = 0; q < m.Lq; ++q) {
        mc::KeyRange& h = hulls_[static_cast<std::size_t>(b * m.Lq + q)];
        for (std::int64_t k = 0; k < m.Lk; ++k) {
          const bool vis = mc::visible(v, b, q, k);
          at(b, q, k + 1) = at(b, q, k) + (vis ? 1 : 0);
          if (vis && h.empty()) h.begin = k;
          if (vis) h.end = k + 1;
        }
      }
  }
  mc::MaskView view() const { return flat_.view(); }

  // Keys of [k0, k1) that row q sees (rows past Lq see none, nor does anyone keys past Lk).
  std::int64_t count(std::int64_t b, std::int64_t q, std::int64_t k0, std::int64_t k1) const {
    if (q >= m_.Lq) return 0;
    k0 = std::clamp<std::int64_t>(k0, 0, m_.Lk);
    k1 = std::clamp<std::int64_t>(k1, 0, m_.Lk);
    return k1 > k0 ? at(b, q, k1) - at(b, q, k0) : 0;
  }
  bool sees_any(std::int64_t b, std::int64_t q) const { return count(b, q, 0, m_.Lk) > 0; }
  bool covers(std::int64_t b, std::int64_t q, std::int64_t k0, std::int64_t k1) const {
    return k1 <= m_.Lk && count(b, q, k0, k1) == k1 - k0;
  }

  // The smallest interval holding every key that rows [q0, q1) see; {0, 0} if none.
  mc::KeyRange hull(std::int64_t b, std::int64_t q0, std::int64_t q1) const {
    std::int64_t lo = m_.Lk, hi = 0;
    for (std::int64_t q = q0; q < std::min(q1, m_.Lq); ++q) {
      const mc::KeyRange& h = hulls_[static_cast<std::size_t>(b * m_.Lq + q)];
      if (h.empty()) continue;
      lo = std::min(lo, h.begin);
      hi = std::max(hi, h.end);
    }
    return hi > lo ? mc::KeyRange{lo, hi} : mc::KeyRange{0, 0};
  }

  // What the bounds of rows [q0, q1) must answer for keys [k0, k1).
  struct Expected {
    bool any = false;      // some row sees some key: not skipped
    bool unmasked = true;  // every row that sees a key sees them all
    bool fully = true;     // every row sees them all
  };
  Expected expect(std::int64_t b, std::int64_t q0, std::int64_t q1, std::int64_t k0,
                  std::int64_t k1) const {
    Expected e;
    for (std::int64_t q = q0; q < q1; ++q) {
      const bool all = covers(b, q, k0, k1);
      e.any = e.any || count(b, q, k0, k1) > 0;
      e.fully = e.fully && all;
      if (sees_any(b, q)) e.unmasked = e.unmasked && all;
    }
    return e;
  }

 private:
  std::int32_t& at(std::int64_t b, std::int64_t q, std::int64_t k) {
    return prefix_[static_cast<std::size_t>((b * m_.Lq + q) * (m_.Lk + 1) + k)];
  }
  std::int32_t at(std::int64_t b, std::int64_t q, std::int64_t k) const {
    return prefix_[static_cast<std::size_t>((b * m_.Lq + q) * (m_.Lk + 1) + k)];
  }

  const mc::MaskSpec& m_;
  mc::FlatMask flat_;
  std::vector<std::int32_t> prefix_;
  std::vector<mc::KeyRange> hulls_;  // [B, Lq]: first and last visible key + 1 of each row
};

// Equal bounds, whatever their index type (with no row that sees a key, span and common are the
// fold's identity, whose sentinels differ between int and int64).
template <class X, class Y>
bool same(const X& x, const Y& y) {
  if (x.any_empty_row != y.any_empty_row || x.span.empty() != y.span.empty()) return false;
  return x.span.empty() || (x.span.begin == y.span.begin && x.span.end == y.span.end &&
                            x.common.begin == y.common.begin && x.common.end == y.common.end);
}

// The bounds of rows [q0, q1) against the rows: the span is exactly their hull; for keys
// [k0, k1), skips() holds when they lie outside the hull, and only when no row sees one of them
// (a gap inside the hull is skipped when it lies between every row's attention sinks and its
// window, not between two documents' rows); unmasked() and fully_visible() exactly when every row
// that sees a key, or every row, sees them all (without sinks; with them, only then: the common
// interval leaves the sinks out).
template <class Bounds>
void check_span(const Bounds& t, const Rows& rows, std::int64_t b, std::int64_t q0,
                std::int64_t q1) {
  const mc::KeyRange hull = rows.hull(b, q0, q1);
  RC_ASSERT(t.span.empty() == hull.empty());
  if (!hull.empty()) {
    RC_ASSERT(static_cast<std::int64_t>(t.span.begin) == hull.begin);
    RC_ASSERT(static_cast<std::int64_t>(t.span.end) == hull.end);
  }
}
template <class Bounds>
void check_keys(const Bounds& t, const Rows& rows, std::int64_t b, std::int64_t q0, std::int64_t q1,
                std::int64_t k0, std::int64_t k1, std::set<std::string>& tags, bool sinks,
                bool all_rows = true) {
  using Index = decltype(t.span.begin);
  const Rows::Expected e = rows.expect(b, q0, q1, k0, k1);
  const mc::KeyRange hull = rows.hull(b, q0, q1);
  const auto i0 = static_cast<Index>(k0), i1 = static_cast<Index>(k1);
  const bool outside = hull.empty() || hull.end <= k0 || k1 <= hull.begin;
  if (outside) RC_ASSERT(t.skips(i0, i1));
  if (t.skips(i0, i1)) RC_ASSERT(!e.any);
  if (!sinks) RC_ASSERT(t.skips(i0, i1) == outside);
  if (t.skips(i0, i1) && !outside) tags.insert("key tile in the gap between sinks and window");
  if (e.any) tags.insert(t.unmasked(i0, i1) ? "unmasked key tile" : "boundary key tile");
  if (t.unmasked(i0, i1)) RC_ASSERT(e.unmasked);
  if (!sinks) RC_ASSERT(t.unmasked(i0, i1) == e.unmasked);
  if (all_rows && t.fully_visible(i0, i1)) RC_ASSERT(e.fully);
  if (all_rows && !sinks) RC_ASSERT(t.fully_visible(i0, i1) == e.fully);
}

rc::Gen<mc::MaskSpec> gen_tiled_mask() {
  return rc::gen::exec([] {
    const std::int64_t Lk = *mc::gen_length(300);
    const std::int64_t Lq = *rc::gen::inRange(0, 3) == 0 ? *mc::gen_length(300) : Lk;
    return *mc::gen_mask_spec(*rc::gen::inRange<std::int64_t>(1, 4), Lq, Lk);
  });
}

// The case's tags, starting with the mask's coverage.
std::set<std::string> start(const mc::MaskSpec& m) {
  const auto tags = mc::coverage_tags(m);
  return std::set<std::string>(tags.begin(), tags.end());
}
void tag(const std::set<std::string>& tags) {
  for (const auto& t : tags) RC_TAG(t);
}

}  // namespace

// RunTile's step 1 and 3: per query tile, each register block's bounds folded row by row
// (row_tile_bounds, combine), the tile's over the blocks; every key tile outside the tile's span
// holds no visible key, and each block's skips / unmasked answers match its rows.
RC_GTEST_PROP(TileBounds, cpuAttentionTilesAgreeWithRows, ()) {
  const mc::MaskSpec m = *gen_tiled_mask();
  std::set<std::string> tags = start(m);
  const Rows rows(m);
  const mc::MaskView v = rows.view();
  for (const std::int64_t kR : kCpuBlockRows)
    for (const std::int64_t kBk : kCpuKeyTiles)
      for (std::int64_t b = 0; b < m.B; ++b) {
        const mc::ValidRanges s = mc::valid_ranges(v, b);
        for (std::int64_t qa = s.q0; qa < s.q0 + s.q_len; qa += kCpuQueryTile) {
          const std::int64_t nr = std::min(kCpuQueryTile, s.q0 + s.q_len - qa);
          const std::int64_t blocks = (nr + kR - 1) / kR;
          std::vector<mc::TileBounds> blk(static_cast<std::size_t>(blocks));
          mc::TileBounds tile;
          for (std::int64_t i = 0; i < nr; ++i)
            blk[i / kR] = mc::combine(blk[i / kR], mc::row_tile_bounds(mc::row_keys(v, b, qa + i)));
          for (const auto& x : blk) tile = mc::combine(tile, x);
          RC_ASSERT(same(tile, mc::tile_bounds(v, b, qa, qa + nr)));
          check_span(tile, rows, b, qa, qa + nr);
          if (qa + nr == s.q0 + s.q_len && nr % kR != 0) tags.insert("cpu: partial register block");
          if (qa > s.q0) tags.insert("cpu: several query tiles");
          const std::int64_t kt0 = tile.span.empty() ? 0 : (tile.span.begin - s.k0) / kBk;
          const std::int64_t kt1 = tile.span.empty() ? 0 : (tile.span.end - s.k0 + kBk - 1) / kBk;
          for (std::int64_t kt = 0; kt * kBk < s.k_len; ++kt) {
            const std::int64_t k_begin = s.k0 + kt * kBk, k_end = k_begin + kBk;
            if (kt < kt0 || kt >= kt1) RC_ASSERT(!rows.expect(b, qa, qa + nr, k_begin, k_end).any);
            if (k_end > s.k0 + s.k_len) tags.insert("cpu: key tile past the sequence's end");
            for (std::int64_t bl = 0; bl < blocks; ++bl)
              check_keys(blk[bl], rows, b, qa + bl * kR, qa + std::min(nr, (bl + 1) * kR), k_begin,
                         k_end, tags, m.sink_tokens > 0);
          }
        }
      }
  tag(tags);
}

// flash_kernel's step 1 on the host: thread t folds rows t, t + threads, ... of the block (rows
// past the layout's extent as rows without keys), each warp folds its 32 lanes by the xor
// butterfly of __shfl_xor_sync (lane l combines with lane l ^ o, o = 16 .. 1, all lanes at once),
// the block folds lane 0 of each warp; then the key tiles it walks from the span's first key.
RC_GTEST_PROP(TileBounds, cudaFlashBlocksAgreeWithRows, ()) {
  mc::MaskSpec m = *gen_tiled_mask();
  m.sink_tokens = 0;  // the CUDA kernels decline attention sinks (one interval per row, no gap)
  std::set<std::string> tags = start(m);
  const Rows rows(m);
  const mc::MaskView v = rows.view();
  using Bounds = mc::BasicTileBounds<int, false>;
  for (const CudaConfig& cfg : kCudaConfigs)
    for (std::int64_t b = 0; b < m.B; ++b)
      for (const bool packed : {false, true}) {
        // Padded layout: the block's rows stop at Lq. Packed: at the sequence's length, and the
        // kernel's mask is the right-padded equivalent (so only right-padded masks here).
        if (packed && (m.padding != mc::PaddingSide::right || m.q_len(b) == m.Lq)) continue;
        const std::int64_t extent = packed ? m.q_len(b) : m.Lq;
        if (packed) tags.insert("cuda: packed layout");
        for (std::int64_t m0 = 0; m0 < extent; m0 += kCudaBlockRows) {
          std::vector<Bounds> lane(static_cast<std::size_t>(cfg.threads));
          for (int t = 0; t < cfg.threads; ++t)
            for (int r = t; r < kCudaBlockRows; r += cfg.threads) {
              const std::int64_t i = m0 + r;
              mc::KeyRange kr{0, 0};
              if (i < extent) kr = mc::visible_keys(v, b, i);
              lane[t] = mc::combine(lane[t], mc::row_tile_bounds<int, false>(kr));
            }
          for (int o = 16; o > 0; o >>= 1) {
            std::vector<Bounds> next(lane.size());
            for (std::size_t l = 0; l < lane.size(); ++l)
              next[l] = mc::combine(lane[l], lane[l ^ static_cast<std::size_t>(o)]);
            lane = next;
          }
          Bounds block;
          for (int w = 0; w < cfg.threads / 32; ++w) {
            // After the butterfly every lane holds the bounds of its warp's rows (none for the
            // warps past the block's rows when there are more threads than rows).
            const std::int64_t r0 = std::min(32 * w, kCudaBlockRows);
            const std::int64_t r1 = std::min(32 * w + 32, kCudaBlockRows);
            for (int l = 0; l < 32; ++l)
              RC_ASSERT(same(lane[w * 32 + l], mc::tile_bounds(v, b, m0 + r0, m0 + r1)));
            block = mc::combine(block, lane[w * 32]);
          }
          const std::int64_t rows_end = std::min<std::int64_t>(m0 + kCudaBlockRows, extent);
          RC_ASSERT(same(block, mc::tile_bounds(v, b, m0, m0 + kCudaBlockRows)));
          check_span(block, rows, b, m0, rows_end);
          if (rows_end < m0 + kCudaBlockRows) tags.insert("cuda: block past the rows' end");
          if (m0 > 0) tags.insert("cuda: several blocks");
          const int tiles =
              block.span.empty()
                  ? 0
                  : (block.span.end - block.span.begin + cfg.key_tile - 1) / cfg.key_tile;
          for (int j = 0; j < tiles; ++j) {
            const int n0 = block.span.begin + j * cfg.key_tile;
            // The block's rows past the extent (rows without keys to the fold) are not rows.
            check_keys(block, rows, b, m0, rows_end, n0, n0 + cfg.key_tile, tags, false,
                       rows_end == m0 + kCudaBlockRows);
            if (n0 + cfg.key_tile > m.Lk) tags.insert("cuda: key tile past Lk");
          }
          // The same questions for key tiles at every offset around the span: the tiles above
          // start where the span does, which makes an off-by-one at common's ends rare.
          if (!block.span.empty())
            for (int n0 = block.span.begin - cfg.key_tile; n0 <= block.span.end; ++n0)
              check_keys(block, rows, b, m0, rows_end, n0, n0 + cfg.key_tile, tags, false,
                         rows_end == m0 + kCudaBlockRows);
        }
      }
  tag(tags);
}
