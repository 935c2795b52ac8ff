// The "cpu" implementation: the registry's front door to kernels/cpu. Inputs arrive as doubles
// representable in the dtype; they are validated (the same checks and messages as the
// reference), converted to the storage type, run, and converted back.
#include <cmath>

#include "maskcheck/kernels/cpu.hpp"
#include "maskcheck/reference/masks.hpp"
#include "maskcheck/suite/reference_impl.hpp"
#include "maskcheck/suite/registry.hpp"

namespace maskcheck {
namespace {

bool byte_encoding(MaskEncoding e) {
  return !is_additive(e);
}

template <class F>
decltype(auto) dispatch_compute(DType t, F&& f) {
  cpu::require_cpu_dtype(t);
  return dispatch_dtype(t, std::forward<F>(f));
}

class CpuImplementation final : public Implementation {
 public:
  std::string name() const override { return "cpu"; }
  std::string description() const override {
    return "CPU kernels: Highway SIMD (" + cpu::simd_target() + ") and OpenMP (" +
           std::to_string(cpu::max_threads()) +
           " threads); flash-style tiled attention, fused softmax, fused cross-entropy, Philox MLM";
  }
  std::vector<Op> ops() const override {
    return {Op::masks, Op::softmax, Op::attention, Op::cross_entropy, Op::lm_labels, Op::mlm};
  }
  std::vector<DType> dtypes(Op op) const override {
    if (op == Op::masks) return {DType::f32, DType::f16, DType::bf16};
    return {DType::f32, DType::bf16};
  }

  Support supports_masks(const MaskSpec&, MaskEncoding, DType t) const override {
    return t == DType::f64 ? Support::no("cpu masks take f32, f16 and bf16") : Support::yes();
  }
  std::vector<double> build_mask(const MaskSpec& spec, MaskEncoding e, DType t) const override {
    const FlatMask flat(spec);
    const auto n = static_cast<std::size_t>(checked_numel("mask", {spec.B, spec.Lq, spec.Lk}));
    if (byte_encoding(e)) {
      std::vector<std::uint8_t> out(n);
      cpu::build_mask(flat.view(), e, t, out.data());
      return {out.begin(), out.end()};
    }
    return dispatch_dtype(t, [&](auto tag) {
      std::vector<decltype(tag)> out(n);
      cpu::build_mask(flat.view(), e, t, out.data());
      return to_double_vec(out);
    });
  }
  std::vector<double> convert_mask(std::span<const double> values, MaskEncoding from,
                                   MaskEncoding to, DType t) const override {
    ref::validate_mask_values(values, from);
    const std::size_t n = values.size();
    return dispatch_dtype(t, [&](auto tag) {
      using S = decltype(tag);
      std::vector<std::uint8_t> in_bytes, out_bytes;
      std::vector<S> in_vals, out_vals;
      const void* in = nullptr;
      void* out = nullptr;
      if (byte_encoding(from)) {
        in_bytes.assign(values.begin(), values.end());
        in = in_bytes.data();
      } else {
        in_vals = to_storage_vec<S>(values);
        in = in_vals.data();
      }
      if (byte_encoding(to)) {
        out_bytes.resize(n);
        out = out_bytes.data();
      } else {
        out_vals.resize(n);
        out = out_vals.data();
      }
      cpu::convert_mask(in, from, to, t, static_cast<std::int64_t>(n), out);
      return byte_encoding(to) ? std::vector<double>(out_bytes.begin(), out_bytes.end())
                               : to_double_vec(out_vals);
    });
  }
  std::vector<std::uint8_t> keep_from_lengths(std::span<const std::int32_t> lengths, std::int64_t L,
                                              PaddingSide side) const override {
    check_lengths(lengths, L);
    std::vector<std::uint8_t> keep(static_cast<std::size_t>(
        checked_numel("keep", {static_cast<std::int64_t>(lengths.size()), L})));
    cpu::keep_from_lengths(lengths.data(), static_cast<std::int64_t>(lengths.size()), L, side,
                           keep.data());
    return keep;
  }
  std::vector<std::int64_t> last_valid_index(std::span<const std::int32_t> lengths, std::int64_t L,
                                             PaddingSide side) const override {
    check_lengths(lengths, L);
    std::vector<std::int64_t> last(lengths.size());
    cpu::last_valid_index(lengths.data(), static_cast<std::int64_t>(lengths.size()), L, side,
                          last.data());
    return last;
  }

  Support supports_softmax(const SoftmaxProblem&, DType t) const override { return compute(t); }
  std::vector<double> softmax(const SoftmaxProblem& p, DType t,
                              std::span<const double> x) const override {
    p.validate();
    require_size("x", x.size(), p.numel());
    const FlatMask flat(p.mask);
    return dispatch_compute(t, [&](auto tag) {
      using S = decltype(tag);
      const auto xs = to_storage_vec<S>(x);
      std::vector<S> y(xs.size());
      cpu::masked_softmax(p, flat.view(), t, xs.data(), y.data());
      return to_double_vec(y);
    });
  }

