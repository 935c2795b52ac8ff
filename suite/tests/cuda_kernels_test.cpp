// The CUDA kernels on rows of huge finite scores, on a GPU: cuda::attention_forward (the flash
// kernel at every head-dim configuration, 16-byte and element-wise loads, fp16 and bf16; the fp32
// rows kernel), cuda::attention_varlen, cuda::masked_softmax (warp, block and streamed rows) and
// cuda::cross_entropy, through the "cuda" implementation, against the fp64 reference. The kernels
// used to form exponents as fmaf(x, c, -fl(max * c)), which is wrong by up to 2^-25 |max c|:
// inf or NaN from |max c| near 2^31, drifting weights near 2^19 (exp2_scale.hpp;
// exp2_scale_test checks the same arithmetic on the host).
//
// Scores are exact in fp32 whatever the order of accumulation: a query row is (A, 1, 0, ...) and
// key j is (B, -k_j u, 0, ...) with A B = 2^E and u = 2^(E - 23), the fp32 ulp at 2^E, so
// q.k_j = 2^E - k_j u. The scale puts the top near a target magnitude of |score * scale * log2 e|:
// an exponent step of u is about target * 2^-23, 2^-4 near 2^19 (a spread softmax over k_j in
// [0, 255]) and 2^8 from 2^31 on, where only ties of the top have weight.
//
// Without a usable device every test is skipped with the reason; MASKCHECK_REQUIRE_CUDA=1
// (ci/gpu.sh sets it) makes that a failure.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "maskcheck/kernels/cuda.hpp"

#include "kernel_checks.hpp"

namespace mc = maskcheck;
using kernel_checks::expect_close;
using kernel_checks::impl;

namespace {

constexpr double kLog2e = 1.4426950408889634;

class CudaKernels : public testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (mc::cuda::device_available(&why)) return;
    const char* require = std::getenv("MASKCHECK_REQUIRE_CUDA");
    if (require && std::string_view(require) == "1") FAIL() << "MASKCHECK_REQUIRE_CUDA=1: " << why;
    GTEST_SKIP() << why;
  }
};

std::string name(mc::DType t) {
  return std::string(mc::to_string(t));
}

// Output tolerances: fp32 arithmetic throughout, the output rounded to the dtype (and P rounded
// to it in the flash kernel's P V product).
double out_tol(mc::DType t) {
  return t == mc::DType::f32 ? 2e-5 : t == mc::DType::f16 ? 4e-3 : 3e-2;
}

// One attention case: scores 2^E - k u near |score * scale * log2 e| = target, per sign.
struct Huge {
  double scale;  // signed
  int E;         // the top raw score is 2^E
};

// For dtype t and head dim D: the scale and E for a target, with the default scale 1/sqrt(D)
// where the dtype holds the scores it needs (fp16 holds A, B <= 2^15: E <= 30, so fp16 reaches
// the larger targets through larger scales).
Huge huge_for(mc::DType t, std::int64_t D, double target) {
  const double dflt = 1.0 / std::sqrt(static_cast<double>(D));
  const int E = static_cast<int>(std::lround(std::log2(target / (dflt * kLog2e))));
  if (t != mc::DType::f16 || E <= 30) return {dflt, E};
  return {target / (std::ldexp(1.0, 30) * kLog2e), 30};
}

// q: [rows, D] of (A, 1, 0...) times sign; k: [keys, D] of (B, -k_j u, 0...); v in [-1, 1]
// rounded to t. k_j is 0 (a tie of the top) with probability 1/4, else in [1, 255] (exact in
// bf16). Values are in the layouts' row order: the caller's rows of q and of k / v.
struct Operands {
  std::vector<double> q, k, v;
};
Operands make_operands(mc::DType t, std::int64_t D, std::int64_t q_rows, std::int64_t kv_rows,
                       int E, double sign, std::uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_int_distribution<int> tie(0, 3), ks(1, 255);
  std::uniform_real_distribution<double> unit(-1, 1);
  const double A = std::ldexp(1.0, (E + 1) / 2), B = std::ldexp(1.0, E / 2);
  const double u = std::ldexp(1.0, E - 23);
  Operands o;
  o.q.assign(static_cast<std::size_t>(q_rows * D), 0.0);
  o.k.assign(static_cast<std::size_t>(kv_rows * D), 0.0);
  o.v.resize(static_cast<std::size_t>(kv_rows * D));
  for (std::int64_t r = 0; r < q_rows; ++r) {
    o.q[r * D] = sign * A;
    o.q[r * D + 1] = sign;
  }
  for (std::int64_t r = 0; r < kv_rows; ++r) {
    o.k[r * D] = B;
    o.k[r * D + 1] = tie(gen) == 0 ? 0.0 : -ks(gen) * u;
  }
  for (auto& x : o.v) x = mc::round_to(t, unit(gen));
  return o;
}

