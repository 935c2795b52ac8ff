// The CPU kernels beyond what the property catalogue reaches: every Highway target compiled in
// and supported by this CPU (the catalogue only sees the best one), and the code paths that only
// large problems take (softmax outputs streamed with non-temporal stores).
#include <gtest/gtest.h>

#include <hwy/targets.h>
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "maskcheck/kernels/cpu.hpp"
#include "maskcheck/reference/attention.hpp"
#include "maskcheck/suite/builtin.hpp"
#include "maskcheck/suite/cases.hpp"
#include "maskcheck/suite/properties.hpp"
#include "maskcheck/suite/reference_impl.hpp"
#include "maskcheck/suite/registry.hpp"
#include "maskcheck/suite/tolerance.hpp"

#include "kernel_checks.hpp"

namespace mc = maskcheck;

namespace {

using kernel_checks::expect_close;
using kernel_checks::impl;
using kernel_checks::padded_causal;
using kernel_checks::uniform;

// Runs softmax, attention and cross-entropy of "cpu" and "reference" on one case each.
void check_operations(const std::string& target) {
  const auto& cpu = impl("cpu");
  const auto& ref = impl("reference");
  {
    mc::SoftmaxProblem p;
    p.mask = padded_causal(37, 1029);  // rows of odd length: unaligned tails in every path
    p.H = 3;
    p.scale = 0.7;
    const auto x = uniform(static_cast<std::size_t>(p.numel()), -8, 8, 1);
    expect_close(cpu.softmax(p, mc::DType::f32, x), ref.softmax(p, mc::DType::f64, x), 1e-6, 1e-5,
                 target + " softmax f32");
  }
  for (const std::int64_t D : {64, 59}) {
    mc::AttentionProblem p;
    p.mask = padded_causal(70, 131);
    p.mask.window = mc::Window{40, 3};
    p.H = 4;
    p.Hkv = 2;
    p.D = D;
    const auto q = uniform(static_cast<std::size_t>(p.q_numel()), -1, 1, 2);
    const auto k = uniform(static_cast<std::size_t>(p.kv_numel()), -1, 1, 3);
    const auto v = uniform(static_cast<std::size_t>(p.kv_numel()), -1, 1, 4);
    const auto got = cpu.attention(p, mc::DType::f32, q, k, v, true);
    const auto want = ref.attention(p, mc::DType::f64, q, k, v, true);
    // Rows with no visible key: output 0 in both (checked exactly), lse -inf in both.
    expect_close(got.out, want.out, 1e-5, 1e-4, target + " attention D" + std::to_string(D));
    ASSERT_EQ(got.lse.size(), want.lse.size());
    for (std::size_t i = 0; i < got.lse.size(); ++i) {
      if (std::isinf(want.lse[i]))
        EXPECT_EQ(got.lse[i], want.lse[i]) << target << " lse[" << i << "]";
      else
        EXPECT_NEAR(got.lse[i], want.lse[i], 1e-4) << target << " lse[" << i << "]";
    }
    // The backward's micro-kernels and tiles differ per target (register blocks of 6 rows on
    // AVX-512, 2 elsewhere; key tiles of 4 vectors).
    const auto dout = uniform(static_cast<std::size_t>(p.q_numel()), -1, 1, 5);
    const auto gg = cpu.attention_backward(p, mc::DType::f32, q, k, v, dout);
    const auto gw = ref.attention_backward(p, mc::DType::f64, q, k, v, dout);
    const std::string bw = target + " attention backward D" + std::to_string(D);
    expect_close(gg.dq, gw.dq, 1e-5, 1e-4, bw + " dq");
    expect_close(gg.dk, gw.dk, 1e-5, 1e-4, bw + " dk");
    expect_close(gg.dv, gw.dv, 1e-5, 1e-4, bw + " dv");
  }
  for (const std::int64_t D : {64, 59}) {
    // Every score modifier at once (the modified-score path of each register block and tile
    // kind): soft-cap, ALiBi from bottom-right diagonals with left padding, sink logits.
    mc::AttentionProblem p;
    p.mask = padded_causal(70, 131);
    p.mask.padding = mc::PaddingSide::left;
    p.mask.window = mc::Window{40, 3};
    p.H = 4;
    p.Hkv = 2;
    p.D = D;
    p.mods.softcap = 0.75;
    p.mods.alibi_slopes = mc::alibi_slope_schedule(p.H);
    p.mods.sink_logits = {0.5, -3.0, 6.0, 0.0};
    const auto q = uniform(static_cast<std::size_t>(p.q_numel()), -2, 2, 12);
    const auto k = uniform(static_cast<std::size_t>(p.kv_numel()), -2, 2, 13);
    const auto v = uniform(static_cast<std::size_t>(p.kv_numel()), -1, 1, 14);
    const auto got = cpu.attention(p, mc::DType::f32, q, k, v, true);
    const auto want = ref.attention(p, mc::DType::f64, q, k, v, true);
    expect_close(got.out, want.out, 1e-5, 1e-4,
                 target + " modified attention D" + std::to_string(D));
    for (std::size_t i = 0; i < got.lse.size(); ++i) {
      if (std::isinf(want.lse[i]))
        EXPECT_EQ(got.lse[i], want.lse[i]) << target << " modified lse[" << i << "]";
      else
        EXPECT_NEAR(got.lse[i], want.lse[i], 1e-4) << target << " modified lse[" << i << "]";
    }
  }
  {
    // A paged cache (pages of 3 keys, reversed order, one unused): the packing path that gathers
    // key rows from their pages, bitwise the same as the contiguous layout.
    mc::AttentionProblem p;
    p.mask = padded_causal(5, 131);
    p.H = 4;
    p.Hkv = 2;
    p.D = 59;
    mc::PagedKv kv;
    kv.page_size = 3;
    kv.max_pages = mc::PagedKv::pages_of(131, 3);
    std::int64_t used = 0;
    for (std::int64_t b = 0; b < p.mask.B; ++b)
      used += mc::PagedKv::pages_of(p.mask.k_len(b), kv.page_size);
    kv.num_pages = used + 1;
    kv.block_table.assign(static_cast<std::size_t>(p.mask.B * kv.max_pages), -1);
    std::int32_t next = static_cast<std::int32_t>(kv.num_pages) - 1;
    for (std::int64_t b = 0; b < p.mask.B; ++b)
      for (std::int64_t i = 0; i < mc::PagedKv::pages_of(p.mask.k_len(b), kv.page_size); ++i)
        kv.block_table[static_cast<std::size_t>(b * kv.max_pages + i)] = next--;
    const auto q = uniform(static_cast<std::size_t>(p.q_numel()), -1, 1, 22);
    const auto kc = uniform(static_cast<std::size_t>(kv.cache_numel(p)), -1, 1, 23);
    const auto vc = uniform(static_cast<std::size_t>(kv.cache_numel(p)), -1, 1, 24);
    const auto got = cpu.attention_paged(p, kv, mc::DType::f32, q, kc, vc, true);
    const auto contiguous =
        cpu.attention(p, mc::DType::f32, q, mc::ref::gather_paged<double>(p, kv, kc),
                      mc::ref::gather_paged<double>(p, kv, vc), true);
    EXPECT_EQ(got.out, contiguous.out) << target << " paged";
    EXPECT_EQ(got.lse, contiguous.lse) << target << " paged lse";
  }
  {
    mc::LossProblem p;
    p.N = 9;
    p.V = 3001;
    p.label_smoothing = 0.1;
    const auto logits = uniform(static_cast<std::size_t>(p.N * p.V), -20, 20, 5);
    std::vector<std::int64_t> labels{0, -100, 3000, 17, -100, 5, 2999, -100, 1};
    const auto got = cpu.cross_entropy(p, mc::DType::f32, logits, labels, {}, true);
    const auto want = ref.cross_entropy(p, mc::DType::f64, logits, labels, {}, true);
    EXPECT_NEAR(got.loss, want.loss, 1e-5 * std::abs(want.loss)) << target;
    EXPECT_EQ(got.count, want.count) << target;
    expect_close(got.dlogits, want.dlogits, 1e-8, 1e-4, target + " cross-entropy dlogits");
    // With an upstream gradient per row (reduction none): NaN for the ignored rows is never read.
    p.reduction = mc::Reduction::none;
    const double nan = std::numeric_limits<double>::quiet_NaN();
    const std::vector<double> g{0.5, nan, -2, 4, nan, 0.25, 1e-3, nan, -1};
    const auto gu = cpu.cross_entropy_upstream(p, mc::DType::f32, logits, labels, {}, g);
    const auto wu = ref.cross_entropy_upstream(p, mc::DType::f64, logits, labels, {}, g);
    expect_close(gu.dlogits, wu.dlogits, 1e-8, 1e-4, target + " cross-entropy upstream dlogits");
  }
}

TEST(CpuKernels, everyCompiledSimdTargetAgreesWithTheReference) {
  const std::vector<std::int64_t> targets = hwy::SupportedAndGeneratedTargets();
  ASSERT_FALSE(targets.empty());
  for (const std::int64_t t : targets) {
    hwy::SetSupportedTargetsForTest(t);
    const std::string name = hwy::TargetName(t);
    ASSERT_EQ(mc::cpu::simd_target(), name) << "the dispatch did not follow the target mock";
    SCOPED_TRACE("Highway target " + name);
    check_operations(name);
  }
  hwy::SetSupportedTargetsForTest(0);
  std::cout << "checked " << targets.size()
            << " Highway targets; best here: " << mc::cpu::simd_target() << "\n";
}

// f32 softmax outputs of 8 MiB and more are streamed (non-temporal stores, a per-thread row
// buffer): rows whose length is not a multiple of the vector, padding and causal rows, rows with
// no visible key, all through that path.
TEST(CpuKernels, largeSoftmaxStreamsTheSameValues) {
  mc::SoftmaxProblem p;
  p.mask = padded_causal(640, 1027);
  p.mask.q_lens[1] = 0;  // a sequence with no valid query: all its rows are zero
  p.H = 2;
  p.scale = 1.3;
  ASSERT_GE(p.numel() * 4, std::int64_t{8} << 20) << "the case must take the streaming path";
  const auto x = uniform(static_cast<std::size_t>(p.numel()), -30, 30, 6);
  expect_close(impl("cpu").softmax(p, mc::DType::f32, x),
               impl("reference").softmax(p, mc::DType::f64, x), 1e-6, 1e-5, "softmax");
}

// attention.agreesWithReference failed about one CI run in twenty on cases like this one (found by
// a sweep of property seeds; this is seed 758070444's): scores near 100, two keys of a row nearly
// tied, so the output swings with the rounding of the scores. The naive fp32 reference happened
// to land 8e-6 from the exact value and the kernel's FMA dot 2.5e-5, beyond twice the naive error.
// Both are correct to the rounding of the formula: the check now also accepts an element within
// its first-order rounding bound (attention_rounding_bound), on every Highway target.
TEST(CpuKernels, illConditionedAttentionStaysWithinItsRoundingBound) {
  mc::AttentionCase c;
  c.problem.H = c.problem.Hkv = 1;
  c.problem.D = 2;
  c.problem.mask.B = 2;
  c.problem.mask.Lq = c.problem.mask.Lk = 63;
  c.problem.mask.window = mc::Window{8, 0};
  c.dtype = mc::DType::f32;
  c.style = mc::DataStyle::huge;
  c.data_seed = 124252;
  c.want_lse = false;
  const auto d = mc::make_data(c);
  const auto& p = c.problem;
  const auto e = mc::attention_expectation(p, c.dtype, d.q, d.k, d.v, false);
  const mc::Shape shape = mc::attention_out_shape(p);
  bool rule_alone_failed = false;
  for (const std::int64_t target : hwy::SupportedAndGeneratedTargets()) {
    hwy::SetSupportedTargetsForTest(target);
    SCOPED_TRACE(std::string("Highway target ") + hwy::TargetName(target));
    const auto got = impl("cpu").attention(p, c.dtype, d.q, d.k, d.v, false);
    const auto r =
        mc::check_close("out", shape, got.out, e.want.out, e.naive.out, c.dtype, e.rounding.out);
    EXPECT_TRUE(r.ok) << r.report();
    rule_alone_failed |=
        !mc::check_close("out", shape, got.out, e.want.out, e.naive.out, c.dtype).ok;
  }
  hwy::SetSupportedTargetsForTest(0);
  std::cout << "the FlashAttention rule alone " << (rule_alone_failed ? "rejects" : "accepts")
            << " this case on some target here\n";
}

// The backward splits a sequence's query rows into chunks of at least 512 (at most 4 per
// sequence) whose dK and dV are added in chunk order; the property cases (Lq <= 260) never have
// two. Sequences of 1100 and 551 rows (3 and 2 chunks), GQA 2:1, D not a multiple of the vector:
// right against the reference, and bitwise the same for 1, 2 and 3 threads.
TEST(CpuKernels, attentionBackwardAcrossChunksAndThreadCounts) {
  const auto& cpu = impl("cpu");
  const auto& ref = impl("reference");
  for (const bool causal : {true, false}) {
    SCOPED_TRACE(causal ? "padding + causal" : "padding + window (257, 64)");
    mc::AttentionProblem p;
    p.mask = padded_causal(1100, 1100);
    p.mask.causal = causal;
    if (!causal) p.mask.window = mc::Window{257, 64};
    p.H = 2;
    p.Hkv = 1;
    p.D = 24;
    const auto q = uniform(static_cast<std::size_t>(p.q_numel()), -1, 1, 21);
    const auto k = uniform(static_cast<std::size_t>(p.kv_numel()), -1, 1, 22);
    const auto v = uniform(static_cast<std::size_t>(p.kv_numel()), -1, 1, 23);
    const auto dout = uniform(static_cast<std::size_t>(p.q_numel()), -1, 1, 24);
    const int threads = omp_get_max_threads();
    omp_set_num_threads(2);
    const auto got = cpu.attention_backward(p, mc::DType::f32, q, k, v, dout);
    const auto want = ref.attention_backward(p, mc::DType::f64, q, k, v, dout);
    // dq of a row that sees one key is 0 by cancellation (ds = p (dp - delta) with p = 1), and
    // delta = <dout, out> rounds differently from dp: within the tolerance, not exactly 0.
    ASSERT_EQ(got.dq.size(), want.dq.size());
    int bad = 0;
    for (std::size_t i = 0; i < got.dq.size(); ++i)
      if (!(std::abs(got.dq[i] - want.dq[i]) <= 1e-5 + 1e-4 * std::abs(want.dq[i])) && ++bad < 5)
        ADD_FAILURE() << "dq[" << i << "] got " << got.dq[i] << " want " << want.dq[i];
    expect_close(got.dk, want.dk, 1e-5, 1e-4, "dk");
    expect_close(got.dv, want.dv, 1e-5, 1e-4, "dv");
    for (const int n : {1, 3}) {
      omp_set_num_threads(n);
      const auto again = cpu.attention_backward(p, mc::DType::f32, q, k, v, dout);
      EXPECT_TRUE(again.dq == got.dq && again.dk == got.dk && again.dv == got.dv)
          << n << " threads differ from 2";
    }
    omp_set_num_threads(threads);
  }
}

void check_huge_scores();

// Scores near 1e30 (finite, far beyond any model's): the softmax is still the reference's. The
// kernels computed exp(fl(s * c) - fl(m * c)) fused, whose exponents all carry the rounding of
// m * c, about 1e23 here: every weight of the row came out 0 (the row written as empty) or inf.
// Found through the deviation filter on attention.maskedKeysCannotLeak (huge garbage keys).
TEST(CpuKernels, hugeFiniteScoresKeepTheirSoftmax) {
  for (const std::int64_t target : hwy::SupportedAndGeneratedTargets()) {
    hwy::SetSupportedTargetsForTest(target);
    SCOPED_TRACE(std::string("Highway target ") + hwy::TargetName(target));
    check_huge_scores();
  }
  hwy::SetSupportedTargetsForTest(0);
}

void check_huge_scores() {
  for (const mc::DType t : {mc::DType::f32, mc::DType::bf16}) {
    SCOPED_TRACE(std::string(mc::to_string(t)));
    const auto round = [&](std::vector<double> v) {
      for (auto& x : v) x = mc::round_to(t, x);
      return v;
    };
    mc::AttentionProblem a;
    a.mask = padded_causal(5, 40);
    a.H = 2;
    a.D = 4;
    a.scale = 0.5;
    // Dots up to 4 * 3e15 * 3e15 = 3.6e31; keys differ by ~1e30, so each row has a clear winner
    // (weights 0 and 1, up to ties the test avoids by distinct key values).
    const auto q = round(uniform(static_cast<std::size_t>(a.q_numel()), 1e15, 3e15, 11));
    const auto k = round(uniform(static_cast<std::size_t>(a.kv_numel()), -3e15, 3e15, 12));
    const auto v = round(uniform(static_cast<std::size_t>(a.kv_numel()), -1, 1, 13));
    for (const double scale : {0.5, -0.5}) {
      a.scale = scale;
      const auto got = impl("cpu").attention(a, t, q, k, v, true);
      const auto want = impl("reference").attention(a, mc::DType::f64, q, k, v, true);
      expect_close(got.out, want.out, 1e-6, t == mc::DType::f32 ? 1e-5 : 1e-2, "attention out");
      expect_close(got.lse, want.lse, 0, 1e-5, "attention lse");
    }
    mc::SoftmaxProblem s;
    s.mask = padded_causal(7, 4500);  // rows of up to 3 blocks of 2048
    for (const double scale : {1e20, -1e20, 0.3}) {
      s.scale = scale;
      const auto x = round(uniform(static_cast<std::size_t>(s.numel()), -3e18, 3e18, 14));
      expect_close(impl("cpu").softmax(s, t, x), impl("reference").softmax(s, mc::DType::f64, x),
                   1e-6, t == mc::DType::f32 ? 1e-5 : 1e-2, "softmax");
    }
  }
}

}  // namespace
