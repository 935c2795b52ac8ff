// BERT-style MLM masking on the CPU, bit-identical to ref::mlm_mask (reference/src/mlm.cpp).
//   ids, keep, special, continuation (whole_word only): [B, L] -> ids_out, labels: [B, L]
// Token t of sequence b, first = its first keep position, i = t - first:
//   start(t)  = t, or with whole_word max(first, last position <= t that is not a continuation)
//   selected  = keep && !special && Philox(start(t) - first, b).x < select
//   selected: labels = ids, ids_out = mask_id / uniform token / ids by Philox(i, b).y, .z
//   else:     labels = ignore_index, ids_out = ids
// max_predictions > 0 then keeps, per sequence over the cap, the words of smallest
// (Philox(start).x, start) that still fit, greedily, as the reference does.
// Complexity: O(B L) work; without the cap one read of ids, keep, special (and continuation)
// and one write of ids_out and labels per token (26 bytes a token) and one Philox draw per
// eligible token (a group with no eligible token draws nothing). With the cap a sequence over it
// costs O(W) more for W selected words (O(W log W) with whole words of several tokens).
//
// Versions, naive to fast (ns a token on one core of a Xeon (Emerald Rapids) VM, 1M tokens, 25 %
// padding, no whole words, no cap):
//   v1 the reference's loops: per-sequence vectors, a scalar Philox per eligible token and again
//      per selected token                                                           (24 ns)
//   v2 the same draws in one pass without allocation (the HWY_SCALAR path below)    (11 ns)
//   v3 (this) a group of N tokens at a time (one vector of 64-bit lanes: 8 with AVX-512): the
//      group's flags become bit masks (SWAR on 8 bytes); a group without an eligible token is
//      copied through without a draw; otherwise one vector Philox gives x, y, z of every lane
//      (32-bit counters in 64-bit lanes: a product is one MulEven, its high half one shuffle;
//      rounds 0 and 1 are cheaper because the counter's y, z, w start uniform; round keys are
//      64-bit so they broadcast from memory) and the decisions are blends of ids, [MASK] and
//      the random token. Whole-word masking finds each lane's word start with a 256-entry lane
//      table and a TableLookupLanes of the group's x, carrying the last word into the next
//      group. Threads take equal token ranges (each finds its first sequence's first keep and
//      current word by a bounded search) or, with the cap, whole sequences: a sequence over the
//      cap is fixed up from the selected tokens' bit set and word keys x << 32 | start
//      (per-thread buffers), nth_element when every word is one token, else a sort and the
//      greedy rule.                                            (2.0 ns AVX-512, 4.1 ns AVX2)
#include <omp.h>

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>
#include <vector>