  Support attention_support(const AttentionProblem&, DType t, bool) const override {
    return compute(t);
  }
  ScoreModifierSupport score_modifiers() const override { return ScoreModifierSupport::all(); }

  Support supports_attention_chunk(const AttentionProblem& p, DType t) const override {
    return supports_attention(p, t, true);
  }
  AttentionResult attention_chunk(const AttentionProblem& p, DType t, std::span<const double> q,
                                  std::span<const double> k, std::span<const double> v,
                                  std::int64_t key_begin, std::int64_t key_end) const override {
    validate_attention_inputs(p, q.size(), k.size(), v.size());
    if (Support s = supports_attention_chunk(p, t); !s) throw Unsupported(s.reason);
    AttentionShape shape = p.shape();
    shape.mods.sink_logits.clear();  // the sink is a chunk of its own
    const FlatMask flat(p.mask);
    return dispatch_compute(t, [&](auto tag) {
      using S = decltype(tag);
      const auto qs = to_storage_vec<S>(q), ks = to_storage_vec<S>(k), vs = to_storage_vec<S>(v);
      std::vector<S> out(qs.size());
      std::vector<float> lse(static_cast<std::size_t>(p.lse_numel()));
      cpu::attention_forward_chunk(shape, flat.view(), t, qs.data(), ks.data(), vs.data(),
                                   key_begin, key_end, out.data(), lse.data());
      return AttentionResult{to_double_vec(out), std::vector<double>(lse.begin(), lse.end())};
    });
  }

  Support supports_attention_paged(const AttentionProblem& p, const PagedKv& kv, DType t,
                                   bool want_lse) const override {
    kv.validate(p);
    return supports_attention(p, t, want_lse);
  }
  AttentionResult attention_paged(const AttentionProblem& p, const PagedKv& kv, DType t,
                                  std::span<const double> q, std::span<const double> k_cache,
                                  std::span<const double> v_cache, bool want_lse) const override {
    validate_paged_inputs(p, kv, q.size(), k_cache.size(), v_cache.size());
    if (Support s = supports_attention(p, t, want_lse); !s) throw Unsupported(s.reason);
    const FlatMask flat(p.mask);
    const cpu::PagedKvView view{kv.block_table.data(), kv.page_size, kv.num_pages, kv.max_pages};
    return dispatch_compute(t, [&](auto tag) {
      using S = decltype(tag);
      const auto qs = to_storage_vec<S>(q), ks = to_storage_vec<S>(k_cache),
                 vs = to_storage_vec<S>(v_cache);
      std::vector<S> out(qs.size());
      std::vector<float> lse(want_lse ? static_cast<std::size_t>(p.lse_numel()) : 0);
      cpu::attention_forward_paged(p.shape(), flat.view(), view, t, qs.data(), ks.data(), vs.data(),
                                   out.data(), want_lse ? lse.data() : nullptr);
      return AttentionResult{to_double_vec(out), std::vector<double>(lse.begin(), lse.end())};
    });
  }
  AttentionResult attention(const AttentionProblem& p, DType t, std::span<const double> q,
                            std::span<const double> k, std::span<const double> v,
                            bool want_lse) const override {
    validate_attention_inputs(p, q.size(), k.size(), v.size());
    const FlatMask flat(p.mask);
    return dispatch_compute(t, [&](auto tag) {
      using S = decltype(tag);
      const auto qs = to_storage_vec<S>(q), ks = to_storage_vec<S>(k), vs = to_storage_vec<S>(v);
      std::vector<S> out(qs.size());
      std::vector<float> lse(want_lse ? static_cast<std::size_t>(p.lse_numel()) : 0);
      cpu::attention_forward(p.shape(), flat.view(), t, qs.data(), ks.data(), vs.data(), out.data(),
                             want_lse ? lse.data() : nullptr);
      return AttentionResult{to_double_vec(out), std::vector<double>(lse.begin(), lse.end())};
    });
  }

  Support attention_backward_support(const AttentionProblem&, DType t) const override {
    return compute(t);
  }
  AttentionGradients attention_backward(const AttentionProblem& p, DType t,
                                        std::span<const double> q, std::span<const double> k,
                                        std::span<const double> v,
                                        std::span<const double> dout) const override {
    validate_attention_inputs(p, q.size(), k.size(), v.size(), dout.size());
    const FlatMask flat(p.mask);
    return dispatch_compute(t, [&](auto tag) {
      using S = decltype(tag);
      const auto qs = to_storage_vec<S>(q), ks = to_storage_vec<S>(k), vs = to_storage_vec<S>(v),
                 gs = to_storage_vec<S>(dout);
      std::vector<S> dq(qs.size()), dk(ks.size()), dv(vs.size());
      cpu::attention_backward(p.shape(), flat.view(), t, qs.data(), ks.data(), vs.data(), gs.data(),
                              dq.data(), dk.data(), dv.data());
      return AttentionGradients{to_double_vec(dq), to_double_vec(dk), to_double_vec(dv)};
    });
  }