const double kTargets[] = {0x1p19, 0x1p31, 0x1p40, 0x1p100};

// D 30 and 100: element-wise loads (D % 8 != 0) at D_PAD 32 and 128; 64, 128, 256: 16-byte loads,
// 256 the wide configuration. f32 runs the rows kernel.
const std::int64_t kHeadDims[] = {30, 64, 100, 128, 256};

TEST_F(CudaKernels, attentionKeepsHugeScoresSoftmax) {
  std::uint32_t seed = 1;
  for (const mc::DType t : {mc::DType::f16, mc::DType::bf16, mc::DType::f32})
    for (const std::int64_t D : kHeadDims)
      for (const double target : kTargets)
        for (const double sign : {1.0, -1.0}) {
          const Huge h = huge_for(t, D, target);
          mc::AttentionProblem p;
          // Padded and causal, two query blocks of the flash kernel and several key tiles; the
          // second sequence has 66 queries and 180 keys (its padded queries see no key).
          p.mask = kernel_checks::padded_causal(130, 300);
          p.H = 2;
          p.Hkv = 1;
          p.D = D;
          if (h.scale != 1.0 / std::sqrt(static_cast<double>(D)) || sign < 0)
            p.scale = sign * h.scale;
          // A negative scale mirrors the scores: q times -1 keeps the same keys on top.
          const Operands o = make_operands(t, D, p.mask.B * p.H * p.mask.Lq,
                                           p.mask.B * p.Hkv * p.mask.Lk, h.E, sign, seed++);
          const std::string what = name(t) + " D" + std::to_string(D) + " top 2^" +
                                   std::to_string(h.E) + " scale " +
                                   std::to_string(p.effective_scale());
          SCOPED_TRACE(what);
          const auto got = impl("cuda").attention(p, t, o.q, o.k, o.v, true);
          const auto want = impl("reference").attention(p, mc::DType::f64, o.q, o.k, o.v, true);
          expect_close(got.out, want.out, out_tol(t), out_tol(t), "out");
          expect_close(got.lse, want.lse, 1e-5, 1e-6, "lse");
        }
}

// The packed layout: two sequences of 130 / 66 queries and 300 / 180 keys, causal, as in the
// padded test, without padding.
TEST_F(CudaKernels, varlenAttentionKeepsHugeScoresSoftmax) {
  std::uint32_t seed = 100;
  for (const mc::DType t : {mc::DType::f16, mc::DType::bf16, mc::DType::f32})
    for (const std::int64_t D : {64, 100})
      for (const double target : kTargets)
        for (const double sign : {1.0, -1.0}) {
          const Huge h = huge_for(t, D, target);
          mc::VarlenAttentionProblem p;
          p.H = 2;
          p.Hkv = 1;
          p.D = D;
          p.cu_seqlens_q = {0, 130, 196};
          p.cu_seqlens_k = {0, 300, 480};
          p.causal = true;
          p.scale = sign * h.scale;
          const Operands o =
              make_operands(t, D, p.total_q() * p.H, p.total_k() * p.Hkv, h.E, sign, seed++);
          SCOPED_TRACE(name(t) + " D" + std::to_string(D) + " top 2^" + std::to_string(h.E) +
                       " scale " + std::to_string(*p.scale));
          const auto got = impl("cuda").attention_varlen(p, t, o.q, o.k, o.v, true);
          const auto want =
              impl("reference").attention_varlen(p, mc::DType::f64, o.q, o.k, o.v, true);
          expect_close(got.out, want.out, out_tol(t), out_tol(t), "out");
          expect_close(got.lse, want.lse, 1e-5, 1e-6, "lse");
        }
}

