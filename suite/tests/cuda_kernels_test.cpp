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
// cuda::cross_entropy with an upstream gradient against the reference, NaN upstream gradients of
// ignored rows never reaching dlogits.
//
// cuda::attention_backward (tensor cores for fp16 / bf16, the fp32 warp kernels) against the fp64
// reference through the suite's tolerance, on every mask feature, grouped-query heads, head dims
// of each kernel configuration and load path, rows and keys nobody sees, huge scores; bitwise
// twice the same; NaN padding changing no bit.
//
// Without a usable device every test is skipped with the reason; MASKCHECK_REQUIRE_CUDA=1
// (ci/gpu.sh sets it) makes that a failure.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "maskcheck/kernels/cuda.hpp"
#include "maskcheck/reference/predicate.hpp"
#include "maskcheck/suite/properties.hpp"
#include "maskcheck/suite/reference_impl.hpp"
#include "maskcheck/suite/tolerance.hpp"

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

// The upstream gradient of cross-entropy: every reduction, weights, smoothing, a mean with no
// contributing weight; the grad_output of ignored rows is NaN and must not reach dlogits.
TEST_F(CudaKernels, crossEntropyUpstreamGradient) {
  std::mt19937 gen(41);
  std::uniform_real_distribution<double> unit(-3, 3);
  for (const mc::DType t : {mc::DType::f32, mc::DType::f16, mc::DType::bf16})
    for (const mc::Reduction r : {mc::Reduction::none, mc::Reduction::sum, mc::Reduction::mean})
      for (const bool all_ignored : {false, true}) {
        mc::LossProblem p;
        p.N = 7;
        p.V = 3001;
        p.reduction = r;
        p.weighted = true;
        p.label_smoothing = 0.05;
        std::vector<double> logits(static_cast<std::size_t>(p.N * p.V));
        for (auto& x : logits) x = mc::round_to(t, unit(gen));
        std::vector<std::int64_t> labels{5, -100, 3000, 0, -100, 1234, 77};
        if (all_ignored) labels.assign(labels.size(), -100);
        const std::vector<double> weights{1, 0.5, 2, 0, 1, 0.25, 3};
        std::vector<double> g(r == mc::Reduction::none ? static_cast<std::size_t>(p.N) : 1);
        for (auto& x : g) x = unit(gen);
        if (r == mc::Reduction::none)
          for (std::int64_t i = 0; i < p.N; ++i)
            if (labels[i] == -100) g[i] = std::numeric_limits<double>::quiet_NaN();
        SCOPED_TRACE(name(t) + " reduction " + std::string(mc::to_string(r)) +
                     (all_ignored ? " every label ignored" : ""));
        const auto got = impl("cuda").cross_entropy_upstream(p, t, logits, labels, weights, g);
        const auto want =
            impl("reference").cross_entropy_upstream(p, mc::DType::f64, logits, labels, weights, g);
        expect_close(got.losses, want.losses, 1e-5, 1e-5, "losses");
        expect_close(got.dlogits, want.dlogits, 1e-6, out_tol(t), "dlogits");
        for (std::int64_t i = 0; i < p.N; ++i) {
          if (labels[i] != -100) continue;
          for (std::int64_t j = 0; j < p.V; ++j) {
            ASSERT_EQ(got.dlogits[i * p.V + j], 0.0) << "ignored row " << i << " column " << j;
          }
        }
      }
}

// ---- attention backward ----------------------------------------------------------------------

const mc::DType kBackwardDtypes[] = {mc::DType::f32, mc::DType::f16, mc::DType::bf16};

struct BwdInputs {
  std::vector<double> q, k, v, dout;
};

// Uniform in [-1, 1), rounded to the dtype.
BwdInputs bwd_inputs(const mc::AttentionProblem& p, mc::DType t, std::uint32_t seed) {
  auto draw = [&](std::int64_t n, std::uint32_t s) {
    auto x = kernel_checks::uniform(static_cast<std::size_t>(n), -1, 1, s);
    for (double& e : x) e = mc::round_to(t, e);
    return x;
  };
  return {draw(p.q_numel(), seed), draw(p.kv_numel(), seed + 1), draw(p.kv_numel(), seed + 2),
          draw(p.q_numel(), seed + 3)};
}

