// LibTorch as implementations under test (see torch_impl.hpp). Inputs arrive as host doubles that
// are exact in the case's dtype; each adapter copies them into LibTorch tensors of that dtype,
// calls LibTorch the way its users do, and reads the result back. Masks reach LibTorch only
// through the one translation (mask_translation.cpp).
#include "maskcheck/adapters/torch_impl.hpp"

#include <ATen/ATen.h>
#include <ATen/core/Reduction.h>
#include <c10/core/GradMode.h>
#include <c10/core/InferenceMode.h>
#include <torch/headeronly/version.h>
#include <torch/nn/functional/activation.h>

#include <cmath>

#include "maskcheck/adapters/torch_peers.hpp"
#include "maskcheck/reference/masks.hpp"
#include "maskcheck/reference/predicate.hpp"
#include "torch_common.hpp"

namespace maskcheck {
namespace {

namespace tp = torch_peers;
using namespace torch_peers::torch_detail;

std::string version() {
  const std::string note = tp::guard_onednn_amx();
  return std::string("LibTorch ") + TORCH_VERSION + (note.empty() ? "" : " (" + note + ")");
}

// Host doubles -> a CPU tensor of dtype t that owns its memory (the values are exact in t).
at::Tensor host_tensor(std::span<const double> x, at::IntArrayRef sizes, DType t) {
  return at::from_blob(const_cast<double*>(x.data()), sizes, at::kDouble)
      .to(at::TensorOptions().dtype(scalar_type(t)), /*non_blocking=*/false, /*copy=*/true);
}

// LibTorch's errors come out as Unsupported / TorchError with the adapter's name.
template <class F>
decltype(auto) call_torch(const std::string& who, F&& f) {
  try {
    return guarded(who, std::forward<F>(f));
  } catch (const tp::Unsupported& e) {
    throw Unsupported(who + ": " + e.what());
  }
}

// Padded keys of sequence b as MHA's key_padding_mask wants them: [B, Lk], true = ignore.
at::Tensor key_padding_mask(const MaskSpec& m) {
  std::vector<std::int32_t> lens(static_cast<std::size_t>(m.B));
  for (std::int64_t b = 0; b < m.B; ++b) lens[b] = static_cast<std::int32_t>(m.k_len(b));
  std::vector<std::uint8_t> keep = ref::keep_from_lengths(lens, m.Lk, m.padding);
  return at::from_blob(keep.data(), {m.B, m.Lk}, at::kByte)
      .to(at::kBool, false, true)
      .logical_not();
}

// Causal / window / prefix / chunk as the C++ multi_head_attention_forward's additive attn_mask
// [Lq, Lk]: the spec has no padding, no documents and one prefix length here (translate_for), so
// every sequence has the same mask.
at::Tensor mha_attn_mask(const MaskSpec& m, DType t, double fill) {
  MaskSpec one = m;
  one.B = 1;
  one.q_lens.clear();  // no padding here: every length is the full one
  one.k_lens.clear();
  if (!one.prefix_lens.empty()) one.prefix_lens.resize(1);  // all equal here (translate_for)
  return additive_mask(one, t, at::kCPU, fill).reshape({m.Lq, m.Lk});
}

// The front door of every attention adapter: the problem is supported, the inputs have its sizes.
void require_attention_inputs(const Support& s, const AttentionProblem& p,
                              std::span<const double> q, std::span<const double> k,
                              std::span<const double> v) {
  if (!s) throw Unsupported(s.reason);
  validate_attention_inputs(p, q.size(), k.size(), v.size());
}

// dq, dk, dv of forward(q, k, v) for the upstream gradient dout through autograd, the way
// training runs a backward; zeros for a gradient autograd leaves undefined (an empty tensor).
// The tensors live on `dev` (leaves there, as a training step's parameters' activations do).
template <class F>
AttentionGradients autograd_backward(const AttentionProblem& p, DType t, std::span<const double> q,
                                     std::span<const double> k, std::span<const double> v,
                                     std::span<const double> dout, F&& forward,
                                     at::Device dev = at::kCPU) {
  require_size("dout", dout.size(), p.q_numel());
  c10::AutoGradMode grad(true);
  const std::int64_t B = p.mask.B, Lq = p.mask.Lq, Lk = p.mask.Lk, H = p.H, Hkv = p.Hkv;
  const std::int64_t D = p.D;
  at::Tensor qt = host_tensor(q, {B, H, Lq, D}, t).to(dev).requires_grad_(true);
  at::Tensor kt = host_tensor(k, {B, Hkv, Lk, D}, t).to(dev).requires_grad_(true);
  at::Tensor vt = host_tensor(v, {B, Hkv, Lk, D}, t).to(dev).requires_grad_(true);
  const at::Tensor gt = host_tensor(dout, {B, H, Lq, D}, t).to(dev);
  AttentionGradients g;
  if (qt.numel() == 0 || kt.numel() == 0) {
    g.dq.assign(static_cast<std::size_t>(p.q_numel()), 0.0);
    g.dk.assign(static_cast<std::size_t>(p.kv_numel()), 0.0);
    g.dv.assign(g.dk.size(), 0.0);
    return g;
  }
  const at::Tensor out = forward(qt, kt, vt);
  out.backward(gt);
  auto grad_of = [](const at::Tensor& x) {
    return x.grad().defined() ? to_host_doubles(x.grad())
                              : std::vector<double>(static_cast<std::size_t>(x.numel()), 0.0);
  };
  g.dq = grad_of(qt);
  g.dk = grad_of(kt);
  g.dv = grad_of(vt);
  return g;
}

// ---- attention on the CPU -------------------------------------------------------------------

class TorchAttention : public Implementation {
 public:
  // cuda: the SDPA conventions on the GPU through the public op (LibTorch's dispatcher picks the
  // backend, as for its users), forward and backward: torch:cuda-sdpa-bool and so on.
  explicit TorchAttention(tp::Convention c, bool cuda = false)
      : c_(c), dev_(cuda ? at::kCUDA : at::kCPU) {}
  std::string name() const override {
    return (dev_.is_cuda() ? "torch:cuda-" : "torch:") + std::string(tp::to_string(c_));
  }
  std::string description() const override {
    const std::string where =
        dev_.is_cuda() ? "CUDA (the dispatcher picks the backend), " : "CPU, ";
    switch (c_) {
      case tp::Convention::sdpa_bool:
        return "at::scaled_dot_product_attention with a boolean attn_mask (true = attend), " +
               where + version();
      case tp::Convention::sdpa_additive:
        return "at::scaled_dot_product_attention with an additive 0/-inf attn_mask, " + where +
               version();
      case tp::Convention::sdpa_is_causal:
        return "at::scaled_dot_product_attention with is_causal=True (top-left aligned), " + where +
               version();
      case tp::Convention::flash_cpu:
        return "at::_scaled_dot_product_flash_attention_for_cpu with an additive attn_mask, "
               "returning the log-sum-exp (K/V heads expanded for GQA), " +
               version();
      case tp::Convention::mha:
        return "torch::nn::functional::multi_head_attention_forward with identity projections, "
               "key_padding_mask (true = ignore) and an additive attn_mask [Lq, Lk], CPU (fp32 and "
               "fp64: its key_padding_mask fill dispatches on those only), " +
               version();
    }
    return version();
  }
  std::vector<Op> ops() const override { return {Op::attention}; }
  std::vector<DType> dtypes(Op op) const override {
    if (c_ == tp::Convention::mha) return {DType::f64, DType::f32};
    return Implementation::dtypes(op);
  }
  bool third_party() const override { return true; }
  bool attention_lse() const override { return c_ == tp::Convention::flash_cpu; }