#include "maskcheck/kernels/cpu.hpp"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "mlm.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#ifndef MASKCHECK_CPU_MLM_SHARED
#define MASKCHECK_CPU_MLM_SHARED
namespace maskcheck::cpu::mlm_detail {

// Problems moving fewer bytes than this run on one thread.
constexpr std::int64_t kParallelBytes = std::int64_t{256} << 10;
constexpr std::uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;  // Philox4x32 multipliers
constexpr std::uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;  // Weyl key increments

// Everything a worker needs, computed once per call.
struct Ctx {
  const std::int64_t* ids;
  const std::uint8_t* keep;
  const std::uint8_t* special;
  const std::uint8_t* continuation;  // nullptr unless whole_word
  std::int64_t* ids_out;
  std::int64_t* labels;
  std::int64_t B, L, V, mask_id, ignore_index;
  std::uint64_t seed;
  std::int64_t max_predictions;
  MlmThresholds th;
  // Round keys, zero-extended: 64-bit values broadcast straight from memory into vector lanes.
  std::uint64_t k0[10], k1[10];
};

// Per-thread buffers of the cap, [L] each (selected: [L / 64 + 2] words), allocated once per
// call: each selected token's word key x << 32 | start (distinct per word and ordered as the
// reference's (x, start)), the selected tokens as a bit set, and per word (by start) its selected
// tokens and whether it is kept.
struct CapBuffers {
  std::vector<std::uint64_t> keys, selected, sorted;
  std::vector<std::int32_t> size;
  std::vector<std::uint8_t> kept;
  explicit CapBuffers(std::int64_t L)
      : keys(static_cast<std::size_t>(L)),
        selected(static_cast<std::size_t>(L / 64 + 2)),
        sorted(static_cast<std::size_t>(L)),
        size(static_cast<std::size_t>(L)),
        kept(static_cast<std::size_t>(L)) {}
};

// Sets bits t .. t + n - 1 of the bit set `words` from the low n <= 8 bits of `bits`.
inline void set_bits(std::uint64_t* words, std::int64_t t, std::uint64_t bits, int n) {
  const int o = static_cast<int>(t & 63);
  words[t >> 6] |= bits << o;
  if (o + n > 64) words[(t >> 6) + 1] |= bits >> (64 - o);
}

// Bit i set iff byte i of v is nonzero.
inline std::uint64_t nonzero_bits(std::uint64_t v) {
  constexpr std::uint64_t k7f = 0x7f7f7f7f7f7f7f7full, k80 = 0x8080808080808080ull;
  const std::uint64_t high = (((v & k7f) + k7f) | v) & k80;  // byte's top bit: nonzero
  return (high >> 7) * 0x0102040810204080ull >> 56;          // gather the 8 top bits
}

// Bits of the first n <= 8 bytes at p (nonzero bytes).
inline std::uint64_t load_bits(const std::uint8_t* p, int n) {
  std::uint64_t v = 0;
  std::memcpy(&v, p, static_cast<std::size_t>(n));
  return nonzero_bits(v);
}

// First nonzero byte of p[0, n), or n.
inline std::int64_t find_nonzero(const std::uint8_t* p, std::int64_t n) {
  std::int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    std::uint64_t v;
    std::memcpy(&v, p + i, 8);
    if (v != 0) return i + std::countr_zero(v) / 8;
  }
  for (; i < n; ++i)
    if (p[i] != 0) return i;
  return n;
}

// Per-sequence state of a worker.
struct Seq {
  std::int64_t b = 0;  // sequence (its low 32 bits are the Philox counter's second word)
  std::int64_t first;  // first keep position (L if none)
  std::int64_t count;  // selected tokens so far (cap only)
  // Philox rounds 1 and 2 of this sequence's counters XOR uniform words into z (see
  // PhiloxLanes): hi(M0 x1) ^ k1[1] and lo(M0 x1) ^ k1[2] with x1 = b ^ k0[0].
  std::uint64_t z_key1, z_key2;
  // whole_word: the current word's start and, when known, its draw's x.
  std::int64_t word = 0;
  std::uint32_t word_x = 0;
  bool word_x_known = false;
};

// kStartLanes.v[m][j]: the highest set bit of m at or below bit j (0 if none), i.e. for a group
// whose word starts are the bits of m, the lane whose draw lane j's word uses.
struct StartLanes {
  alignas(32) std::int32_t v[256][8];
};
constexpr StartLanes make_start_lanes() {
  StartLanes t{};
  for (int m = 0; m < 256; ++m) {
    int last = 0;
    for (int j = 0; j < 8; ++j) {
      if (m >> j & 1) last = j;
      t.v[m][j] = last;
    }
  }
  return t;
}
inline constexpr StartLanes kStartLanes = make_start_lanes();

}  // namespace maskcheck::cpu::mlm_detail
#endif  // MASKCHECK_CPU_MLM_SHARED

HWY_BEFORE_NAMESPACE();
namespace maskcheck::cpu::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
using namespace mlm_detail;

using D64 = hn::ScalableTag<std::uint64_t>;
using DI64 = hn::ScalableTag<std::int64_t>;
constexpr int kLanes = static_cast<int>(hn::MaxLanes(D64()));  // tokens per group

inline std::uint32_t draw_x(const Ctx& c, const Seq& s, std::int64_t t) {
  return mlm_draw(c.seed, static_cast<std::uint32_t>(s.b), static_cast<std::uint32_t>(t - s.first))
      .x;
}