// The CUDA backward of one case, checked: each gradient against the fp64 reference by the suite's
// tolerance (the FlashAttention rule against the naive backward in the dtype, or each element's
// first-order rounding bound: the properties' check), +0.0 bit for bit for the dq of rows that see
// no key and the dk, dv of keys no row sees, and finite everywhere. Returns the gradients.
mc::AttentionGradients check_backward(const mc::AttentionProblem& p, mc::DType t,
                                      const BwdInputs& x) {
  const auto got = impl("cuda").attention_backward(p, t, x.q, x.k, x.v, x.dout);
  const auto want =
      mc::reference_attention_backward(p, t, x.q, x.k, x.v, x.dout, mc::Precision::exact);
  const auto naive =
      mc::reference_attention_backward(p, t, x.q, x.k, x.v, x.dout, mc::Precision::naive);
  const auto bound = mc::attention_backward_rounding_bound(p, t, x.q, x.k, x.v, x.dout);
  const mc::Shape qs = mc::attention_out_shape(p);
  const mc::Shape ks{{"b", "hkv", "k", "d"}, {p.mask.B, p.Hkv, p.mask.Lk, p.D}};
  for (const auto& [name, shape, g, w, n, r] :
       {std::tuple{"dq", qs, &got.dq, &want.dq, &naive.dq, &bound.dq},
        std::tuple{"dk", ks, &got.dk, &want.dk, &naive.dk, &bound.dk},
        std::tuple{"dv", ks, &got.dv, &want.dv, &naive.dv, &bound.dv}}) {
    const mc::CheckResult c = mc::check_close(name, shape, *g, *w, *n, t, *r);
    EXPECT_TRUE(c.ok) << c.report();
    int bad = 0;
    for (std::size_t i = 0; i < g->size() && bad < 5; ++i)
      if (!std::isfinite((*g)[i]) && ++bad)
        ADD_FAILURE() << name << "[" << i << "] is " << (*g)[i] << " (exact " << (*w)[i] << ")";
  }
  // Exact zeros, from the predicate.
  const mc::FlatMask flat(p.mask);
  const std::int64_t B = p.mask.B, Lq = p.mask.Lq, Lk = p.mask.Lk, D = p.D;
  std::vector<std::uint8_t> seen(static_cast<std::size_t>(B * Lk), 0);
  int bad = 0;
  auto expect_plus_zero = [&](double y, const char* what, std::int64_t at) {
    if ((y != 0.0 || std::signbit(y)) && bad++ < 5)
      ADD_FAILURE() << what << "[" << at << "] is " << y << ", not +0.0";
  };
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t i = 0; i < Lq; ++i) {
      const mc::KeyRange r = mc::visible_keys(flat.view(), b, i);
      for (std::int64_t j = r.begin; j < r.end; ++j) seen[static_cast<std::size_t>(b * Lk + j)] = 1;
      if (r.empty())
        for (std::int64_t h = 0; h < p.H; ++h)
          for (std::int64_t d = 0; d < D; ++d) {
            const std::int64_t at = ((b * p.H + h) * Lq + i) * D + d;
            expect_plus_zero(got.dq[static_cast<std::size_t>(at)], "dq (row without a key)", at);
          }
    }
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t j = 0; j < Lk; ++j)
      if (!seen[static_cast<std::size_t>(b * Lk + j)])
        for (std::int64_t h = 0; h < p.Hkv; ++h)
          for (std::int64_t d = 0; d < D; ++d) {
            const std::int64_t at = ((b * p.Hkv + h) * Lk + j) * D + d;
            expect_plus_zero(got.dk[static_cast<std::size_t>(at)], "dk (key nobody sees)", at);
            expect_plus_zero(got.dv[static_cast<std::size_t>(at)], "dv (key nobody sees)", at);
          }
  return got;
}

mc::AttentionProblem bwd_problem(mc::MaskSpec m, std::int64_t H, std::int64_t Hkv, std::int64_t D,
                                 std::optional<double> scale = std::nullopt) {
  mc::AttentionProblem p;
  p.mask = std::move(m);
  p.H = H;
  p.Hkv = Hkv;
  p.D = D;
  p.scale = scale;
  return p;
}

std::string bwd_name(mc::DType t, const mc::AttentionProblem& p) {
  return name(t) + " D" + std::to_string(p.D) + " H" + std::to_string(p.H) + "/" +
         std::to_string(p.Hkv) + " Lq" + std::to_string(p.mask.Lq) + " Lk" +
         std::to_string(p.mask.Lk);
}

