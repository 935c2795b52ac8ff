// The CUDA kernels' exponent arithmetic (kernels/cuda/include/maskcheck/kernels/exp2_scale.hpp) on
// the host, in every build (no GPU, no CUDA needed): rows of huge scores go through the arithmetic
// of the flash and rows attention kernels (tile by tile), the masked softmax (thread by thread,
// then the group) and the cross-entropy rows, spelled here around the header's functions in the
// kernels' order, and must give softmax in double. The exponential is the host's exp2f; the
// device's exp2f and ex2.approx differ from it by a few ulps, not in kind.
//
// The same emulations with the arithmetic the kernels had before (Arith::fused: the exponent
// fmaf(x, c, -fl(max * c)), the flash kernel's boundary tiles and the rows kernel scaling first,
// the smoothing's plain sum of the logits) must fail these rows: near |max * c| = 2^19 through
// weights that depend on the kind of tile, from 2^31 on through the top's weight 2^(+-64) in full
// tiles against 1 in boundary tiles, from 2^33 through inf in fp32 (NaN rows), and the smoothing
// term through the sum at any magnitude.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "maskcheck/kernels/exp2_scale.hpp"
#include "maskcheck/reference/dtype.hpp"

namespace mc = maskcheck;
using mc::cuda::Exp2Scale;
using mc::cuda::OnlineExp2;
using mc::cuda::OnlineLogits;