#if HWY_TARGET != HWY_SCALAR
// Philox4x32-10 of the counters (pos[lane], (uint32) s.b, 0, 0), key (k0, k1) (as philox4x32_10):
// x, y, z of each lane in the low 32 bits of its 64-bit lane (the high halves hold garbage, which
// MulEven never reads).
HWY_INLINE void PhiloxLanes(D64 d, hn::Vec<D64> pos, const Seq& s, const Ctx& c, hn::Vec<D64>& x,
                            hn::Vec<D64>& y, hn::Vec<D64>& z) {
  using V = hn::Vec<D64>;
  const hn::Repartition<std::uint32_t, D64> d32;
  const auto m0 = hn::Set(d32, kM0), m1 = hn::Set(d32, kM1);
  auto mul = [&](V a, decltype(m0) m) { return hn::MulEven(hn::BitCast(d32, a), m); };
  auto hi = [&](V p) { return hn::BitCast(d, hn::Shuffle2301(hn::BitCast(d32, p))); };
  auto key = [&](const std::uint64_t& k) { return hn::Set(d, k); };
  // Round 0 on (pos, b, 0, 0): z = 0, so the second product is 0 and x becomes b ^ k0 (uniform).
  V p0 = mul(pos, m0);
  const V z1 = hn::Xor(hi(p0), key(c.k1[0]));  // hi0 ^ w ^ k1; y1 = lo1 = 0, w1 = lo0 = p0
  // Round 1: x is uniform, its product folded into s.z_key1 and s.z_key2; w becomes uniform.
  V p1 = mul(z1, m1);
  V xx = hn::Xor(hi(p1), key(c.k0[1]));  // hi1 ^ y ^ k0 with y = 0
  V yy = p1;                             // lo1
  V zz = hn::Xor(p0, key(s.z_key1));     // hi0 ^ w ^ k1
  // Round 2: w is uniform.
  p0 = mul(xx, m0);
  p1 = mul(zz, m1);
  xx = hn::Xor3(hi(p1), yy, key(c.k0[2]));
  yy = p1;
  zz = hn::Xor(hi(p0), key(s.z_key2));
  V ww = p0;
  for (int r = 3; r < 10; ++r) {
    p0 = mul(xx, m0);
    p1 = mul(zz, m1);
    xx = hn::Xor3(hi(p1), yy, key(c.k0[r]));
    yy = p1;
    zz = hn::Xor3(hi(p0), ww, key(c.k1[r]));
    ww = p0;
  }
  x = xx;
  y = yy;
  z = zz;
}
#endif

