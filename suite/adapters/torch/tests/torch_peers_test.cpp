// Tests of the LibTorch peers that run without a GPU: the mask translation rules, the packed
// segments, and the CPU peers (SDPA math, softmax + additive mask, cross_entropy + backward) in
// fp64 against the fp64 reference. The CUDA backends share every line but the op call; the
// benchmark checks them on the GPU the same way (rows with at least one visible key).
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "maskcheck/adapters/torch_peers.hpp"
#include "maskcheck/reference/reference.hpp"

namespace mc = maskcheck;
namespace tp = maskcheck::torch_peers;

namespace {

mc::MaskSpec spec(std::int64_t B, std::int64_t Lq, std::int64_t Lk) {
  mc::MaskSpec m;
  m.B = B;
  m.Lq = Lq;
  m.Lk = Lk;
  return m;
}

std::vector<double> random_values(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(-2.0, 2.0);
  std::vector<double> v(n);
  for (auto& x : v) x = u(rng);
  return v;
}

// ---- translation rules ------------------------------------------------------------------------

TEST(TorchMaskTranslation, noMaskIsNoArgumentForEveryBackend) {
  for (auto b : tp::kAllSdpaBackends) {
    const tp::TorchMask t = tp::translate_mask(spec(2, 8, 8), b);
    EXPECT_EQ(t.form, tp::MaskForm::none) << tp::to_string(b);
    EXPECT_TRUE(t.unsupported.empty());
  }
  EXPECT_EQ(tp::translate_softmax_mask(spec(2, 8, 8)).form, tp::MaskForm::none);
}

TEST(TorchMaskTranslation, isCausalOnlyWhereTopLeftEqualsBottomRight) {
  mc::MaskSpec square = spec(1, 8, 8);
  square.causal = true;
  for (auto b : tp::kAllSdpaBackends)
    EXPECT_EQ(tp::translate_mask(square, b).form, tp::MaskForm::is_causal) << tp::to_string(b);

  mc::MaskSpec wide = spec(1, 4, 8);  // bottom-right: query 0 sees keys 0..4; is_causal: key 0
  wide.causal = true;
  EXPECT_EQ(tp::translate_mask(wide, tp::SdpaBackend::math).form, tp::MaskForm::additive);
  EXPECT_EQ(tp::translate_mask(wide, tp::SdpaBackend::efficient).form, tp::MaskForm::additive);
  EXPECT_NE(tp::translate_mask(wide, tp::SdpaBackend::flash).unsupported, "");
  wide.alignment = mc::Alignment::top_left;  // even top-left goes through the tensor
  EXPECT_EQ(tp::translate_mask(wide, tp::SdpaBackend::cudnn).form, tp::MaskForm::additive);

  mc::MaskSpec padded = square;
  padded.k_lens = {6};
  padded.q_lens = {6};
  EXPECT_EQ(tp::translate_mask(padded, tp::SdpaBackend::math).form, tp::MaskForm::additive);
  EXPECT_EQ(tp::translate_softmax_mask(square).form, tp::MaskForm::additive);
}

TEST(TorchMaskTranslation, flashTakesWindowsAndPackedSegmentsButNoTensor) {
  mc::MaskSpec w = spec(2, 16, 16);
  w.causal = true;
  w.window = mc::Window{4, mc::kUnbounded};
  const tp::TorchMask t = tp::translate_mask(w, tp::SdpaBackend::flash);
  EXPECT_EQ(t.form, tp::MaskForm::window);
  EXPECT_EQ(t.window_left, 4);
  EXPECT_EQ(t.window_right, 0);  // causal folded in
  EXPECT_EQ(tp::translate_mask(w, tp::SdpaBackend::efficient).form, tp::MaskForm::additive);

  mc::MaskSpec pad = spec(2, 16, 16);
  pad.q_lens = {16, 9};
  pad.k_lens = {16, 9};
  pad.causal = true;
  const tp::TorchMask dense = tp::translate_mask(pad, tp::SdpaBackend::flash);
  EXPECT_NE(dense.unsupported.find("packed"), std::string::npos) << dense.unsupported;
  const tp::TorchMask packed = tp::translate_mask(pad, tp::SdpaBackend::flash, tp::Layout::packed);
  EXPECT_EQ(packed.form, tp::MaskForm::varlen);
  EXPECT_TRUE(packed.is_causal);
  EXPECT_NE(tp::translate_mask(pad, tp::SdpaBackend::math, tp::Layout::packed).unsupported, "");

  mc::MaskSpec ragged = pad;  // a segment with q_len != k_len and causal: not mapped
  ragged.k_lens = {16, 12};
  EXPECT_NE(tp::translate_mask(ragged, tp::SdpaBackend::flash, tp::Layout::packed).unsupported, "");
}

TEST(TorchMaskTranslation, packedSegmentsFollowDocumentsOrSequences) {
  mc::MaskSpec m = spec(2, 8, 8);
  m.q_lens = {8, 5};
  m.k_lens = {8, 5};
  tp::PackedSegments s = tp::packed_segments(m);
  EXPECT_EQ(s.cu_q, (std::vector<std::int32_t>{0, 8, 13}));
  EXPECT_EQ(s.max_q, 8);
  m.cu_seqlens_q = {{0, 3, 8}, {0, 5}};
  m.cu_seqlens_k = m.cu_seqlens_q;
  s = tp::packed_segments(m);
  EXPECT_EQ(s.cu_q, (std::vector<std::int32_t>{0, 3, 8, 13}));
  EXPECT_EQ(s.cu_k, s.cu_q);
  EXPECT_EQ(s.max_q, 5);
  EXPECT_EQ(s.total_q(), 13);
}

TEST(TorchPeers, cudaBackendsSayWhyNotOnCpu) {
  mc::AttentionProblem p;
  p.mask = spec(1, 8, 8);
  p.D = 8;
  EXPECT_NE(tp::sdpa_supports(tp::SdpaBackend::flash, tp::Layout::padded, p, mc::DType::f16,
                              tp::Device::cpu),
            "");
  EXPECT_EQ(tp::sdpa_supports(tp::SdpaBackend::math, tp::Layout::padded, p, mc::DType::f64,
                              tp::Device::cpu),
            "");
  std::vector<double> q(64);
  EXPECT_THROW(tp::SdpaPeer(tp::SdpaBackend::efficient, tp::Layout::padded, p, mc::DType::f32,
                            tp::Device::cpu, q.data(), q.data(), q.data()),
               tp::Unsupported);
}

// ---- math SDPA on the CPU against the reference -------------------------------------------

struct AttentionCaseSpec {
  std::string name;
  mc::AttentionProblem p;
};

std::vector<AttentionCaseSpec> attention_cases() {
  std::vector<AttentionCaseSpec> cases;
  auto base = [](std::int64_t B, std::int64_t Lq, std::int64_t Lk) {
    mc::AttentionProblem p;
    p.mask = spec(B, Lq, Lk);
    p.H = 4;
    p.Hkv = 2;  // grouped-query: enable_gqa
    p.D = 8;
    return p;
  };
  cases.push_back({"none", base(2, 7, 9)});
  auto c = base(2, 9, 9);
  c.mask.causal = true;
  cases.push_back({"causal square (is_causal)", c});
  c = base(2, 5, 9);
  c.mask.causal = true;
  cases.push_back({"causal bottom-right Lq<Lk (tensor)", c});
  c.mask.alignment = mc::Alignment::top_left;
  cases.push_back({"causal top-left Lq<Lk (tensor)", c});
  c = base(3, 10, 10);
  c.mask.q_lens = {10, 6, 0};
  c.mask.k_lens = {10, 6, 3};
  c.mask.causal = true;
  cases.push_back({"padding+causal", c});
  c = base(2, 12, 12);
  c.mask.causal = true;
  c.mask.window = mc::Window{3, mc::kUnbounded};
  cases.push_back({"window(3, 0)", c});
  c = base(2, 12, 12);
  c.mask.causal = true;
  c.mask.cu_seqlens_q = {{0, 4, 12}, {0, 1, 5, 12}};
  c.mask.cu_seqlens_k = c.mask.cu_seqlens_q;
  cases.push_back({"documents+causal", c});
  return cases;
}

TEST(TorchPeers, mathSdpaMatchesTheReferenceOnRowsWithVisibleKeys) {
  for (const auto& c : attention_cases()) {
    SCOPED_TRACE(c.name);
    const mc::AttentionProblem& p = c.p;
    const auto q = random_values(static_cast<std::size_t>(p.q_numel()), 1);
    const auto k = random_values(static_cast<std::size_t>(p.kv_numel()), 2);
    const auto v = random_values(static_cast<std::size_t>(p.kv_numel()), 3);
    std::vector<double> want(q.size());
    mc::ref::attention_forward<double, double>(p, q, k, v, std::span<double>(want),
                                               std::span<double>());
    tp::SdpaPeer peer(tp::SdpaBackend::math, tp::Layout::padded, p, mc::DType::f64, tp::Device::cpu,
                      q.data(), k.data(), v.data());
    peer.run();
    const std::vector<double> got = peer.output();
    ASSERT_EQ(got.size(), want.size());
    std::vector<double> copied(got.size());
    peer.copy_output(copied.data());  // the dtype's storage, contiguous (fp64 here)
    EXPECT_EQ(copied, got);
    const mc::FlatMask flat(p.mask);
    int compared = 0;
    for (std::int64_t b = 0; b < p.mask.B; ++b)
      for (std::int64_t h = 0; h < p.H; ++h)
        for (std::int64_t i = 0; i < p.mask.Lq; ++i) {
          if (mc::visible_keys(flat.view(), b, i).empty()) continue;
          ++compared;
          for (std::int64_t d = 0; d < p.D; ++d) {
            const std::size_t idx =
                static_cast<std::size_t>(((b * p.H + h) * p.mask.Lq + i) * p.D + d);
            ASSERT_NEAR(got[idx], want[idx], 1e-10)
                << "b=" << b << " h=" << h << " q=" << i << " d=" << d << " (" << peer.description()
                << ")";
          }
        }
    EXPECT_GT(compared, 0);
  }
}

// ---- the public op (dispatch) on the CPU ------------------------------------------------------

TEST(TorchMaskTranslation, dispatchTakesTheBooleanKeepMask) {
  mc::MaskSpec pad = spec(2, 16, 16);
  pad.q_lens = {16, 9};
  pad.k_lens = {16, 9};
  pad.causal = true;
  const tp::TorchMask t = tp::translate_mask(pad, tp::SdpaBackend::dispatch);
  EXPECT_EQ(t.form, tp::MaskForm::boolean);
  EXPECT_FALSE(t.is_causal);
  EXPECT_NE(tp::translate_mask(pad, tp::SdpaBackend::dispatch, tp::Layout::packed).unsupported, "");
  mc::AttentionProblem p;
  p.mask = pad;
  p.D = 8;
  for (mc::DType dt : {mc::DType::f32, mc::DType::bf16})
    EXPECT_EQ(
        tp::sdpa_supports(tp::SdpaBackend::dispatch, tp::Layout::padded, p, dt, tp::Device::cpu),
        "");
}

// The public at::scaled_dot_product_attention with the boolean mask: on the CPU LibTorch picks
// its flash kernel, which takes the mask; same cases as the math peer.
TEST(TorchPeers, dispatchSdpaMatchesTheReferenceOnRowsWithVisibleKeys) {
  for (const auto& c : attention_cases()) {
    SCOPED_TRACE(c.name);
    const mc::AttentionProblem& p = c.p;
    const auto q = random_values(static_cast<std::size_t>(p.q_numel()), 1);
    const auto k = random_values(static_cast<std::size_t>(p.kv_numel()), 2);
    const auto v = random_values(static_cast<std::size_t>(p.kv_numel()), 3);
    std::vector<double> want(q.size());
    mc::ref::attention_forward<double, double>(p, q, k, v, std::span<double>(want),
                                               std::span<double>());
    tp::SdpaPeer peer(tp::SdpaBackend::dispatch, tp::Layout::padded, p, mc::DType::f64,
                      tp::Device::cpu, q.data(), k.data(), v.data());
    EXPECT_NE(peer.description().find("scaled_dot_product_attention -> "), std::string::npos)
        << peer.description();
    peer.run();
    const std::vector<double> got = peer.output();
    ASSERT_EQ(got.size(), want.size());
    const mc::FlatMask flat(p.mask);
    for (std::int64_t b = 0; b < p.mask.B; ++b)
      for (std::int64_t h = 0; h < p.H; ++h)
        for (std::int64_t i = 0; i < p.mask.Lq; ++i) {
          if (mc::visible_keys(flat.view(), b, i).empty()) continue;
          for (std::int64_t d = 0; d < p.D; ++d) {
            const std::size_t idx =
                static_cast<std::size_t>(((b * p.H + h) * p.mask.Lq + i) * p.D + d);
            ASSERT_NEAR(got[idx], want[idx], 1e-10)
                << "b=" << b << " h=" << h << " q=" << i << " d=" << d << " (" << peer.description()
                << ")";
          }
        }
  }
}

// ---- softmax + additive mask --------------------------------------------------------------

TEST(TorchPeers, softmaxPlusAdditiveMaskMatchesTheReference) {
  mc::SoftmaxProblem p;
  p.mask = spec(2, 6, 11);
  p.H = 3;
  p.scale = 0.5;
  p.mask.k_lens = {11, 4};
  p.mask.causal = true;
  const auto x = random_values(static_cast<std::size_t>(p.numel()), 4);
  std::vector<double> want(x.size()), got(x.size());
  mc::ref::masked_softmax<double, double>(p, x, std::span<double>(want));
  tp::SoftmaxPeer peer(p, mc::DType::f64, tp::Device::cpu, x.data(), got.data());
  EXPECT_EQ(peer.mask().form, tp::MaskForm::additive);
  peer.run();
  const mc::FlatMask flat(p.mask);
  for (std::int64_t b = 0; b < p.mask.B; ++b)
    for (std::int64_t h = 0; h < p.H; ++h)
      for (std::int64_t i = 0; i < p.mask.Lq; ++i) {
        if (mc::visible_keys(flat.view(), b, i).empty()) continue;
        for (std::int64_t k = 0; k < p.mask.Lk; ++k) {
          const std::size_t idx =
              static_cast<std::size_t>(((b * p.H + h) * p.mask.Lq + i) * p.mask.Lk + k);
          ASSERT_NEAR(got[idx], want[idx], 1e-12)
              << "b=" << b << " h=" << h << " q=" << i << " k=" << k;
        }
      }
}

// ---- cross-entropy forward + backward ------------------------------------------------------

TEST(TorchPeers, crossEntropyForwardBackwardMatchesTheReference) {
  for (mc::Reduction red : {mc::Reduction::mean, mc::Reduction::sum, mc::Reduction::none}) {
    for (double smoothing : {0.0, 0.1}) {
      SCOPED_TRACE(mc::to_string(red) + " smoothing " + std::to_string(smoothing));
      mc::LossProblem p;
      p.N = 9;
      p.V = 13;
      p.reduction = red;
      p.label_smoothing = smoothing;
      const auto logits = random_values(static_cast<std::size_t>(p.N * p.V), 5);
      std::vector<std::int64_t> labels(static_cast<std::size_t>(p.N));
      for (std::int64_t i = 0; i < p.N; ++i)
        labels[i] = i % 3 == 1 ? p.ignore_index : (i * 5) % p.V;
      std::vector<double> want_grad(logits.size());
      const auto want = mc::ref::cross_entropy<double, double>(p, logits, labels, {},
                                                               std::span<double>(want_grad));
      tp::CrossEntropyPeer peer(p, mc::DType::f64, tp::Device::cpu, logits.data(), labels.data());
      for (int rep = 0; rep < 2; ++rep) {  // the gradient is cleared, not accumulated
        peer.run();
        EXPECT_NEAR(peer.loss(), want.loss, 1e-12);
        const auto got = peer.grad();
        ASSERT_EQ(got.size(), want_grad.size());
        for (std::size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], want_grad[i], 1e-12) << i;
      }
      const auto rows = peer.grad_rows(2, 4);
      ASSERT_EQ(rows.size(), static_cast<std::size_t>(2 * p.V));
      EXPECT_EQ(rows[0], peer.grad()[static_cast<std::size_t>(2 * p.V)]);
    }
  }
  mc::LossProblem w;
  w.N = 2;
  w.V = 3;
  w.weighted = true;
  EXPECT_NE(tp::cross_entropy_supports(w, mc::DType::f32, tp::Device::cpu), "");
}

}  // namespace