  Support attention_support(const AttentionProblem& p, DType, bool want_lse) const override {
    p.validate();
    if (want_lse && c_ != tp::Convention::flash_cpu)
      return Support::no("returns no log-sum-exp (torch:sdpa-flash-cpu reads the flash kernel's)");
    if (c_ == tp::Convention::flash_cpu && (p.mask.Lq == 0 || p.mask.Lk == 0 || p.H == 0))
      return Support::no(
          "an empty query, key or head axis kills the process: the explicit op divides by zero "
          "(SIGFPE) in LibTorch 2.11, where the public scaled_dot_product_attention returns "
          "early");
    if (c_ == tp::Convention::mha) {
      if (p.H != p.Hkv)
        return Support::no("multi_head_attention_forward has one K/V head per query head");
      if (p.scale && *p.scale != 1.0 / std::sqrt(static_cast<double>(p.D)))
        return Support::no("multi_head_attention_forward always scales by 1/sqrt(head_dim)");
    }
    const tp::TorchMask m = tp::translate_for(c_, p.mask);
    if (!m.unsupported.empty()) return Support::no(m.unsupported);
    return Support::yes();
  }

  AttentionResult attention(const AttentionProblem& p, DType t, std::span<const double> q,
                            std::span<const double> k, std::span<const double> v,
                            bool want_lse) const override {
    require_attention_inputs(supports_attention(p, t, want_lse), p, q, k, v);
    const tp::TorchMask m = tp::translate_for(c_, p.mask);
    return call_torch(name(), [&] {
      c10::InferenceMode inference;
      const std::int64_t B = p.mask.B, Lq = p.mask.Lq, Lk = p.mask.Lk, H = p.H, Hkv = p.Hkv;
      const std::int64_t D = p.D;
      const at::Tensor qt = host_tensor(q, {B, H, Lq, D}, t).to(dev_);
      const at::Tensor kt = host_tensor(k, {B, Hkv, Lk, D}, t).to(dev_);
      const at::Tensor vt = host_tensor(v, {B, Hkv, Lk, D}, t).to(dev_);
      at::Tensor lse;
      const at::Tensor out = run(p, t, m, qt, kt, vt, &lse);
      AttentionResult r;
      r.out = to_host_doubles(out);
      if (want_lse) r.lse = to_host_doubles(lse);
      return r;
    });
  }