// One group of kLanes tokens t .. t + kLanes - 1 (t >= first) of sequence s. elig: bit per
// lane, eligible (keep && !special); starts (whole_word): bit per lane, a word starts there.
// ids, out, lab, keys point at token t (in the arrays, or in a staging copy for a row's tail);
// with the cap, the selected lanes are also counted and set in the row's bit set `selected`.
template <bool kWholeWord, bool kCap>
HWY_INLINE void Group(const Ctx& c, Seq& s, std::int64_t t, std::uint64_t elig,
                      std::uint64_t starts, const std::int64_t* HWY_RESTRICT ids,
                      std::int64_t* HWY_RESTRICT out, std::int64_t* HWY_RESTRICT lab,
                      std::uint64_t* HWY_RESTRICT keys, std::uint64_t* HWY_RESTRICT selected) {
#if HWY_TARGET == HWY_SCALAR
  std::uint64_t sel_bits = 0;
  for (int j = 0; j < kLanes; ++j) {
    const std::int64_t tj = t + j;
    if constexpr (kWholeWord) {
      if (starts >> j & 1) {
        s.word = tj;
        s.word_x_known = false;
      }
    }
    bool sel = false;
    if (elig >> j & 1) {
      std::uint32_t x;
      if constexpr (kWholeWord) {
        if (!s.word_x_known) {
          s.word_x = draw_x(c, s, s.word);
          s.word_x_known = true;
        }
        x = s.word_x;
      } else {
        x = draw_x(c, s, tj);
      }
      sel = x < c.th.select;
      if constexpr (kCap) {
        keys[j] = std::uint64_t{x} << 32 | static_cast<std::uint64_t>(kWholeWord ? s.word : tj);
        sel_bits |= std::uint64_t{sel} << j;
      }
    }
    if (sel) {
      const U32x4 d = mlm_draw(c.seed, static_cast<std::uint32_t>(s.b),
                               static_cast<std::uint32_t>(tj - s.first));
      lab[j] = ids[j];
      out[j] = d.y < c.th.mask             ? c.mask_id
               : d.y < c.th.mask_or_random ? uniform_token(d.z, c.V)
                                           : ids[j];
    } else {
      lab[j] = c.ignore_index;
      out[j] = ids[j];
    }
  }
  if constexpr (kCap) {
    set_bits(selected, t, sel_bits, kLanes);
    s.count += std::popcount(sel_bits);
  }
#else
  const D64 d;
  const DI64 di;
  const hn::Repartition<std::uint32_t, D64> d32;
  const auto vids = hn::LoadU(di, ids);
  const auto ignore = hn::Set(di, c.ignore_index);
  if (elig == 0) {  // nothing to draw: copy through
    hn::StoreU(vids, di, out);
    hn::StoreU(ignore, di, lab);
    if constexpr (kWholeWord) {
      if (starts != 0) {
        s.word = t + 63 - std::countl_zero(starts);
        s.word_x_known = false;
      }
    }
    return;
  }
  hn::Vec<D64> x, y, z;
  PhiloxLanes(d, hn::Add(hn::Iota(d, 0), hn::Set(d, static_cast<std::uint64_t>(t - s.first))), s, c,
              x, y, z);
  const auto low = hn::Set(d, std::uint64_t{0xffffffffu});
  auto below = [&](hn::Vec<D64> v, std::uint64_t threshold) {  // v's low half < threshold
    return hn::Lt(hn::BitCast(di, hn::And(v, low)),
                  hn::Set(di, static_cast<std::int64_t>(threshold)));
  };
  hn::Mask<DI64> sel;
  std::uint8_t elig_bits[8];
  std::memcpy(elig_bits, &elig, sizeof elig_bits);  // little-endian: lane j is bit j
  const auto eligible = hn::LoadMaskBits(di, elig_bits);
  if constexpr (kWholeWord) {
    // Lane j's selection draw is the x of its word's start: lane kStartLanes[starts][j] of this
    // group, or, for the lanes before the group's first start, the carried word's x (drawn
    // here if its group had no draw).
    const int c0 = starts != 0 ? std::countr_zero(starts) : kLanes;
    if (!s.word_x_known && (elig & ((std::uint64_t{1} << c0) - 1)) != 0) {
      s.word_x = draw_x(c, s, s.word);
      s.word_x_known = true;
    }
    const hn::Rebind<std::int32_t, DI64> d32i;
    const auto lane = hn::PromoteTo(di, hn::LoadU(d32i, kStartLanes.v[starts]));
    const auto carried = hn::FirstN(di, static_cast<std::size_t>(c0));
    const auto xs =
        hn::IfThenElse(carried, hn::Set(di, static_cast<std::int64_t>(s.word_x)),
                       hn::TableLookupLanes(hn::BitCast(di, x), hn::IndicesFromVec(di, lane)));
    sel = hn::And(eligible, below(hn::BitCast(d, xs), c.th.select));
    if constexpr (kCap) {
      const auto start =
          hn::IfThenElse(carried, hn::Set(di, s.word), hn::Add(hn::Set(di, t), lane));
      hn::StoreU(hn::BitCast(d, hn::Or(hn::ShiftLeft<32>(xs), start)), d, keys);
    }
    if (starts != 0) {  // the group's last word carries on
      const int last = 63 - std::countl_zero(starts);
      s.word = t + last;
      s.word_x = static_cast<std::uint32_t>(hn::ExtractLane(x, static_cast<std::size_t>(last)));
      s.word_x_known = true;
    }
  } else {
    sel = hn::And(eligible, below(x, c.th.select));
    if constexpr (kCap) {
      const auto start = hn::Add(hn::Iota(d, 0), hn::Set(d, static_cast<std::uint64_t>(t)));
      hn::StoreU(hn::Or(hn::ShiftLeft<32>(x), start), d, keys);
    }
  }
  if constexpr (kCap) {
    std::uint8_t sel_bits[8] = {0};
    hn::StoreMaskBits(di, sel, sel_bits);
    set_bits(selected, t, sel_bits[0], kLanes);
    s.count += std::popcount(sel_bits[0]);
  }
  const auto random =
      hn::BitCast(di, hn::ShiftRight<32>(hn::MulEven(
                          hn::BitCast(d32, z), hn::Set(d32, static_cast<std::uint32_t>(c.V)))));
  const auto replaced = hn::IfThenElse(below(y, c.th.mask), hn::Set(di, c.mask_id),
                                       hn::IfThenElse(below(y, c.th.mask_or_random), random, vids));
  hn::StoreU(hn::IfThenElse(sel, replaced, vids), di, out);
  hn::StoreU(hn::IfThenElse(sel, vids, ignore), di, lab);
#endif
}

