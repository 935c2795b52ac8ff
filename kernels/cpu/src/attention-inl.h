// Shared pieces of the Highway attention kernels (attention.cpp, attention_backward.cpp): tile
// geometry, bf16 conversions, and per SIMD target the polynomial exp2, loads, the in-register
// transpose, the coefficient-times-rows accumulation both passes use, and the row-count dispatch.
// Included after hwy/foreach_target.h, so the per-target part is compiled once per target (the
// Highway "-inl.h" include-guard toggle).
#include <hwy/aligned_allocator.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

#ifndef MASKCHECK_CPU_ATTENTION_INL_SHARED
#define MASKCHECK_CPU_ATTENTION_INL_SHARED
namespace maskcheck::cpu::attn {

inline std::int64_t ceil_div(std::int64_t a, std::int64_t b) {
  return (a + b - 1) / b;
}
inline constexpr double kLn2 = 0.6931471805599453;

inline float bf16_to_float(std::uint16_t bits) {
  return std::bit_cast<float>(static_cast<std::uint32_t>(bits) << 16);
}
// Round to nearest even, as maskcheck::bfloat16 does (NaN stays NaN).
inline std::uint16_t float_to_bf16(float x) {
  const std::uint32_t u = std::bit_cast<std::uint32_t>(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((u >> 16) | 0x40u);
  return static_cast<std::uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
inline float to_float(float x) {
  return x;
}
inline float to_float(std::uint16_t bits) {
  return bf16_to_float(bits);
}

}  // namespace maskcheck::cpu::attn
#endif  // MASKCHECK_CPU_ATTENTION_INL_SHARED

#if defined(MASKCHECK_CPU_ATTENTION_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef MASKCHECK_CPU_ATTENTION_INL_H_
#undef MASKCHECK_CPU_ATTENTION_INL_H_
#else
#define MASKCHECK_CPU_ATTENTION_INL_H_
#endif

#include <hwy/highway.h>

HWY_BEFORE_NAMESPACE();
namespace maskcheck::cpu::attn {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;
constexpr std::int64_t kN = static_cast<std::int64_t>(hn::MaxLanes(DF()));
// Register blocks: kR query rows x kC vectors of keys for S (kR * kC accumulators), kR rows x
// kCV vectors of D for O. AVX-512 has 32 vector registers, the others 16.
#if HWY_TARGET <= HWY_AVX3
constexpr int kR = 6;
#else
constexpr int kR = 2;
#endif
constexpr int kC = 4;
constexpr int kCV = 4;
constexpr std::int64_t kBk = kC * kN;  // keys per tile: one S register block spans the tile
constexpr std::int64_t kBq = 64;       // query rows per work item

// 2^x for x <= 0 (lanes where x is -inf or NaN come out NaN or tiny: callers select them away):
// x = n + f with n = round(x), |f| <= 1/2; 2^f by a degree-6 polynomial (relative error
// < 1e-7); times 2^n by vscalefps on AVX-512, which flushes results below the smallest float to
// 0, elsewhere by adding n to the exponent bits after clamping x to -125 (results below 2^-125
// do not matter next to the row max's 1).
HWY_INLINE VF Exp2(DF df, VF x) {
#if HWY_TARGET <= HWY_AVX3
  const VF n = hn::Round(x);
#else
  const hn::RebindToSigned<DF> di;
  x = hn::Max(x, hn::Set(df, -125.0f));
  const VF shifter = hn::Set(df, 12582912.0f);  // 1.5 * 2^23: adding it rounds to an integer
  const VF t = hn::Add(x, shifter);
  const VF n = hn::Sub(t, shifter);
#endif
  const VF f = hn::Sub(x, n);
  VF p = hn::Set(df, 1.5370710752904415e-4f);
  p = hn::MulAdd(p, f, hn::Set(df, 1.339985290542245e-3f));
  p = hn::MulAdd(p, f, hn::Set(df, 9.618373587727547e-3f));
  p = hn::MulAdd(p, f, hn::Set(df, 5.550329014658928e-2f));
  p = hn::MulAdd(p, f, hn::Set(df, 2.4022647738456726e-1f));
  p = hn::MulAdd(p, f, hn::Set(df, 6.931471824645996e-1f));
  p = hn::MulAdd(p, f, hn::Set(df, 1.0f));
#if HWY_TARGET <= HWY_AVX3
  return VF{_mm512_scalef_ps(p.raw, n.raw)};
#else
  // The low bits of t hold n; shifted into the exponent field they scale p by 2^n.
  const auto e = hn::ShiftLeft<23>(hn::BitCast(di, t));
  return hn::BitCast(df, hn::Add(hn::BitCast(di, p), e));
#endif
}

// kN consecutive elements widened to fp32 (bf16: the bits shifted into the upper half).
HWY_INLINE VF LoadF32(DF df, const float* HWY_RESTRICT p) {
  return hn::LoadU(df, p);
}
HWY_INLINE VF LoadF32(DF df, const std::uint16_t* HWY_RESTRICT p) {
  const hn::Rebind<std::uint16_t, DF> d16;
  const hn::RebindToUnsigned<DF> d32;
  return hn::BitCast(df, hn::ShiftLeft<16>(hn::PromoteTo(d32, hn::LoadU(d16, p))));
}

// dst[0, n) = sign * src[0, n) in fp32.
template <class S>
HWY_INLINE void LoadRow(const S* HWY_RESTRICT src, std::int64_t n, float sign,
                        float* HWY_RESTRICT dst) {
  const DF df;
  const VF vs = hn::Set(df, sign);
  std::int64_t d = 0;
  for (; d + kN <= n; d += kN) hn::StoreU(hn::Mul(LoadF32(df, src + d), vs), df, dst + d);
  for (; d < n; ++d) dst[d] = to_float(src[d]) * sign;
}

// In-register transpose of a kN x kN block: log2(kN) rounds of splitting the row-major block,
// seen as one array, into its even and then its odd elements. Each round rotates the element
// index right by one bit; log2(kN) rounds swap the row and column bits.
HWY_INLINE void Transpose(DF df, VF (&v)[kN]) {
#if HWY_TARGET == HWY_SCALAR
  (void)df;
  (void)v;
#else
  for (std::int64_t width = 1; width < kN; width *= 2) {
    VF t[kN];
    for (std::int64_t j = 0; j < kN / 2; ++j) {
      t[j] = hn::ConcatEven(df, v[2 * j + 1], v[2 * j]);
      t[kN / 2 + j] = hn::ConcatOdd(df, v[2 * j + 1], v[2 * j]);
    }
    for (std::int64_t j = 0; j < kN; ++j) v[j] = t[j];
  }
#endif
}

// s[r][c] = <a row r, key c * kN + lane> for RN rows of a (row stride lda, D used) and KC vectors
// of keys of a transposed key tile bt [D, kBk]: RN x KC accumulators in registers, one fused
// multiply-add per element in the order d = 0, 1, ... (the backward recomputes the forward's
// scores bitwise with it).
template <int RN, int KC>
HWY_INLINE void Scores(const float* HWY_RESTRICT a, std::int64_t lda, std::int64_t D,
                       const float* HWY_RESTRICT bt, VF (&s)[RN][KC]) {
  const DF df;
  for (int r = 0; r < RN; ++r)
    for (int c = 0; c < KC; ++c) s[r][c] = hn::Zero(df);
  for (std::int64_t d = 0; d < D; ++d) {
    const float* HWY_RESTRICT kr = bt + d * kBk;
    VF kv[KC];
    for (int c = 0; c < KC; ++c) kv[c] = hn::Load(df, kr + c * kN);
    for (int r = 0; r < RN; ++r) {
      const VF qb = hn::Set(df, a[r * lda + d]);
      for (int c = 0; c < KC; ++c) s[r][c] = hn::MulAdd(qb, kv[c], s[r][c]);
    }
  }
}

// A tile of kBk keys (the first n of them valid, rows of D elements; row(j) points at key j's)
// transposed into dst [D, kBk] fp32, zeros for the keys past n: only valid rows are read.
template <class S, class Row>
HWY_INLINE void PackTransposedRows(Row row, std::int64_t n, std::int64_t D,
                                   float* HWY_RESTRICT dst) {
  const DF df;
  const std::int64_t d_vec = D / kN * kN;
  for (std::int64_t j0 = 0; j0 < kBk; j0 += kN) {
    for (std::int64_t d0 = 0; d0 < d_vec; d0 += kN) {
      VF rows[kN];
      for (std::int64_t i = 0; i < kN; ++i)
        rows[i] = j0 + i < n ? LoadF32(df, static_cast<const S*>(row(j0 + i)) + d0) : hn::Zero(df);
      Transpose(df, rows);
      for (std::int64_t i = 0; i < kN; ++i) hn::Store(rows[i], df, dst + (d0 + i) * kBk + j0);
    }
    for (std::int64_t d = d_vec; d < D; ++d)
      for (std::int64_t j = j0; j < j0 + kN; ++j)
        dst[d * kBk + j] = j < n ? to_float(static_cast<const S*>(row(j))[d]) : 0.0f;
  }
}
// Contiguous rows: key j at src + j * D.
template <class S>
HWY_INLINE void PackTransposed(const S* HWY_RESTRICT src, std::int64_t n, std::int64_t D,
                               float* HWY_RESTRICT dst) {
  PackTransposedRows<S>([src, D](std::int64_t j) { return src + j * D; }, n, D, dst);
}

// The same tile as rows: dst [kBk, dp] fp32, zeros past n and in columns D..dp.
template <class S, class Row>
HWY_INLINE void PackRowsOf(Row row, std::int64_t n, std::int64_t D, std::int64_t dp,
                           float* HWY_RESTRICT dst) {
  const DF df;
  for (std::int64_t j = 0; j < kBk; ++j) {
    float* r = dst + j * dp;
    std::int64_t d = 0;
    if (j < n) {
      const S* HWY_RESTRICT src = static_cast<const S*>(row(j));
      for (; d + kN <= D; d += kN) hn::Store(LoadF32(df, src + d), df, r + d);
      for (; d < D; ++d) r[d] = to_float(src[d]);
    }
    std::fill(r + d, r + dp, 0.0f);
  }
}
template <class S>
HWY_INLINE void PackRows(const S* HWY_RESTRICT src, std::int64_t n, std::int64_t D, std::int64_t dp,
                         float* HWY_RESTRICT dst) {
  PackRowsOf<S>([src, D](std::int64_t j) { return src + j * D; }, n, D, dp, dst);
}

// out[o, CV vectors] (= out * alpha[o] when SCALE) += sum over i in [ib, ie) of c(o, i) *
// rows[i, CV vectors], for o < RN, where the coefficients c are a tile of kBk columns: c(o, i) =
// coef[o * kBk + i], or coef[i * kBk + o] when TRANS. One column chunk of a small GEMM with
// RN x CV accumulators in registers: P V (the forward's O, the backward's dQ = dS K), or with
// TRANS P^T dO (the backward's dV and dK: columns of P times query rows).
template <int RN, int CV, bool SCALE, bool TRANS>
HWY_INLINE void Accumulate(const float* HWY_RESTRICT coef, std::int64_t ib, std::int64_t ie,
                           const float* HWY_RESTRICT rows, std::int64_t ldr,
                           const float* HWY_RESTRICT alpha, float* HWY_RESTRICT out,
                           std::int64_t ldo) {
  const DF df;
  VF acc[RN][CV];
  for (int o = 0; o < RN; ++o) {
    for (int c = 0; c < CV; ++c) acc[o][c] = hn::Load(df, out + o * ldo + c * kN);
    if constexpr (SCALE) {
      const VF a = hn::Set(df, alpha[o]);
      for (int c = 0; c < CV; ++c) acc[o][c] = hn::Mul(acc[o][c], a);
    }
  }
  for (std::int64_t i = ib; i < ie; ++i) {
    const float* HWY_RESTRICT r = rows + i * ldr;
    VF rv[CV];
    for (int c = 0; c < CV; ++c) rv[c] = hn::LoadU(df, r + c * kN);
    for (int o = 0; o < RN; ++o) {
      const VF cb = hn::Set(df, TRANS ? coef[i * kBk + o] : coef[o * kBk + i]);
      for (int c = 0; c < CV; ++c) acc[o][c] = hn::MulAdd(cb, rv[c], acc[o][c]);
    }
  }
  for (int o = 0; o < RN; ++o)
    for (int c = 0; c < CV; ++c) hn::Store(acc[o][c], df, out + o * ldo + c * kN);
}

// Accumulate over all dp / kN vectors of a row (dp a multiple of kN), in chunks of kCV vectors.
template <int RN, bool SCALE, bool TRANS>
HWY_NOINLINE void AccumulateAll(const float* HWY_RESTRICT coef, std::int64_t ib, std::int64_t ie,
                                const float* HWY_RESTRICT rows, std::int64_t ldr, std::int64_t dp,
                                const float* HWY_RESTRICT alpha, float* HWY_RESTRICT out,
                                std::int64_t ldo) {
  const std::int64_t nv = dp / kN;
  std::int64_t v = 0;
  for (; v + kCV <= nv; v += kCV)
    Accumulate<RN, kCV, SCALE, TRANS>(coef, ib, ie, rows + v * kN, ldr, alpha, out + v * kN, ldo);
  switch (nv - v) {
    case 1:
      return Accumulate<RN, 1, SCALE, TRANS>(coef, ib, ie, rows + v * kN, ldr, alpha, out + v * kN,
                                             ldo);
    case 2:
      return Accumulate<RN, 2, SCALE, TRANS>(coef, ib, ie, rows + v * kN, ldr, alpha, out + v * kN,
                                             ldo);
    case 3:
      return Accumulate<RN, 3, SCALE, TRANS>(coef, ib, ie, rows + v * kN, ldr, alpha, out + v * kN,
                                             ldo);
    default:
      return;
  }
}
static_assert(kCV == 4, "AccumulateAll dispatches up to 3 leftover vectors");

// Runtime row count (1 .. kR) to a template argument.
template <template <int> class F, class... Args>
HWY_INLINE void WithRows(int rn, Args&&... args) {
  switch (rn) {
    case 1:
      return F<1>::run(args...);
#if HWY_TARGET <= HWY_AVX3
    case 2:
      return F<2>::run(args...);
    case 3:
      return F<3>::run(args...);
    case 4:
      return F<4>::run(args...);
    case 5:
      return F<5>::run(args...);
    case 6:
      return F<6>::run(args...);
#else
    case 2:
      return F<2>::run(args...);
#endif
    default:
      return;
  }
}
static_assert(kR <= 6, "WithRows dispatches up to 6 rows");

}  // namespace HWY_NAMESPACE
}  // namespace maskcheck::cpu::attn
HWY_AFTER_NAMESPACE();

#endif  // MASKCHECK_CPU_ATTENTION_INL_H_