  // A paged KV cache the way users without a paged kernel serve one: the pages gathered into the
  // padded layout with index_select (the keys past a sequence's length from an appended zero
  // row), then the convention's forward. The SDPA conventions only (not MHA, not CUDA).
  Support supports_attention_paged(const AttentionProblem& p, const PagedKv& kv, DType t,
                                   bool want_lse) const override {
    kv.validate(p);
    if (dev_.is_cuda() || c_ == tp::Convention::mha)
      return Support::no(name() + " does not read a paged KV cache (the CPU SDPA conventions do)");
    return supports_attention(p, t, want_lse);
  }
  AttentionResult attention_paged(const AttentionProblem& p, const PagedKv& kv, DType t,
                                  std::span<const double> q, std::span<const double> k_cache,
                                  std::span<const double> v_cache, bool want_lse) const override {
    validate_paged_inputs(p, kv, q.size(), k_cache.size(), v_cache.size());
    if (const Support s = supports_attention_paged(p, kv, t, want_lse); !s)
      throw Unsupported(s.reason);
    const tp::TorchMask m = tp::translate_for(c_, p.mask);
    const std::int64_t B = p.mask.B, Lq = p.mask.Lq, Lk = p.mask.Lk, H = p.H, Hkv = p.Hkv;
    const std::int64_t D = p.D, P = kv.page_size, slots = kv.num_pages * P;
    std::vector<std::int64_t> index(static_cast<std::size_t>(B * Lk),
                                    slots);  // slots: the zero row
    for (std::int64_t b = 0; b < B; ++b)
      for (std::int64_t j = 0; j < p.mask.k_len(b); ++j)
        index[static_cast<std::size_t>(b * Lk + j)] = kv.slot(b, j);
    return call_torch(name(), [&] {
      c10::InferenceMode inference;
      const at::Tensor idx = at::from_blob(index.data(), {B * Lk}, at::kLong).clone();
      auto gather = [&](std::span<const double> cache) {
        const at::Tensor rows =
            at::cat({host_tensor(cache, {slots, Hkv * D}, t),
                     at::zeros({1, Hkv * D}, at::TensorOptions().dtype(scalar_type(t)))});
        return rows.index_select(0, idx)
            .reshape({B, Lk, Hkv, D})
            .permute({0, 2, 1, 3})
            .contiguous();
      };
      at::Tensor lse;
      const at::Tensor out =
          run(p, t, m, host_tensor(q, {B, H, Lq, D}, t), gather(k_cache), gather(v_cache), &lse);
      AttentionResult r;
      r.out = to_host_doubles(out);
      if (want_lse) r.lse = to_host_doubles(lse);
      return r;
    });
  }