// Copies tokens [t0, t1) of a row through (never selected).
inline void CopyThrough(const Ctx& c, std::int64_t row, std::int64_t t0, std::int64_t t1) {
  if (t1 <= t0) return;
  std::memcpy(c.ids_out + row + t0, c.ids + row + t0,
              static_cast<std::size_t>(t1 - t0) * sizeof(std::int64_t));
  std::fill(c.labels + row + t0, c.labels + row + t1, c.ignore_index);
}

// Tokens [s0, s1) of sequence s (row offset row = b * L). The state of s covers the tokens
// before s0 (first, and with whole_word the current word).
template <bool kWholeWord, bool kCap>
void Segment(const Ctx& c, Seq& state, std::int64_t s0, std::int64_t s1, CapBuffers* cap) {
  Seq s = state;  // a local copy stays in registers (stores to int64 arrays could alias it)
  const std::int64_t row = s.b * c.L;
  CopyThrough(c, row, s0, std::min(s1, s.first));
  std::int64_t t = std::max(s0, s.first);
  const std::uint8_t* keep = c.keep + row;
  const std::uint8_t* special = c.special + row;
  const std::uint8_t* cont = kWholeWord ? c.continuation + row : nullptr;
  std::uint64_t* keys = kCap ? cap->keys.data() : nullptr;
  std::uint64_t* selected = kCap ? cap->selected.data() : nullptr;
  if constexpr (kCap) std::fill(cap->selected.begin(), cap->selected.end(), 0);
  auto flags = [&](std::int64_t at, int n, std::uint64_t& elig, std::uint64_t& starts) {
    elig = load_bits(keep + at, n) & ~load_bits(special + at, n);
    if constexpr (kWholeWord) {
      starts = ~load_bits(cont + at, n) & ((std::uint64_t{1} << n) - 1);
      if (at == s.first) starts |= 1;  // the first keep position always starts a word
    } else {
      starts = 0;
    }
  };
  for (; t + kLanes <= s1; t += kLanes) {
    std::uint64_t elig, starts;
    flags(t, kLanes, elig, starts);
    Group<kWholeWord, kCap>(c, s, t, elig, starts, c.ids + row + t, c.ids_out + row + t,
                            c.labels + row + t, kCap ? keys + t : nullptr, selected);
  }
  if (t < s1) {  // the row's tail: a group on staging copies
    const int n = static_cast<int>(s1 - t);
    alignas(64) std::int64_t ids[kLanes] = {}, out[kLanes], lab[kLanes];
    alignas(64) std::uint64_t k[kLanes];
    std::memcpy(ids, c.ids + row + t, static_cast<std::size_t>(n) * sizeof(std::int64_t));
    std::uint64_t elig, starts;
    flags(t, n, elig, starts);
    Group<kWholeWord, kCap>(c, s, t, elig, starts, ids, out, lab, k, selected);
    std::memcpy(c.ids_out + row + t, out, static_cast<std::size_t>(n) * sizeof(std::int64_t));
    std::memcpy(c.labels + row + t, lab, static_cast<std::size_t>(n) * sizeof(std::int64_t));
    if constexpr (kCap) std::memcpy(keys + t, k, static_cast<std::size_t>(n) * sizeof(k[0]));
  }
  state = s;
}