  Support supports_cross_entropy(const LossProblem&, DType t) const override { return compute(t); }
  LossResult cross_entropy(const LossProblem& p, DType t, std::span<const double> logits,
                           std::span<const std::int64_t> labels, std::span<const double> weights,
                           bool backward) const override {
    return loss(p, t, logits, labels, weights, backward, {});
  }
  Support supports_cross_entropy_upstream(const LossProblem&, DType t) const override {
    return compute(t);
  }
  LossResult cross_entropy_upstream(const LossProblem& p, DType t, std::span<const double> logits,
                                    std::span<const std::int64_t> labels,
                                    std::span<const double> weights,
                                    std::span<const double> grad_output) const override {
    return loss(p, t, logits, labels, weights, true, grad_output);
  }
  // The upstream gradient in f32, as a framework's loss gradient in f32 or in the logits' dtype.
  static LossResult loss(const LossProblem& p, DType t, std::span<const double> logits,
                         std::span<const std::int64_t> labels, std::span<const double> weights,
                         bool backward, std::span<const double> grad_output) {
    p.validate();
    require_size("logits", logits.size(), checked_numel("logits", {p.N, p.V}));
    validate_loss_inputs(p, labels, weights);
    validate_upstream_gradient(p, backward, grad_output);
    const std::vector<float> w(weights.begin(), weights.end());
    const std::vector<float> up(grad_output.begin(), grad_output.end());
    return dispatch_compute(t, [&](auto tag) {
      using S = decltype(tag);
      const auto xs = to_storage_vec<S>(logits);
      std::vector<S> grad(backward ? xs.size() : 0);
      std::vector<float> losses(static_cast<std::size_t>(p.N));
      const cpu::LossTotals tot = cpu::cross_entropy(
          p, t, xs.data(), labels.data(), p.weighted ? w.data() : nullptr, losses.data(),
          backward ? grad.data() : nullptr, up.empty() ? nullptr : up.data());
      LossResult r;
      r.loss = tot.loss;
      r.weight_sum = tot.weight_sum;
      r.count = tot.count;
      r.losses.assign(losses.begin(), losses.end());
      if (backward) r.dlogits = to_double_vec(grad);
      return r;
    });
  }

  Support supports_lm_labels(const LmLabelsProblem&) const override { return Support::yes(); }
  std::vector<std::int64_t> lm_labels(const LmLabelsProblem& p, std::span<const std::int64_t> ids,
                                      std::span<const std::uint8_t> keep,
                                      std::span<const std::int32_t> prompt_lens) const override {
    p.validate();
    const std::int64_t n = checked_numel("ids", {p.B, p.L});
    require_size("ids", ids.size(), n);
    require_size("keep", keep.size(), n);
    if (!prompt_lens.empty()) require_size("prompt_lens", prompt_lens.size(), p.B);
    std::vector<std::int64_t> labels(static_cast<std::size_t>(n));
    cpu::lm_labels(p, ids.data(), keep.data(), prompt_lens.empty() ? nullptr : prompt_lens.data(),
                   labels.data());
    return labels;
  }

  Support supports_mlm(const MlmProblem&) const override { return Support::yes(); }
  MlmResult mlm(const MlmProblem& p, std::span<const std::int64_t> ids,
                std::span<const std::uint8_t> keep, std::span<const std::uint8_t> special,
                std::span<const std::uint8_t> continuation) const override {
    validate_mlm_inputs(p, ids, keep, special, continuation);
    MlmResult r{std::vector<std::int64_t>(ids.size()), std::vector<std::int64_t>(ids.size())};
    cpu::mlm_mask(p, ids.data(), keep.data(), special.data(),
                  p.whole_word ? continuation.data() : nullptr, r.ids.data(), r.labels.data());
    return r;
  }

 private:
  static Support compute(DType t) {
    if (t != DType::f32 && t != DType::bf16) return Support::no("cpu kernels take f32 and bf16");
    return Support::yes();
  }
  static void check_lengths(std::span<const std::int32_t> lengths, std::int64_t L) {
    require(L >= 0, "L", L, "must be >= 0");
    for (std::size_t b = 0; b < lengths.size(); ++b)
      require(lengths[b] >= 0 && lengths[b] <= L, "lengths[" + std::to_string(b) + "]", lengths[b],
              "must be in [0, L=" + std::to_string(L) + "]");
  }
};

}  // namespace

std::shared_ptr<const Implementation> make_cpu_implementation() {
  return std::make_shared<CpuImplementation>();
}

}  // namespace maskcheck