  // Backward through autograd, the way training runs it: the forward's graph (the SDPA
  // conventions' at::scaled_dot_product_attention, the explicit CPU flash op with K/V repeated for
  // GQA, multi_head_attention_forward) differentiated with dout as its grad_outputs.
  Support attention_backward_support(const AttentionProblem& p, DType t) const override {
    if (c_ == tp::Convention::sdpa_is_causal && p.mask.Lq != p.mask.Lk &&
        tp::translate_for(c_, p.mask).is_causal)
      return Support::no(
          "is_causal=True is top-left aligned, bottom-right was asked and Lq != Lk: the forward "
          "reports this as the named deviation top_left_causal; backward calls have no "
          "deviation filter, so these cases are declined");
    return supports_attention(p, t, false);
  }
  AttentionGradients attention_backward(const AttentionProblem& p, DType t,
                                        std::span<const double> q, std::span<const double> k,
                                        std::span<const double> v,
                                        std::span<const double> dout) const override {
    require_attention_inputs(supports_attention_backward(p, t), p, q, k, v);
    const tp::TorchMask m = tp::translate_for(c_, p.mask);
    return call_torch(name(), [&] {
      return autograd_backward(
          p, t, q, k, v, dout,
          [&](at::Tensor qt, at::Tensor kt, at::Tensor vt) {
            return run(p, t, m, qt, kt, vt, nullptr);
          },
          dev_);
    });
  }

 private:
  // The convention's forward (recorded by autograd when grad mode is on); the flash op's
  // log-sum-exp in *lse when asked.
  at::Tensor run(const AttentionProblem& p, DType t, const tp::TorchMask& m, const at::Tensor& qt,
                 at::Tensor kt, at::Tensor vt, at::Tensor* lse) const {
    const std::int64_t H = p.H, Hkv = p.Hkv;
    const double scale = p.effective_scale();
    std::optional<at::Tensor> mask;
    if (m.form == tp::MaskForm::boolean) mask = keep_mask(p.mask, dev_);
    if (m.form == tp::MaskForm::additive) mask = additive_mask(p.mask, t, dev_, m.fill);
    switch (c_) {
      case tp::Convention::sdpa_bool:
      case tp::Convention::sdpa_additive:
      case tp::Convention::sdpa_is_causal:
        break;
      case tp::Convention::flash_cpu: {
        if (H != Hkv) {  // the op has no grouped-query attention
          kt = kt.repeat_interleave(H / Hkv, 1);
          vt = vt.repeat_interleave(H / Hkv, 1);
        }
        auto res = at::_scaled_dot_product_flash_attention_for_cpu(qt, kt, vt, 0.0, m.is_causal,
                                                                   mask, scale);
        if (lse) *lse = std::get<1>(res);
        return std::get<0>(res);
      }
      case tp::Convention::mha:
        return mha(p, t, m, qt, kt, vt);
    }
    return at::scaled_dot_product_attention(qt, kt, vt, mask, 0.0, m.is_causal, scale,
                                            /*enable_gqa=*/H != Hkv);
  }

  // q [B, H, Lq, D] -> MHA's [Lq, B, E] with E = H * D, identity projections, and back.
  static at::Tensor mha(const AttentionProblem& p, DType t, const tp::TorchMask& m,
                        const at::Tensor& qt, const at::Tensor& kt, const at::Tensor& vt) {
    namespace F = torch::nn::functional;
    const std::int64_t B = p.mask.B, Lq = p.mask.Lq, Lk = p.mask.Lk, H = p.H, D = p.D;
    const std::int64_t E = H * D;
    const auto opts = at::TensorOptions().dtype(scalar_type(t));
    const at::Tensor query = qt.permute({2, 0, 1, 3}).reshape({Lq, B, E});
    const at::Tensor key = kt.permute({2, 0, 1, 3}).reshape({Lk, B, E});
    const at::Tensor value = vt.permute({2, 0, 1, 3}).reshape({Lk, B, E});
    F::MultiheadAttentionForwardFuncOptions o(
        E, H, at::eye(E, opts).repeat({3, 1}), at::zeros({3 * E}, opts), at::Tensor(), at::Tensor(),
        /*add_zero_attn=*/false, /*dropout_p=*/0.0, at::eye(E, opts), at::zeros({E}, opts));
    o.training(false).need_weights(false);
    if (m.key_padding) o.key_padding_mask(key_padding_mask(p.mask));
    if (m.attn_mask) o.attn_mask(mha_attn_mask(p.mask, t, m.fill));
    const at::Tensor out = std::get<0>(F::multi_head_attention_forward(query, key, value, o));
    return out.reshape({Lq, B, H, D}).permute({1, 2, 0, 3});
  }