namespace {

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// One row: scores x (what q.k or the softmax input holds, fp32), the visible keys [lo, hi) and
// one column of V.
struct Row {
  std::vector<float> x;
  std::int64_t lo = 0, hi = 0;
  std::vector<float> v;
  double scale = 1;
  std::string what;
};

// softmax(x * scale) over [lo, hi) in double: weights, lse and the output column sum_k w_k v_k.
struct Want {
  std::vector<double> w;
  double lse = 0, out = 0;
  double top = 0, log_sum = 0;  // lse = top * scale + log_sum
};
Want softmax_in_double(const Row& r) {
  std::int64_t top = r.lo;
  for (std::int64_t k = r.lo; k < r.hi; ++k)
    if (double{r.x[k]} * r.scale > double{r.x[top]} * r.scale) top = k;
  Want want;
  want.w.assign(r.x.size(), 0.0);
  double sum = 0;
  for (std::int64_t k = r.lo; k < r.hi; ++k)
    sum += want.w[k] = std::exp((double{r.x[k]} - double{r.x[top]}) * r.scale);
  for (std::int64_t k = r.lo; k < r.hi; ++k) {
    want.w[k] /= sum;
    want.out += want.w[k] * r.v[k];
  }
  want.top = r.x[top];
  want.log_sum = std::log(sum);
  want.lse = want.top * r.scale + want.log_sum;
  return want;
}

// What an emulated kernel produced for a row.
struct Got {
  std::vector<double> w;    // the weights before any storage rounding
  double lse = 0;           // attention only
  double out = 0;           // sum_k round(P_k) v_k / l, P rounded to p_dtype (attention)
  std::vector<double> nll;  // cross-entropy: the loss with each visible key as the label
  double smooth = 0;        // cross-entropy: the smoothing term, lse - mean x
};

// Checks got against want; returns the failures (empty when it agrees). Weights and the fp32
// output within 2e-5 relative (plus 1e-7 absolute), lse within 1e-6 relative, an output through
// P in fp16 / bf16 within 2^-9 / 2^-6 (and finite).
std::string compare(const Got& got, const Want& want, mc::DType p_dtype, bool check_lse) {
  std::ostringstream f;
  int bad = 0;
  for (std::size_t k = 0; k < want.w.size() && bad < 3; ++k)
    if (!(std::abs(got.w[k] - want.w[k]) <= 2e-5 * want.w[k] + 1e-7)) {
      ++bad;
      f << "  w[" << k << "] got " << got.w[k] << " want " << want.w[k] << "\n";
    }
  if (check_lse && !(std::abs(got.lse - want.lse) <= 1e-6 * std::abs(want.lse) + 1e-6))
    f << "  lse got " << got.lse << " want " << want.lse << "\n";
  const double tol = p_dtype == mc::DType::f32 ? 2e-5 : p_dtype == mc::DType::f16 ? 0x1p-9 : 0x1p-6;
  if (!(std::abs(got.out - want.out) <= tol))
    f << "  out (P in " << mc::to_string(p_dtype) << ") got " << got.out << " want " << want.out
      << "\n";
  return f.str();
}

// ---- the kernels' arithmetic, now (the header) and before (FusedArith) -------------------------

enum class Arith { fixed, fused };

// flash_kernel (tile > 1) and rows_kernel (tile 1, visible keys only): tiles of `tile` keys from
// key 0; a tile inside [lo, hi) is full (no test), the others are boundary tiles. Per tile: the
// tile's max, the running max, alpha, P, l and O as the kernel updates them; P enters O rounded
// to p_dtype (the P V mma), l sums it unrounded.
Got flash_row(const Row& r, int tile, mc::DType p_dtype, Arith a) {
  const Exp2Scale sc = mc::cuda::exp2_scale(r.scale);
  const float c_old = static_cast<float>(r.scale) * kLog2e;  // the old kernels' scale_log2
  const auto n = static_cast<std::int64_t>(r.x.size());
  const std::int64_t first = tile == 1 ? r.lo : 0, last = tile == 1 ? r.hi : n;
  std::vector<double> p(r.x.size(), 0.0);  // P so far, rescaled like O
  float m = -INFINITY, l = 0;
  double o = 0;
  for (std::int64_t n0 = first; n0 < last; n0 += tile) {
    const std::int64_t n1 = std::min(n0 + tile, last);
    const bool full = n0 >= r.lo && n0 + tile <= r.hi;
    // Scores as the kernel holds them: keys (fixed); raw in full tiles and scaled in boundary
    // tiles (fused; the rows kernel scaled q, so its dots were scaled too).
    const bool scaled = a == Arith::fused && (!full || tile == 1);
    const float mul = a == Arith::fused && !scaled ? c_old : 1.0f;
    std::vector<float> s(n1 - n0);
    float mx = mul < 0 ? INFINITY : -INFINITY;  // fused full tiles: the min for a negative scale
    for (std::int64_t k = n0; k < n1; ++k) {
      float y = a == Arith::fixed ? sc.key(r.x[k]) : scaled ? r.x[k] * c_old : r.x[k];
      if (k < r.lo || k >= r.hi) y = -INFINITY;
      s[k - n0] = y;
      mx = mul < 0 ? std::fmin(mx, y) : std::fmax(mx, y);
    }
    const float m_new = std::fmax(m, a == Arith::fixed ? mx : mx * mul);
    const float m_use = Exp2Scale::origin(m_new);
    const float alpha = std::exp2(a == Arith::fixed ? sc.exponent(m, m_use) : m - m_use);
    float sum = 0, po = 0;
    for (std::int64_t k = n0; k < n1; ++k) {
      const float e =
          a == Arith::fixed ? sc.exponent(s[k - n0], m_use) : std::fma(s[k - n0], mul, -m_use);
      const float pk = std::exp2(e);
      sum += pk;
      p[k] = pk;
      po += static_cast<float>(mc::round_to(p_dtype, pk) * r.v[k]);
    }
    for (std::int64_t k = first; k < n0; ++k) p[k] *= alpha;
    l = l * alpha + sum;
    o = o * alpha + po;
    m = m_new;
  }
  Got g;
  g.w.assign(r.x.size(), 0.0);
  for (std::int64_t k = r.lo; k < r.hi; ++k) g.w[k] = static_cast<float>(p[k] / l);
  g.out = static_cast<float>(o / l);
  g.lse = a == Arith::fixed ? sc.lse(m, l) : (m + std::log2(l)) * kLn2;
  return g;
}

// The state of one thread before the fix: m = max x c, s = sum 2^fmaf(x, c, -m).
struct FusedOnline {
  float m = -INFINITY, s = 0;
  template <int N>
  void add(const float (&x)[N], float c) {
    float vm = -INFINITY;
    for (int k = 0; k < N; ++k) vm = std::fmax(vm, x[k] * c);
    if (vm > m) {
      s *= std::exp2(m - vm);
      m = vm;
    }
    const float shift = m == -INFINITY ? 0.0f : -m;
    for (int k = 0; k < N; ++k) s += std::exp2(std::fma(x[k], c, shift));
  }
};

// masked_softmax_kernel (c = scale log2 e): the visible keys in vectors of 4 (fp32's 16 bytes)
// dealt round-robin to `threads` threads, the last few as scalars; each thread's online state,
// the group's max, the sums rescaled to it, then y = 2^exponent / sum.
template <class State>
Got softmax_row(const Row& r, int threads) {
  const Exp2Scale sc = mc::cuda::exp2_scale(r.scale);
  const float c_old = static_cast<float>(r.scale * 1.4426950408889634);
  std::vector<State> st(threads);
  const std::int64_t n = r.hi - r.lo, vecs = n / 4;
  for (std::int64_t v = 0; v < vecs; ++v) {
    const float* xv = r.x.data() + r.lo + 4 * v;
    const float f[4] = {xv[0], xv[1], xv[2], xv[3]};
    if constexpr (std::is_same_v<State, OnlineExp2>) {
      st[v % threads].add(f, sc);
    } else {
      st[v % threads].add(f, c_old);
    }
  }
  for (std::int64_t i = 4 * vecs; i < n; ++i) {
    const float f[1] = {r.x[r.lo + i]};
    if constexpr (std::is_same_v<State, OnlineExp2>) {
      st[i - 4 * vecs].add(f, sc);
    } else {
      st[i - 4 * vecs].add(f, c_old);
    }
  }
  float m = -INFINITY, sum = 0;
  for (const auto& t : st) m = std::fmax(m, t.m);
  for (const auto& t : st) {
    if constexpr (std::is_same_v<State, OnlineExp2>) {
      sum += t.sum_at(m, sc);
    } else {
      sum += t.m == -INFINITY ? 0.0f : t.s * std::exp2(t.m - m);
    }
  }
  auto exponent = [&](float x) {
    if constexpr (std::is_same_v<State, OnlineExp2>) {
      return sc.score_exponent(x, m);
    } else {
      return std::fma(x, c_old, -m);
    }
  };
  Got g;
  g.w.assign(r.x.size(), 0.0);
  const float inv = 1.0f / sum;
  for (std::int64_t k = r.lo; k < r.hi; ++k) {
    g.w[k] = std::exp2(exponent(r.x[k])) * inv;
    g.out += g.w[k] * r.v[k];
  }
  g.out = static_cast<float>(g.out);
  return g;
}
Got softmax_row(const Row& r, int threads, Arith a) {
  return a == Arith::fixed ? softmax_row<OnlineExp2>(r, threads)
                           : softmax_row<FusedOnline>(r, threads);
}

// The cross-entropy row before the fix: m = max x log2 e, s = sum 2^fmaf(x, log2 e, -m), and the
// plain sum of the logits for the smoothing.
struct FusedLogits {
  FusedOnline e;
  float xs = 0;
  template <int N>
  void add(const float (&x)[N]) {
    for (int k = 0; k < N; ++k) xs += x[k];
    e.add(x, kLog2e);
  }
};

// cross_entropy_rows_kernel over the visible keys as logits (no scale): the states dealt as in
// softmax_row, the block's max, sum and (fixed) sum of distances to the max; the probabilities
// (the gradient is p - target), each visible key's loss as the label's,
// ln 2 (log2 sum - exponent(label)), and the smoothing term lse - mean x.
Got ce_row(const Row& r, int threads, Arith a) {
  std::vector<OnlineLogits> st(threads);
  std::vector<FusedLogits> old(threads);
  const std::int64_t n = r.hi - r.lo, vecs = n / 4;
  auto add = [&](std::int64_t t, const auto& f) {
    if (a == Arith::fixed) {
      st[t].add(f);
    } else {
      old[t].add(f);
    }
  };
  for (std::int64_t v = 0; v < vecs; ++v) {
    const float* xv = r.x.data() + r.lo + 4 * v;
    const float f[4] = {xv[0], xv[1], xv[2], xv[3]};
    add(v % threads, f);
  }
  for (std::int64_t i = 4 * vecs; i < n; ++i) {
    const float f[1] = {r.x[r.lo + i]};
    add(i - 4 * vecs, f);
  }
  const Exp2Scale sc{};
  float m = -INFINITY, sum = 0, dist = 0, xsum = 0;
  for (int t = 0; t < threads; ++t) m = std::fmax(m, a == Arith::fixed ? st[t].e.m : old[t].e.m);
  for (int t = 0; t < threads; ++t) {
    if (a == Arith::fixed) {
      sum += st[t].e.sum_at(m, sc);
      dist += st[t].distance_at(m);
    } else {
      sum += old[t].e.m == -INFINITY ? 0.0f : old[t].e.s * std::exp2(old[t].e.m - m);
      xsum += old[t].xs;
    }
  }
  auto exponent = [&](float x) {
    return a == Arith::fixed ? sc.score_exponent(x, m) : std::fma(x, kLog2e, -m);
  };
  Got g;
  g.w.assign(r.x.size(), 0.0);
  const float inv = 1.0f / sum, lg = std::log2(sum);
  for (std::int64_t k = r.lo; k < r.hi; ++k) {
    g.w[k] = std::exp2(exponent(r.x[k])) * inv;
    g.out += g.w[k] * r.v[k];
    g.nll.push_back(kLn2 * (lg - exponent(r.x[k])));
  }
  g.out = static_cast<float>(g.out);
  const auto V = static_cast<float>(n);
  g.smooth = a == Arith::fixed ? kLn2 * (lg - dist / V * sc.c) : kLn2 * (lg - exponent(xsum / V));
  return g;
}

// ---- the rows ---------------------------------------------------------------------------------

// Lk keys, [lo, hi) visible, scores whose top has |top * scale * log2 e| = target: the top (a few
// ties of it) and the rest at most `spread` below it in the log2 domain, each rounded to fp32
// (near 2^19 that keeps distinct values 2^-4 apart; from 2^31 on, a key is a tie of the top or
// has weight 0). A negative scale mirrors the scores, so the same keys win.
Row make_row(double scale, double target, std::int64_t Lk, std::int64_t lo, std::int64_t hi,
             std::uint32_t seed, double spread = 12) {
  Row r;
  r.scale = scale;
  r.lo = lo;
  r.hi = hi;
  std::mt19937 gen(seed);
  const double c = std::abs(scale) * 1.4426950408889634;
  const auto top = static_cast<float>(target / c);
  const double ulp = std::nextafter(top, INFINITY) - top;
  std::uniform_real_distribution<double> below(0, spread / c), unit(-1, 1);
  std::uniform_int_distribution<int> pick(0, 7), ulps(1, 3);
  for (std::int64_t k = 0; k < Lk; ++k) {
    // Distinct values (a few ulps apart) where the spread is below one ulp.
    const double x = pick(gen) == 0 ? top : top - below(gen) - ulps(gen) * ulp;
    r.x.push_back(static_cast<float>(scale < 0 ? -x : x));
    r.v.push_back(static_cast<float>(mc::round_to(mc::DType::bf16, unit(gen))));
  }
  std::ostringstream w;
  w << "scale " << scale << ", |top * scale * log2 e| " << target << ", Lk " << Lk << ", keys ["
    << lo << ", " << hi << ")";
  r.what = w.str();
  return r;
}

struct Target {
  double scaled;  // |top * scale * log2 e|
  const char* name;
};
// Near 2^19 and 2^31 in the scaled log2 domain, 2^40, and raw scores near 1e30 (per scale).
std::vector<Target> targets(double scale) {
  return {{0x1p19, "2^19"},
          {0x1p31, "2^31"},
          {0x1p40, "2^40"},
          {1e30 * std::abs(scale) * 1.4426950408889634, "1e30"}};
}

// Scales: 1/sqrt(D) for D = 64 and 128, and others of either sign.
const double kScales[] = {0.125, 0.08838834764831845, 1.0, 3.0, -0.5, -0.125};

// Layouts: the top in a later tile than the first key (the running max moves, alpha rescales),
// boundary tiles at both ends, and a fully masked first tile.
struct Layout {
  std::int64_t Lk, lo, hi;
};
const Layout kLayouts[] = {{300, 5, 250}, {300, 70, 300}, {200, 0, 200}, {97, 3, 90}};

// Every check of one row under arithmetic `a`: flash with fp16 and bf16 P at both tile sizes
// (64 keys for D <= 64, 32 beyond), the rows kernel (fp32), the masked softmax over a warp and
// over a block of 256 threads, and the cross-entropy rows (scale 1). Returns the failures.
std::string check_row(const Row& r, Arith a) {
  std::string fails;
  const Want want = softmax_in_double(r);
  auto add = [&](const std::string& what, const std::string& f) {
    if (!f.empty()) fails += what + " (" + r.what + "):\n" + f;
  };
  for (const int tile : {64, 32})
    for (const mc::DType t : {mc::DType::f16, mc::DType::bf16})
      add("flash, tiles of " + std::to_string(tile) + ", " + std::string(mc::to_string(t)) + " P",
          compare(flash_row(r, tile, t, a), want, t, true));
  add("rows kernel (f32)", compare(flash_row(r, 1, mc::DType::f32, a), want, mc::DType::f32, true));
  for (const int threads : {32, 256}) {
    const Got g = softmax_row(r, threads, a);
    add("masked softmax, " + std::to_string(threads) + " threads",
        compare(g, want, mc::DType::f32, false));
  }
  return fails;
}

// The cross-entropy rows over the same scores as logits (no scale): probabilities (the gradient
// is p - target), each visible key's loss as the label's against lse - x_label, and the smoothing
// term against lse - mean x, both in double from distances to the top (lse - x formed as
// (top + log_sum) - x loses log_sum in double once |top| passes ~2^50).
std::string check_cross_entropy(Row r, Arith a) {
  r.scale = 1;
  const Want want = softmax_in_double(r);
  const Got g = ce_row(r, 256, a);
  std::string fails = compare(g, want, mc::DType::f32, false);
  // Relative to the value itself: the loss is formed from distances to the max, so its error
  // does not scale with |lse|.
  auto close = [](double got, double w) { return std::abs(got - w) <= 2e-5 * std::abs(w) + 1e-6; };
  for (std::int64_t k = r.lo, bad = 0; k < r.hi && bad < 3; ++k) {
    const double nll = want.log_sum - (double{r.x[k]} - want.top);
    if (!close(g.nll[k - r.lo], nll)) {
      ++bad;
      fails += "  nll[" + std::to_string(k) + "] got " + std::to_string(g.nll[k - r.lo]) +
               " want " + std::to_string(nll) + "\n";
    }
  }
  double below = 0;  // mean x - top
  for (std::int64_t k = r.lo; k < r.hi; ++k) below += double{r.x[k]} - want.top;
  below /= static_cast<double>(r.hi - r.lo);
  if (!close(g.smooth, want.log_sum - below))
    fails += "  smoothing term got " + std::to_string(g.smooth) + " want " +
             std::to_string(want.log_sum - below) + "\n";
  return fails.empty() ? "" : "cross-entropy (" + r.what + "):\n" + fails;
}

TEST(Exp2Scale, hugeScoresKeepTheirSoftmaxInEveryKernel) {
  std::uint32_t seed = 1;
  for (const double scale : kScales)
    for (const Target& target : targets(scale))
      for (const Layout& lay : kLayouts) {
        const Row r = make_row(scale, target.scaled, lay.Lk, lay.lo, lay.hi, seed++);
        const std::string fails = check_row(r, Arith::fixed);
        EXPECT_TRUE(fails.empty()) << "near " << target.name << ":\n" << fails;
      }
}

TEST(Exp2Scale, hugeLogitsKeepTheirCrossEntropy) {
  std::uint32_t seed = 100;
  for (const Target& target : targets(1.0))
    for (const Layout& lay : kLayouts) {
      const Row r = make_row(1.0, target.scaled, lay.Lk, lay.lo, lay.hi, seed++);
      const std::string fails = check_cross_entropy(r, Arith::fixed);
      EXPECT_TRUE(fails.empty()) << "near " << target.name << ":\n" << fails;
    }
}

// The top key's exponent is exactly 0 and every other's is exact to one rounding of
// (y - m) c, at any magnitude; a masked key's is -inf, whatever the scale (0 included).
TEST(Exp2Scale, exponentsAreRelativeToTheTop) {
  for (const double scale : {0.125, -3.0, 1e20, -1e-3}) {
    const Exp2Scale sc = mc::cuda::exp2_scale(scale);
    for (const float top : {1e30f, -1e30f, 0x1p40f, 3.0f}) {
      const float m = sc.key(top);
      EXPECT_EQ(sc.score_exponent(top, m), 0.0f) << scale << " " << top;
      const float next = std::nextafter(top, top > 0 ? 0.0f : -1.0f);  // 1 ulp away
      const double want = (double{sc.key(next)} - double{m}) * double{sc.c};
      const float got = sc.score_exponent(next, m);
      if (std::abs(want) < 1e38) {
        EXPECT_LE(std::abs(got - want), std::abs(want) * 0x1p-24) << scale << " " << top;
      }
      EXPECT_EQ(sc.exponent(-INFINITY, Exp2Scale::origin(m)), -INFINITY);
    }
  }
  // scale 0 (and below fp32's range): every weight is 1, masked keys still 0.
  for (const double scale : {0.0, -0.0, 1e-60}) {
    const Exp2Scale sc = mc::cuda::exp2_scale(scale);
    EXPECT_GT(sc.c, 0.0f);
    EXPECT_EQ(std::exp2(sc.score_exponent(-1e30f, sc.key(1e30f))), 1.0f) << scale;
    EXPECT_EQ(std::exp2(sc.score_exponent(5.0f, sc.key(5.0f))), 1.0f) << scale;
    EXPECT_EQ(sc.exponent(-INFINITY, 0.0f), -INFINITY) << scale;
  }
  // A scale beyond fp32: c is FLT_MAX, not inf (inf * 0 would make the top's weight NaN).
  EXPECT_EQ(mc::cuda::exp2_scale(1e300).c, std::numeric_limits<float>::max());
  EXPECT_EQ(mc::cuda::exp2_scale(-1e300).sign, -1.0f);
}

// The power of the checks above: the arithmetic the kernels had before the fix fails them.
TEST(Exp2Scale, theFusedExponentFailsTheseRows) {
  std::uint32_t seed = 1;
  for (const double scale : kScales)
    for (const Target& target : targets(scale)) {
      int failed = 0, rows = 0;
      for (const Layout& lay : kLayouts) {
        const Row r = make_row(scale, target.scaled, lay.Lk, lay.lo, lay.hi, seed++);
        failed += !check_row(r, Arith::fused).empty();
        ++rows;
      }
      EXPECT_EQ(failed, rows) << "scale " << scale << " near " << target.name << ": " << failed
                              << " of " << rows << " rows caught";
    }
  for (const Target& target : targets(1.0)) {
    const Row r = make_row(1.0, target.scaled, 300, 5, 250, 100);
    EXPECT_FALSE(check_cross_entropy(r, Arith::fused).empty()) << "near " << target.name;
  }
}

}  // namespace