// The state of sequence b before token s0: its first keep position and, with whole_word, the
// word that token s0 - 1 belongs to (bounded backward search; its x is drawn when needed).
template <bool kWholeWord>
Seq StartSequence(const Ctx& c, std::int64_t b, std::int64_t s0) {
  Seq s;
  s.b = b;
  s.first = find_nonzero(c.keep + b * c.L, c.L);
  s.count = 0;
  const std::uint64_t x1 = static_cast<std::uint32_t>(b) ^ c.k0[0];
  const std::uint64_t m = kM0 * x1;
  s.z_key1 = (m >> 32) ^ c.k1[1];
  s.z_key2 = (m & 0xffffffffu) ^ c.k1[2];
  if constexpr (kWholeWord) {
    if (s0 > s.first) {
      const std::uint8_t* cont = c.continuation + b * c.L;
      std::int64_t w = s0 - 1;
      while (w > s.first && cont[w] != 0) --w;
      s.word = w;
    }
  }
  return s;
}

// Drops the words of a capped sequence that the greedy rule drops (their tokens get their id
// back and ignore_index), from the keys and the bit set of its selected tokens.
void CapSequence(const Ctx& c, const Seq& s, CapBuffers& cap) {
  const std::int64_t row = s.b * c.L;
  const std::uint64_t* keys = cap.keys.data();
  const std::uint64_t* selected = cap.selected.data();
  std::uint64_t* sorted = cap.sorted.data();
  std::int32_t* size = cap.size.data();
  std::uint8_t* kept = cap.kept.data();
  auto for_each_selected = [&](auto&& f) {
    for (std::int64_t w = 0; w <= (c.L - 1) / 64; ++w)
      for (std::uint64_t bits = selected[w]; bits != 0; bits &= bits - 1)
        f(w * 64 + std::countr_zero(bits));
  };
  auto start_of = [](std::uint64_t key) { return static_cast<std::uint32_t>(key); };
  // The words, each once: a word's selected tokens share a key, and words never interleave
  // because word starts only grow along the sequence.
  std::int64_t W = 0;
  bool all_single = true;
  std::uint64_t last = ~std::uint64_t{0};  // never a key: starts are < 2^31
  for_each_selected([&](std::int64_t t) {
    const std::uint64_t k = keys[t];
    if (k != last) {
      last = k;
      sorted[W++] = k;
      size[start_of(k)] = 1;
    } else {
      ++size[start_of(k)];
      all_single = false;
    }
  });
  const std::int64_t cap_n = c.max_predictions;
  if (all_single) {
    // Every word is one token: the greedy rule keeps the cap_n smallest keys.
    std::nth_element(sorted, sorted + cap_n, sorted + W);
    for (std::int64_t i = 0; i < W; ++i) kept[start_of(sorted[i])] = i < cap_n;
  } else {
    std::sort(sorted, sorted + W);
    std::int64_t total = 0;
    for (std::int64_t i = 0; i < W; ++i) {
      const std::int32_t n = size[start_of(sorted[i])];
      const bool fits = total + n <= cap_n;
      if (fits) total += n;
      kept[start_of(sorted[i])] = fits;
    }
  }
  for_each_selected([&](std::int64_t t) {
    if (!kept[start_of(keys[t])]) {
      c.ids_out[row + t] = c.ids[row + t];
      c.labels[row + t] = c.ignore_index;
    }
  });
}