  tp::Convention c_;
  at::Device dev_;
};

// ---- softmax(x * scale + mask) ----------------------------------------------------------------

// The mask as Hugging Face models add it to scores: support, and z + the additive 0/-inf mask.
Support softmax_mask_support(const MaskSpec& mask) {
  const tp::TorchMask m = tp::translate_softmax_mask(mask);
  return m.unsupported.empty() ? Support::yes() : Support::no(m.unsupported);
}
at::Tensor add_softmax_mask(at::Tensor z, const MaskSpec& mask, DType t) {
  const tp::TorchMask m = tp::translate_softmax_mask(mask);
  return m.form == tp::MaskForm::additive ? z + additive_mask(mask, t, at::kCPU, m.fill) : z;
}

class TorchSoftmax : public Implementation {
 public:
  std::string name() const override { return "torch:softmax"; }
  std::string description() const override {
    return "at::softmax(x * scale + additive 0/-inf mask, -1), the way Hugging Face models apply "
           "a mask, CPU, " +
           version();
  }
  std::vector<Op> ops() const override { return {Op::softmax}; }
  bool third_party() const override { return true; }
  Support supports_softmax(const SoftmaxProblem& p, DType) const override {
    p.validate();
    return softmax_mask_support(p.mask);
  }
  std::vector<double> softmax(const SoftmaxProblem& p, DType t,
                              std::span<const double> x) const override {
    if (const Support s = supports_softmax(p, t); !s) throw Unsupported(s.reason);
    require_size("x", x.size(), p.numel());
    return call_torch(name(), [&] {
      c10::InferenceMode inference;
      at::Tensor z = host_tensor(x, {p.mask.B, p.H, p.mask.Lq, p.mask.Lk}, t);
      if (p.scale != 1.0) z = z * p.scale;
      return to_host_doubles(at::softmax(add_softmax_mask(z, p.mask, t), -1));
    });
  }
};

// ---- eager attention: matmul, additive mask, softmax, matmul ----------------------------------

// Attention as model code writes it without SDPA (Hugging Face's eager path): the scores
// q k^T * scale plus the additive 0/-inf mask of torch:softmax, at::softmax, times v; K and V
// repeated for GQA. The backward is autograd through those ops: the gradient a model trained
// without a fused kernel gets.
class TorchEagerAttention : public Implementation {
 public:
  std::string name() const override { return "torch:matmul-softmax"; }
  std::string description() const override {
    return "at::matmul(q, k^T) * scale, soft-capped by cap * at::tanh(s / cap), plus the ALiBi "
           "bias, plus the additive 0/-inf mask, at::softmax (with the sink logits as one more "
           "column, dropped after it, as gpt-oss does), at::matmul with v (K/V repeated for GQA), "
           "forward and backward through autograd, CPU, " +
           version();
  }
  std::vector<Op> ops() const override { return {Op::attention}; }
  bool attention_lse() const override { return false; }
  bool third_party() const override { return true; }
  ScoreModifierSupport score_modifiers() const override { return ScoreModifierSupport::all(); }
  Support attention_support(const AttentionProblem& p, DType, bool want_lse) const override {
    p.validate();
    if (want_lse) return Support::no("returns no log-sum-exp");
    return softmax_mask_support(p.mask);
  }
  AttentionResult attention(const AttentionProblem& p, DType t, std::span<const double> q,
                            std::span<const double> k, std::span<const double> v,
                            bool want_lse) const override {
    require_attention_inputs(supports_attention(p, t, want_lse), p, q, k, v);
    return call_torch(name(), [&] {
      c10::InferenceMode inference;
      const std::int64_t B = p.mask.B, Lq = p.mask.Lq, Lk = p.mask.Lk, D = p.D;
      return AttentionResult{to_host_doubles(run(p, t, host_tensor(q, {B, p.H, Lq, D}, t),
                                                 host_tensor(k, {B, p.Hkv, Lk, D}, t),
                                                 host_tensor(v, {B, p.Hkv, Lk, D}, t))),
                             {}};
    });
  }
  Support attention_backward_support(const AttentionProblem& p, DType t) const override {
    return supports_attention(p, t, false);
  }
  AttentionGradients attention_backward(const AttentionProblem& p, DType t,
                                        std::span<const double> q, std::span<const double> k,
                                        std::span<const double> v,
                                        std::span<const double> dout) const override {
    require_attention_inputs(supports_attention_backward(p, t), p, q, k, v);
    return call_torch(name(), [&] {
      return autograd_backward(p, t, q, k, v, dout,
                               [&](const at::Tensor& qt, const at::Tensor& kt,
                                   const at::Tensor& vt) { return run(p, t, qt, kt, vt); });
    });
  }