// Padding + causal, grouped-query heads (4 query heads on 2 kv heads), sequences of several blocks
// of both kernels (150 rows and keys: 3 dQ blocks, 3 dK/dV blocks), the second sequence's padded
// queries seeing no key. Head dims: 8 and 40 (D_PAD 32 and 64, 16-byte loads, D % 16 != 0), 72
// and 128 (D_PAD 128), 100 (D_PAD 128, element-wise loads), 256 (dK and dV in two passes), 59
// (element-wise, odd).
TEST_F(CudaKernels, attentionBackwardPaddingCausalGqa) {
  std::uint32_t seed = 400;
  for (const mc::DType t : kBackwardDtypes)
    for (const std::int64_t D : {8, 40, 59, 72, 100, 128, 256}) {
      const mc::AttentionProblem p = bwd_problem(kernel_checks::padded_causal(150, 150), 4, 2, D);
      SCOPED_TRACE(bwd_name(t, p));
      check_backward(p, t, bwd_inputs(p, t, seed += 4));
    }
}

// The other mask features, each with rows or keys nobody sees: a sliding window with Lq != Lk
// (keys beyond every window), left padding + causal with Lq > Lk (early rows see no key), packed
// documents with an empty document, a sequence without any valid query, top-left causal, and a
// negative scale (the scores' signs flipped as the forward flips them): (what, problem) at head
// dim D.
std::vector<std::pair<std::string, mc::AttentionProblem>> mask_feature_cases(std::int64_t D) {
  std::vector<std::pair<std::string, mc::AttentionProblem>> out;
  auto add = [&](std::string what, mc::MaskSpec m, std::int64_t H, std::int64_t Hkv,
                 std::optional<double> scale) {
    out.emplace_back(std::move(what), bwd_problem(std::move(m), H, Hkv, D, scale));
  };
  mc::MaskSpec window = kernel_checks::padded_causal(130, 200);
  window.causal = false;
  window.window = mc::Window{40, 3};
  add("window (40, 3)", window, 2, 2, std::nullopt);
  mc::MaskSpec left = kernel_checks::padded_causal(170, 100);
  left.padding = mc::PaddingSide::left;
  add("left padding + causal, scale -0.3", left, 3, 1, -0.3);
  mc::MaskSpec docs;
  docs.B = 2;
  docs.Lq = docs.Lk = 260;
  docs.q_lens = {260, 0};
  docs.k_lens = {250, 90};
  docs.causal = true;
  docs.cu_seqlens_q = {{0, 70, 70, 200, 260}, {0, 0}};
  docs.cu_seqlens_k = {{0, 100, 130, 190, 250}, {0, 90}};
  add("documents + causal", docs, 2, 1, std::nullopt);
  mc::MaskSpec top_left = kernel_checks::padded_causal(90, 140);
  top_left.alignment = mc::Alignment::top_left;
  add("top-left causal, scale 2.5", top_left, 1, 1, 2.5);
  return out;
}

TEST_F(CudaKernels, attentionBackwardMaskFeatures) {
  std::uint32_t seed = 500;
  for (const mc::DType t : kBackwardDtypes)
    for (const std::int64_t D : {64, 59})
      for (const auto& [what, p] : mask_feature_cases(D)) {
        SCOPED_TRACE(what + " " + bwd_name(t, p));
        check_backward(p, t, bwd_inputs(p, t, seed += 4));
      }
}

// Huge scores (the operands of the forward's test: exact scores 2^E - k_j u, ties of the top),
// dout uniform: the weights are 2^0 / (number of ties) or 0, which only scores recomputed bit for
// bit as the forward's (and exponents relative to the row's top key) keep.
TEST_F(CudaKernels, attentionBackwardKeepsHugeScores) {
  std::uint32_t seed = 600;
  for (const mc::DType t : kBackwardDtypes)
    for (const std::int64_t D : {64, 100})
      for (const double target : {0x1p19, 0x1p31, 0x1p40})
        for (const double sign : {1.0, -1.0}) {
          // fp16 reaches targets beyond 2^22 at D 64 only through scales so large that the exact
          // dq overflows it.
          if (t == mc::DType::f16 && target > 0x1p19) continue;
          const Huge h = huge_for(t, D, target);
          const mc::AttentionProblem p =
              bwd_problem(kernel_checks::padded_causal(130, 300), 2, 1, D, sign * h.scale);
          const Operands o = make_operands(t, D, p.mask.B * p.H * p.mask.Lq,
                                           p.mask.B * p.Hkv * p.mask.Lk, h.E, sign, seed++);
          BwdInputs x{o.q, o.k, o.v, {}};
          x.dout = kernel_checks::uniform(static_cast<std::size_t>(p.q_numel()), -1, 1, seed++);
          for (double& e : x.dout) e = mc::round_to(t, e);
          SCOPED_TRACE(bwd_name(t, p) + " top 2^" + std::to_string(h.E) + " scale " +
                       std::to_string(*p.scale));
          check_backward(p, t, x);
        }
}