// Rows of scores 2^E - k ulp_t(2^E) in the dtype (ties of the top with probability 1/4), scale
// for the target; a negative scale gets the scores negated.
std::vector<double> huge_scores(mc::DType t, std::int64_t n, int E, double sign,
                                std::uint32_t seed) {
  const int mantissa = t == mc::DType::f32 ? 23 : t == mc::DType::f16 ? 10 : 7;
  const int most = t == mc::DType::bf16 ? 63 : 255;  // keeps 2^E - k ulp in [2^(E-1), 2^E]
  std::mt19937 gen(seed);
  std::uniform_int_distribution<int> tie(0, 3), ks(1, most);
  std::vector<double> x(static_cast<std::size_t>(n));
  for (auto& v : x)
    v = sign * (std::ldexp(1.0, E) - (tie(gen) == 0 ? 0 : ks(gen)) * std::ldexp(1.0, E - mantissa));
  return x;
}

TEST_F(CudaKernels, maskedSoftmaxKeepsHugeScoresSoftmax) {
  std::uint32_t seed = 200;
  for (const mc::DType t : {mc::DType::f32, mc::DType::f16, mc::DType::bf16})
    // Lk 300: a warp per row; 3000: a block, the row on chip; 200003: a block streaming the part
    // of the row beyond registers and shared memory.
    for (const std::int64_t Lk : {300, 3000, 200003})
      for (const double target : kTargets)
        for (const double sign : {1.0, -1.0}) {
          // fp16 scores up to 2^15; bf16 and fp32 also near 1e30 (2^100) with scale 1.
          const int E = t == mc::DType::f16 ? 15 : target == 0x1p100 ? 100 : 20;
          mc::SoftmaxProblem p;
          p.mask = kernel_checks::padded_causal(7, Lk);
          p.scale = sign * target / (std::ldexp(1.0, E) * kLog2e);
          const auto x = huge_scores(t, p.numel(), E, sign, seed++);
          SCOPED_TRACE(name(t) + " Lk " + std::to_string(Lk) + " top 2^" + std::to_string(E) +
                       " scale " + std::to_string(p.scale));
          expect_close(impl("cuda").softmax(p, t, x),
                       impl("reference").softmax(p, mc::DType::f64, x), 1e-7, out_tol(t), "y");
        }
}

TEST_F(CudaKernels, crossEntropyKeepsHugeLogitsLoss) {
  std::uint32_t seed = 300;
  for (const mc::DType t : {mc::DType::f32, mc::DType::f16, mc::DType::bf16})
    for (const std::int64_t V : {1000, 50000, 200003})
      // Logits near 2^20 (a spread softmax in fp32) and 2^30 (ties of the top and weights 0);
      // fp16 holds up to 2^15. Not near 1e30: the fp64 reference forms lse - x as
      // (max + log sum) - x, whose rounding in double (2^-53 max) passes 1e-5 of a loss near
      // log 2 from a max of ~2^35 on (exp2_scale_test checks the kernels' arithmetic there).
      for (const int E : {15, 20, 30}) {
        if ((t == mc::DType::f16) != (E == 15)) continue;
        for (const double eps : {0.0, 0.1}) {
          mc::LossProblem p;
          p.N = 6;
          p.V = V;
          p.label_smoothing = eps;
          const auto logits = huge_scores(t, p.N * V, E, 1.0, seed++);
          // Labels: the top (when it ties), an arbitrary key, ignored rows.
          std::vector<std::int64_t> labels{0, -100, V - 1, 17, -100, V / 2};
          for (std::int64_t i = 0; i < p.N; ++i)
            if (labels[i] >= 0 && logits[i * V] == std::ldexp(1.0, E)) labels[i] = 0;
          SCOPED_TRACE(name(t) + " V " + std::to_string(V) + " logits near 2^" + std::to_string(E) +
                       " smoothing " + std::to_string(eps));
          const auto got = impl("cuda").cross_entropy(p, t, logits, labels, {}, true);
          const auto want =
              impl("reference").cross_entropy(p, mc::DType::f64, logits, labels, {}, true);
          EXPECT_EQ(got.count, want.count);
          expect_close(got.losses, want.losses, 1e-5, 1e-5, "losses");
          EXPECT_NEAR(got.loss, want.loss, 1e-5 * std::abs(want.loss) + 1e-5);
          expect_close(got.dlogits, want.dlogits, 1e-7, out_tol(t), "dlogits");
        }
      }
}

}  // namespace