 private:
  static at::Tensor run(const AttentionProblem& p, DType t, const at::Tensor& qt, at::Tensor kt,
                        at::Tensor vt) {
    if (p.H != p.Hkv) {
      kt = kt.repeat_interleave(p.H / p.Hkv, 1);
      vt = vt.repeat_interleave(p.H / p.Hkv, 1);
    }
    at::Tensor s = at::matmul(qt, kt.transpose(-2, -1)) * p.effective_scale();
    const ScoreModifiers& mods = p.mods;
    if (mods.softcap != 0) s = at::tanh(s / mods.softcap) * mods.softcap;
    if (!mods.alibi_slopes.empty()) s = s + alibi_bias(p, t);
    s = add_softmax_mask(s, p.mask, t);
    if (mods.sink_logits.empty()) return at::matmul(at::softmax(s, -1), vt);
    // The sink logit as one more key column of every row, its weight dropped after the softmax.
    const std::int64_t B = p.mask.B, Lq = p.mask.Lq, Lk = p.mask.Lk;
    std::vector<double> sink;
    for (std::int64_t b = 0; b < B; ++b)
      for (const double x : mods.sink_logits) sink.insert(sink.end(), Lq, x);
    const at::Tensor col = host_tensor(sink, {B, p.H, Lq, 1}, t);
    const at::Tensor w = at::softmax(at::cat({s, col}, -1), -1).narrow(-1, 0, Lk);
    return at::matmul(w, vt);
  }
  // -slope_h |j - diag(i)| as a [B, H, Lq, Lk] tensor of dtype t (0 on padded queries), the way
  // ALiBi models build their bias.
  static at::Tensor alibi_bias(const AttentionProblem& p, DType t) {
    const std::int64_t B = p.mask.B, H = p.H, Lq = p.mask.Lq, Lk = p.mask.Lk;
    const FlatMask flat(p.mask);
    std::vector<double> bias(static_cast<std::size_t>(B * H * Lq * Lk), 0.0);
    for (std::int64_t b = 0; b < B; ++b)
      for (std::int64_t i = 0; i < Lq; ++i) {
        if (!query_segment(flat.view(), b, i).valid) continue;
        const std::int64_t diag = query_diagonal(flat.view(), b, i);
        for (std::int64_t h = 0; h < H; ++h)
          for (std::int64_t j = 0; j < Lk; ++j)
            bias[static_cast<std::size_t>(((b * H + h) * Lq + i) * Lk + j)] =
                -p.mods.alibi_slopes[static_cast<std::size_t>(h)] *
                static_cast<double>(j > diag ? j - diag : diag - j);
      }
    return host_tensor(bias, {B, H, Lq, Lk}, t);
  }
};

// ---- cross-entropy ----------------------------------------------------------------------------

class TorchCrossEntropy : public Implementation {
 public:
  std::string name() const override { return "torch:cross_entropy"; }
  std::string description() const override {
    return "at::cross_entropy_loss(ignore_index, reduction, label_smoothing) + backward, CPU, " +
           version();
  }
  std::vector<Op> ops() const override { return {Op::cross_entropy}; }
  bool third_party() const override { return true; }
  Support supports_cross_entropy(const LossProblem& p, DType t) const override {
    const std::string why = tp::cross_entropy_supports(p, t, tp::Device::cpu);
    return why.empty() ? Support::yes() : Support::no(why);
  }
  LossResult cross_entropy(const LossProblem& p, DType t, std::span<const double> logits,
                           std::span<const std::int64_t> labels, std::span<const double> weights,
                           bool backward) const override {
    return loss(p, t, logits, labels, weights, backward, {});
  }
  Support supports_cross_entropy_upstream(const LossProblem& p, DType t) const override {
    return supports_cross_entropy(p, t);
  }
  // The upstream gradient is autograd's grad_outputs: a tensor of the loss's shape and dtype ([N]
  // for reduction none, a scalar otherwise).
  LossResult cross_entropy_upstream(const LossProblem& p, DType t, std::span<const double> logits,
                                    std::span<const std::int64_t> labels,
                                    std::span<const double> weights,
                                    std::span<const double> grad_output) const override {
    return loss(p, t, logits, labels, weights, true, grad_output);
  }