template <bool kWholeWord, bool kCap>
void Part(const Ctx& c, int id, int threads) {
  const std::int64_t n = c.B * c.L;
  if constexpr (kCap) {
    // Whole sequences, with per-thread buffers allocated once.
    const std::int64_t b0 = c.B * id / threads, b1 = c.B * (id + 1) / threads;
    if (b1 <= b0) return;
    CapBuffers cap(c.L);
    for (std::int64_t b = b0; b < b1; ++b) {
      Seq s = StartSequence<kWholeWord>(c, b, 0);
      Segment<kWholeWord, kCap>(c, s, 0, c.L, &cap);
      if (s.count > c.max_predictions) CapSequence(c, s, cap);
    }
  } else {
    // Equal token ranges; a range may start and end inside a sequence.
    const std::int64_t g0 = n * id / threads, g1 = n * (id + 1) / threads;
    for (std::int64_t g = g0; g < g1;) {
      const std::int64_t b = g / c.L, s0 = g - b * c.L;
      const std::int64_t s1 = std::min(c.L, g1 - b * c.L);
      Seq s = StartSequence<kWholeWord>(c, b, s0);
      Segment<kWholeWord, kCap>(c, s, s0, s1, nullptr);
      g = b * c.L + s1;
    }
  }
}

void MlmPart(const Ctx& c, int id, int threads) {
  const bool cap = c.max_predictions > 0;
  if (c.continuation != nullptr) {
    if (cap) return Part<true, true>(c, id, threads);
    return Part<true, false>(c, id, threads);
  }
  if (cap) return Part<false, true>(c, id, threads);
  return Part<false, false>(c, id, threads);
}

}  // namespace maskcheck::cpu::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace maskcheck::cpu {

HWY_EXPORT(MlmPart);

using namespace mlm_detail;

// ids, keep, special, continuation (whole_word only): [B, L] -> ids_out, labels: [B, L]
void mlm_mask(const MlmProblem& p, const std::int64_t* ids, const std::uint8_t* keep,
              const std::uint8_t* special, const std::uint8_t* continuation, std::int64_t* ids_out,
              std::int64_t* labels) {
  p.validate();
  const std::int64_t n = checked_numel("ids", {p.B, p.L});
  if (n == 0) return;
  auto need = [](const void* ptr, const char* field) {
    if (ptr == nullptr) throw_invalid(field, "nullptr", "must point to [B, L] elements");
  };
  need(ids, "ids");
  need(keep, "keep");
  need(special, "special");
  if (p.whole_word) need(continuation, "continuation");
  need(ids_out, "ids_out");
  need(labels, "labels");

  Ctx c{};
  c.ids = ids;
  c.keep = keep;
  c.special = special;
  c.continuation = p.whole_word ? continuation : nullptr;
  c.ids_out = ids_out;
  c.labels = labels;
  c.B = p.B;
  c.L = p.L;
  c.V = p.V;
  c.mask_id = p.mask_id;
  c.ignore_index = p.ignore_index;
  c.seed = p.seed;
  c.max_predictions = p.max_predictions;
  c.th = mlm_thresholds(p);
  std::uint32_t k0 = static_cast<std::uint32_t>(p.seed),
                k1 = static_cast<std::uint32_t>(p.seed >> 32);
  for (int r = 0; r < 10; ++r) {
    if (r > 0) {
      k0 += kW0;
      k1 += kW1;
    }
    c.k0[r] = k0;
    c.k1[r] = k1;
  }

  if (c.th.select == 0) {  // p = 0: nothing is ever selected
#pragma omp parallel for schedule(static) if (n * 26 >= kParallelBytes)
    for (std::int64_t b = 0; b < p.B; ++b) {
      std::memcpy(ids_out + b * p.L, ids + b * p.L, static_cast<std::size_t>(p.L) * sizeof(*ids));
      std::fill(labels + b * p.L, labels + (b + 1) * p.L, p.ignore_index);
    }
    return;
  }
  const int threads = n * 26 >= kParallelBytes ? std::max(1, omp_get_max_threads()) : 1;
  if (threads == 1) return HWY_DYNAMIC_DISPATCH(MlmPart)(c, 0, 1);
#pragma omp parallel num_threads(threads)
  HWY_DYNAMIC_DISPATCH(MlmPart)(c, omp_get_thread_num(), omp_get_num_threads());
}

}  // namespace maskcheck::cpu
#endif  // HWY_ONCE