// Two runs give the same bits (no floating-point atomics; fixed orders of summation), on a case
// with many blocks of both kernels and grouped-query sums.
TEST_F(CudaKernels, attentionBackwardIsDeterministic) {
  for (const mc::DType t : kBackwardDtypes)
    for (const std::int64_t D : {64, 128}) {
      const mc::AttentionProblem p = bwd_problem(kernel_checks::padded_causal(700, 700), 8, 2, D);
      SCOPED_TRACE(bwd_name(t, p));
      const BwdInputs x = bwd_inputs(p, t, 700);
      const auto a = impl("cuda").attention_backward(p, t, x.q, x.k, x.v, x.dout);
      const auto b = impl("cuda").attention_backward(p, t, x.q, x.k, x.v, x.dout);
      EXPECT_TRUE(a.dq == b.dq) << "dq differs between two runs";
      EXPECT_TRUE(a.dk == b.dk) << "dk differs between two runs";
      EXPECT_TRUE(a.dv == b.dv) << "dv differs between two runs";
    }
}

// NaN in every padded position of q, k, v and dout changes no bit of any gradient.
TEST_F(CudaKernels, attentionBackwardNeverReadsPadding) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  std::uint32_t seed = 800;
  for (const mc::DType t : kBackwardDtypes)
    for (const std::int64_t D : {59, 64, 256})
      for (const mc::PaddingSide side : {mc::PaddingSide::right, mc::PaddingSide::left}) {
        mc::MaskSpec m = kernel_checks::padded_causal(150, 170);
        m.padding = side;
        const mc::AttentionProblem p = bwd_problem(m, 2, 1, D);
        SCOPED_TRACE(bwd_name(t, p) + (side == mc::PaddingSide::left ? " left" : " right"));
        const BwdInputs clean = bwd_inputs(p, t, seed += 4);
        BwdInputs dirty = clean;
        const mc::FlatMask flat(p.mask);
        for (std::int64_t b = 0; b < m.B; ++b) {
          const mc::ValidRanges r = mc::valid_ranges(flat.view(), b);
          for (std::int64_t i = 0; i < m.Lq; ++i)
            if (!r.has_query(i))
              for (std::int64_t h = 0; h < p.H; ++h)
                for (std::int64_t d = 0; d < D; ++d) {
                  const auto at = static_cast<std::size_t>(((b * p.H + h) * m.Lq + i) * D + d);
                  dirty.q[at] = dirty.dout[at] = nan;
                }
          for (std::int64_t j = 0; j < m.Lk; ++j)
            if (!r.keys().contains(j))
              for (std::int64_t h = 0; h < p.Hkv; ++h)
                for (std::int64_t d = 0; d < D; ++d) {
                  const auto at = static_cast<std::size_t>(((b * p.Hkv + h) * m.Lk + j) * D + d);
                  dirty.k[at] = dirty.v[at] = nan;
                }
        }
        const auto a = check_backward(p, t, clean);
        const auto g = impl("cuda").attention_backward(p, t, dirty.q, dirty.k, dirty.v, dirty.dout);
        auto same_bits = [](const std::vector<double>& x, const std::vector<double>& y) {
          if (x.size() != y.size()) return false;
          for (std::size_t i = 0; i < x.size(); ++i)
            if (std::memcmp(&x[i], &y[i], sizeof(double)) != 0) return false;
          return true;
        };
        EXPECT_TRUE(same_bits(g.dq, a.dq)) << "NaN padding changed dq";
        EXPECT_TRUE(same_bits(g.dk, a.dk)) << "NaN padding changed dk";
        EXPECT_TRUE(same_bits(g.dv, a.dv)) << "NaN padding changed dv";
      }
}

// What the kernels cannot do is declined with the reason, never attempted: D > 256, f64.
TEST_F(CudaKernels, attentionBackwardDeclinesWhatItCannotDo) {
  mc::AttentionProblem p;
  p.mask = kernel_checks::padded_causal(10, 10);
  p.D = 257;
  const auto& cuda = impl("cuda");
  const mc::Support wide = cuda.supports_attention_backward(p, mc::DType::bf16);
  EXPECT_FALSE(wide.ok);
  EXPECT_NE(wide.reason.find("D <= 256"), std::string::npos) << wide.reason;
  p.D = 256;
  EXPECT_TRUE(cuda.supports_attention_backward(p, mc::DType::bf16).ok);
  const mc::Support f64 = cuda.supports_attention_backward(p, mc::DType::f64);
  EXPECT_FALSE(f64.ok);
  EXPECT_NE(f64.reason.find("f32, f16 and bf16"), std::string::npos) << f64.reason;
}

}  // namespace