 private:
  LossResult loss(const LossProblem& p, DType t, std::span<const double> logits,
                  std::span<const std::int64_t> labels, std::span<const double> weights,
                  bool backward, std::span<const double> grad_output) const {
    if (const Support s = supports_cross_entropy(p, t); !s) throw Unsupported(s.reason);
    require_size("logits", logits.size(), p.N * p.V);
    require_size("labels", labels.size(), p.N);
    validate_loss_inputs(p, labels, weights);
    validate_upstream_gradient(p, backward, grad_output);
    return call_torch(name(), [&] {
      c10::AutoGradMode grad_mode(backward);
      at::Tensor x = host_tensor(logits, {p.N, p.V}, t).requires_grad_(backward);
      const at::Tensor y =
          at::from_blob(const_cast<std::int64_t*>(labels.data()), {p.N}, at::kLong).clone();
      std::int64_t reduction = at::Reduction::Mean;
      if (p.reduction == Reduction::sum) reduction = at::Reduction::Sum;
      if (p.reduction == Reduction::none) reduction = at::Reduction::None;
      at::Tensor loss =
          at::cross_entropy_loss(x, y, std::nullopt, reduction, p.ignore_index, p.label_smoothing);
      LossResult r;
      if (backward && !grad_output.empty()) {
        const at::Tensor g = p.reduction == Reduction::none
                                 ? host_tensor(grad_output, {p.N}, t)
                                 : host_tensor(grad_output, {1}, t).reshape({});
        loss.backward(g);
        r.dlogits = to_host_doubles(x.grad());
      }
      if (p.reduction == Reduction::none) loss = loss.sum();  // the contract's reduced loss
      if (backward && grad_output.empty()) {
        loss.backward();
        r.dlogits = to_host_doubles(x.grad());
      }
      r.loss = to_host_doubles(loss.detach())[0];
      {
        c10::NoGradGuard no_grad;
        r.losses = to_host_doubles(at::cross_entropy_loss(
            x.detach(), y, std::nullopt, at::Reduction::None, p.ignore_index, p.label_smoothing));
      }
      for (const auto label : labels) r.count += label != p.ignore_index;
      r.weight_sum = static_cast<double>(r.count);
      return r;
    });
  }
};

// ---- SDPA backends on CUDA --------------------------------------------------------------------

class TorchCudaSdpa : public Implementation {
 public:
  explicit TorchCudaSdpa(tp::SdpaBackend b) : b_(b) {}
  std::string name() const override { return "torch:cuda-" + std::string(tp::to_string(b_)); }
  std::string description() const override {
    return "SDPA's " + std::string(tp::to_string(b_)) +
           " backend forced through its explicit op on CUDA (padding and documents through "
           "cu_seqlens for flash), " +
           version();
  }
  std::vector<Op> ops() const override { return {Op::attention}; }
  std::vector<DType> dtypes(Op) const override {
    switch (b_) {
      case tp::SdpaBackend::flash:
      case tp::SdpaBackend::cudnn:
        return {DType::f16, DType::bf16};
      case tp::SdpaBackend::efficient:
        return {DType::f32, DType::f16, DType::bf16};
      default:
        return {DType::f64, DType::f32, DType::f16, DType::bf16};
    }
  }
  bool third_party() const override { return true; }
  bool attention_lse() const override { return false; }
  Support attention_support(const AttentionProblem& p, DType t, bool want_lse) const override {
    p.validate();
    if (want_lse) return Support::no("the adapter reads the output only, not the log-sum-exp");
    std::string why;
    return layout(p, t, &why) ? Support::yes() : Support::no(why);
  }
  AttentionResult attention(const AttentionProblem& p, DType t, std::span<const double> q,
                            std::span<const double> k, std::span<const double> v,
                            bool want_lse) const override {
    require_attention_inputs(supports_attention(p, t, want_lse), p, q, k, v);
    const tp::Layout lay = *layout(p, t, nullptr);
    return call_torch(name(), [&] {
      const MaskSpec& m = p.mask;
      at::Tensor qt = host_tensor(q, {m.B, p.H, m.Lq, p.D}, t);
      at::Tensor kt = host_tensor(k, {m.B, p.Hkv, m.Lk, p.D}, t);
      at::Tensor vt = host_tensor(v, {m.B, p.Hkv, m.Lk, p.D}, t);
      if (lay == tp::Layout::packed) {
        qt = pack(qt, m, true);
        kt = pack(kt, m, false);
        vt = pack(vt, m, false);
      }
      qt = qt.to(at::kCUDA);
      kt = kt.to(at::kCUDA);
      vt = vt.to(at::kCUDA);
      tp::SdpaPeer peer(b_, lay, p, t, tp::Device::cuda, qt.data_ptr(), kt.data_ptr(),
                        vt.data_ptr());
      peer.run();
      std::vector<double> out = peer.output();
      if (lay == tp::Layout::packed) out = unpack(out, p);
      return AttentionResult{std::move(out), {}};
    });
  }

 private:
  // Padded when the backend takes the spec that way, else packed (flash: cu_seqlens).
  std::optional<tp::Layout> layout(const AttentionProblem& p, DType t, std::string* why) const {
    const std::string padded = tp::sdpa_supports(b_, tp::Layout::padded, p, t, tp::Device::cuda);
    if (padded.empty()) return tp::Layout::padded;
    if (b_ == tp::SdpaBackend::flash &&
        tp::sdpa_supports(b_, tp::Layout::packed, p, t, tp::Device::cuda).empty())
      return tp::Layout::packed;
    if (why) *why = padded;
    return std::nullopt;
  }
  // [B, heads, L, D] -> the valid tokens of each sequence in order: [total, heads, D].
  static at::Tensor pack(const at::Tensor& x, const MaskSpec& m, bool queries) {
    std::vector<at::Tensor> parts;
    const std::int64_t L = queries ? m.Lq : m.Lk;
    for (std::int64_t b = 0; b < m.B; ++b) {
      const std::int64_t len = queries ? m.q_len(b) : m.k_len(b);
      parts.push_back(x[b].narrow(1, valid_begin(m.padding, L, len), len).transpose(0, 1));
    }
    return at::cat(parts, 0).contiguous();
  }
  // Packed [total_q, H, D] -> [B, H, Lq, D]; padded queries see no key, so their rows are zero.
  static std::vector<double> unpack(const std::vector<double>& packed, const AttentionProblem& p) {
    const MaskSpec& m = p.mask;
    std::vector<double> out(static_cast<std::size_t>(p.q_numel()), 0.0);
    std::int64_t row = 0;
    for (std::int64_t b = 0; b < m.B; ++b) {
      const std::int64_t begin = valid_begin(m.padding, m.Lq, m.q_len(b));
      for (std::int64_t i = 0; i < m.q_len(b); ++i, ++row)
        for (std::int64_t h = 0; h < p.H; ++h)
          std::copy_n(packed.begin() + (row * p.H + h) * p.D, p.D,
                      out.begin() + ((b * p.H + h) * m.Lq + begin + i) * p.D);
    }
    return out;
  }

  tp::SdpaBackend b_;
};

}  // namespace

std::vector<std::shared_ptr<const Implementation>> make_torch_implementations(
    std::string* cuda_note) {
  tp::guard_onednn_amx();  // before LibTorch's first CPU operation in this process
  std::vector<std::shared_ptr<const Implementation>> v;
  for (auto c : {tp::Convention::sdpa_bool, tp::Convention::sdpa_additive,
                 tp::Convention::sdpa_is_causal, tp::Convention::flash_cpu, tp::Convention::mha})
    v.push_back(std::make_shared<TorchAttention>(c));
  v.push_back(std::make_shared<TorchEagerAttention>());
  v.push_back(std::make_shared<TorchSoftmax>());
  v.push_back(std::make_shared<TorchCrossEntropy>());
  std::string why;
  if (tp::torch_cuda_available(&why)) {
    for (auto b : {tp::SdpaBackend::math, tp::SdpaBackend::flash, tp::SdpaBackend::efficient,
                   tp::SdpaBackend::cudnn})
      v.push_back(std::make_shared<TorchCudaSdpa>(b));
    for (auto c :
         {tp::Convention::sdpa_bool, tp::Convention::sdpa_additive, tp::Convention::sdpa_is_causal})
      v.push_back(std::make_shared<TorchAttention>(c, /*cuda=*/true));
  } else if (cuda_note) {
    *cuda_note = "LibTorch CUDA SDPA backends not registered: " + why;
  }
  return v;
}

}  // namespace maskcheck
