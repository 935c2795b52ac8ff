// The "cuda" implementation: the registry's host-side front door to kernels/cuda. Inputs arrive
// as doubles representable in the dtype; they are validated on the host (the same checks and
// messages as the reference), converted to the storage type, uploaded, run on the default
// stream, downloaded and converted back. Without a usable device every case is unsupported, with
// the reason, so tests skip instead of failing.
#include <cmath>
#include <cstring>

#include "maskcheck/kernels/cuda.hpp"
#include "maskcheck/reference/masks.hpp"
#include "maskcheck/suite/reference_impl.hpp"
#include "maskcheck/suite/registry.hpp"

namespace maskcheck {
namespace {

namespace cu = maskcheck::cuda;

// Host storage bits of the device types (maskcheck::half / bfloat16 match __half / bf16).
template <class F>
decltype(auto) dispatch_host(DType t, F&& f) {
  cu::require_cuda_dtype(t);
  return dispatch_dtype(t, std::forward<F>(f));
}

template <class T>
cu::DeviceBuffer upload(const std::vector<T>& v) {
  cu::DeviceBuffer b(v.size() * sizeof(T));
  b.upload(v.data(), b.bytes());
  return b;
}

template <class T>
std::vector<T> download(const cu::DeviceBuffer& b, std::size_t n) {
  std::vector<T> v(n);
  b.download(v.data(), n * sizeof(T));
  return v;
}

// Values in `dtype` storage, as a device buffer.
cu::DeviceBuffer upload_values(std::span<const double> x, DType t) {
  return dispatch_host(t, [&](auto tag) { return upload(to_storage_vec<decltype(tag)>(x)); });
}
std::vector<double> download_values(const cu::DeviceBuffer& b, std::size_t n, DType t) {
  return dispatch_host(t, [&](auto tag) { return to_double_vec(download<decltype(tag)>(b, n)); });
}

void sync(const char* what) {
  cu::check(cudaDeviceSynchronize(), what);
}

bool byte_encoding(MaskEncoding e) {
  return !is_additive(e);
}

class CudaImplementation final : public Implementation {
 public:
  CudaImplementation() { available_ = cu::device_available(&why_); }

  std::string name() const override { return "cuda"; }
  std::string description() const override {
    return "CUDA kernels: tensor-core flash attention forward and backward (fp16/bf16), fused "
           "masked softmax, cross-entropy forward+backward, Philox MLM; fp32 accumulation";
  }
  std::vector<Op> ops() const override {
    return {Op::masks, Op::softmax, Op::attention, Op::cross_entropy, Op::mlm};
  }
  std::vector<DType> dtypes(Op) const override { return {DType::f32, DType::f16, DType::bf16}; }

  Support supports_masks(const MaskSpec& spec, MaskEncoding, DType t) const override {
    if (spec.has_sink_tokens()) return no_sinks();
    return common(t);
  }
  std::vector<double> build_mask(const MaskSpec& spec, MaskEncoding e, DType t) const override {
    const cu::DeviceMask mask(spec);
    const auto n = static_cast<std::size_t>(checked_numel("mask", {spec.B, spec.Lq, spec.Lk}));
    if (byte_encoding(e)) {
      cu::DeviceBuffer out(n);
      cu::build_mask(mask.view(), e, t, out.get(), nullptr);
      sync("build_mask");
      const auto bytes = download<std::uint8_t>(out, n);
      return {bytes.begin(), bytes.end()};
    }
    cu::DeviceBuffer out(n * dtype_bytes(t));
    cu::build_mask(mask.view(), e, t, out.get(), nullptr);
    sync("build_mask");
    return download_values(out, n, t);
  }
  std::vector<double> convert_mask(std::span<const double> values, MaskEncoding from,
                                   MaskEncoding to, DType t) const override {
    ref::validate_mask_values(values, from);
    const std::size_t n = values.size();
    cu::DeviceBuffer in = byte_encoding(from)
                              ? upload(std::vector<std::uint8_t>(values.begin(), values.end()))
                              : upload_values(values, t);
    cu::DeviceBuffer out(n * (byte_encoding(to) ? 1 : dtype_bytes(t)));
    cu::convert_mask(in.get(), from, to, t, static_cast<std::int64_t>(n), out.get(), nullptr);
    sync("convert_mask");
    if (byte_encoding(to)) {
      const auto bytes = download<std::uint8_t>(out, n);
      return {bytes.begin(), bytes.end()};
    }
    return download_values(out, n, t);
  }
  std::vector<std::uint8_t> keep_from_lengths(std::span<const std::int32_t> lengths, std::int64_t L,
                                              PaddingSide side) const override {
    require_available();
    for (std::size_t b = 0; b < lengths.size(); ++b)
      require(lengths[b] >= 0 && lengths[b] <= L, "lengths[" + std::to_string(b) + "]", lengths[b],
              "must be in [0, L=" + std::to_string(L) + "]");
    const auto B = static_cast<std::int64_t>(lengths.size());
    const auto dl = upload(std::vector<std::int32_t>(lengths.begin(), lengths.end()));
    cu::DeviceBuffer keep(static_cast<std::size_t>(checked_numel("keep", {B, L})));
    cu::keep_from_lengths(dl.as<std::int32_t>(), B, L, side, keep.as<std::uint8_t>(), nullptr);
    sync("keep_from_lengths");
    return download<std::uint8_t>(keep, keep.bytes());
  }
  std::vector<std::int64_t> last_valid_index(std::span<const std::int32_t> lengths, std::int64_t L,
                                             PaddingSide side) const override {
    require_available();
    for (std::size_t b = 0; b < lengths.size(); ++b)
      require(lengths[b] >= 0 && lengths[b] <= L, "lengths[" + std::to_string(b) + "]", lengths[b],
              "must be in [0, L=" + std::to_string(L) + "]");
    const auto B = static_cast<std::int64_t>(lengths.size());
    const auto dl = upload(std::vector<std::int32_t>(lengths.begin(), lengths.end()));
    cu::DeviceBuffer last(static_cast<std::size_t>(B) * sizeof(std::int64_t));
    cu::last_valid_index(dl.as<std::int32_t>(), B, L, side, last.as<std::int64_t>(), nullptr);
    sync("last_valid_index");
    return download<std::int64_t>(last, static_cast<std::size_t>(B));
  }

  Support supports_softmax(const SoftmaxProblem& p, DType t) const override {
    if (p.mask.has_sink_tokens()) return no_sinks();
    return common(t);
  }
  std::vector<double> softmax(const SoftmaxProblem& p, DType t,
                              std::span<const double> x) const override {
    p.validate();
    require_size("x", x.size(), p.numel());
    const cu::DeviceMask mask(p.mask);
    const auto dx = upload_values(x, t);
    cu::DeviceBuffer dy(x.size() * dtype_bytes(t));
    cu::masked_softmax(p, mask.view(), t, dx.get(), dy.get(), nullptr);
    sync("masked_softmax");
    return download_values(dy, x.size(), t);
  }

  Support attention_support(const AttentionProblem& p, DType t, bool) const override {
    if (auto s = common(t); !s) return s;
    if (p.mask.has_sink_tokens()) return no_sinks();
    if (p.D > 256) return Support::no("cuda attention takes D <= 256");
    if (p.H > 65535 || p.mask.B > 65535) return Support::no("cuda attention takes B, H <= 65535");
    return Support::yes();
  }
  AttentionResult attention(const AttentionProblem& p, DType t, std::span<const double> q,
                            std::span<const double> k, std::span<const double> v,
                            bool want_lse) const override {
    validate_attention_inputs(p, q.size(), k.size(), v.size());
    const cu::DeviceMask mask(p.mask);
    const auto dq = upload_values(q, t), dk = upload_values(k, t), dv = upload_values(v, t);
    cu::DeviceBuffer dout(q.size() * dtype_bytes(t));
    cu::DeviceBuffer dlse(want_lse ? static_cast<std::size_t>(p.lse_numel()) * sizeof(float) : 0);
    cu::attention_forward(p.shape(), mask.view(), t, dq.get(), dk.get(), dv.get(), dout.get(),
                          want_lse ? dlse.as<float>() : nullptr, nullptr);
    sync("attention_forward");
    AttentionResult r;
    r.out = download_values(dout, q.size(), t);
    if (want_lse) {
      const auto l = download<float>(dlse, static_cast<std::size_t>(p.lse_numel()));
      r.lse.assign(l.begin(), l.end());
    }
    return r;
  }

  Support attention_backward_support(const AttentionProblem& p, DType t) const override {
    if (auto s = supports_attention(p, t, false); !s) return s;
    constexpr std::int64_t kMaxLen = (std::int64_t{1} << 31) - 1024;  // int key positions + tiles
    if (p.mask.Lq > kMaxLen || p.mask.Lk > kMaxLen)
      return Support::no("cuda attention backward takes Lq, Lk <= 2^31 - 1024");
    return Support::yes();
  }
  AttentionGradients attention_backward(const AttentionProblem& p, DType t,
                                        std::span<const double> q, std::span<const double> k,
                                        std::span<const double> v,
                                        std::span<const double> dout) const override {
    validate_attention_inputs(p, q.size(), k.size(), v.size(), dout.size());
    const cu::DeviceMask mask(p.mask);
    const auto dq_in = upload_values(q, t), dk_in = upload_values(k, t),
               dv_in = upload_values(v, t), dg_in = upload_values(dout, t);
    cu::DeviceBuffer dq(q.size() * dtype_bytes(t)), dk(k.size() * dtype_bytes(t)),
        dv(v.size() * dtype_bytes(t));
    cu::DeviceBuffer work(cu::attention_backward_workspace_bytes(p.shape(), mask.view()));
    cu::attention_backward(p.shape(), mask.view(), t, dq_in.get(), dk_in.get(), dv_in.get(),
                           dg_in.get(), dq.get(), dk.get(), dv.get(), work.get(), nullptr);
    sync("attention_backward");
    return {download_values(dq, q.size(), t), download_values(dk, k.size(), t),
            download_values(dv, v.size(), t)};
  }

  Support supports_attention_varlen(const VarlenAttentionProblem& p, DType t, bool) const override {
    if (auto s = common(t); !s) return s;
    if (p.D > 256) return Support::no("cuda attention takes D <= 256");
    if (p.H > 65535 || p.batch() > 65535) return Support::no("cuda attention takes B, H <= 65535");
    return Support::yes();
  }
  AttentionResult attention_varlen(const VarlenAttentionProblem& p, DType t,
                                   std::span<const double> q, std::span<const double> k,
                                   std::span<const double> v, bool want_lse) const override {
    (void)p.padded();  // validates
    require_size("q", q.size(), checked_numel("q", {p.total_q(), p.H, p.D}));
    require_size("k", k.size(), checked_numel("k", {p.total_k(), p.Hkv, p.D}));
    require_size("v", v.size(), checked_numel("v", {p.total_k(), p.Hkv, p.D}));
    const auto cq = upload(p.cu_seqlens_q), ck = upload(p.cu_seqlens_k);
    const auto dq = upload_values(q, t), dk = upload_values(k, t), dv = upload_values(v, t);
    cu::DeviceBuffer dout(q.size() * dtype_bytes(t));
    const auto n_lse = static_cast<std::size_t>(p.H * p.total_q());
    cu::DeviceBuffer dlse(want_lse ? n_lse * sizeof(float) : 0);
    cu::attention_varlen(p, cq.as<std::int32_t>(), ck.as<std::int32_t>(), t, dq.get(), dk.get(),
                         dv.get(), dout.get(), want_lse ? dlse.as<float>() : nullptr, nullptr);
    sync("attention_varlen");
    AttentionResult r;
    r.out = download_values(dout, q.size(), t);
    if (want_lse) {
      const auto l = download<float>(dlse, n_lse);
      r.lse.assign(l.begin(), l.end());
    }
    return r;
  }

  Support supports_cross_entropy(const LossProblem&, DType t) const override { return common(t); }
  LossResult cross_entropy(const LossProblem& p, DType t, std::span<const double> logits,
                           std::span<const std::int64_t> labels, std::span<const double> weights,
                           bool backward) const override {
    return loss(p, t, logits, labels, weights, backward, {});
  }
  Support supports_cross_entropy_upstream(const LossProblem&, DType t) const override {
    return common(t);
  }
  LossResult cross_entropy_upstream(const LossProblem& p, DType t, std::span<const double> logits,
                                    std::span<const std::int64_t> labels,
                                    std::span<const double> weights,
                                    std::span<const double> grad_output) const override {
    return loss(p, t, logits, labels, weights, true, grad_output);
  }
  // Cross-entropy with an upstream gradient (grad_output non-empty) or ones.
  LossResult loss(const LossProblem& p, DType t, std::span<const double> logits,
                  std::span<const std::int64_t> labels, std::span<const double> weights,
                  bool backward, std::span<const double> grad_output) const {
    p.validate();
    require_size("logits", logits.size(), checked_numel("logits", {p.N, p.V}));
    validate_loss_inputs(p, labels, weights);
    validate_upstream_gradient(p, backward, grad_output);
    const auto dx = upload_values(logits, t);
    const auto dg = upload(std::vector<float>(grad_output.begin(), grad_output.end()));
    const auto dy = upload(std::vector<std::int64_t>(labels.begin(), labels.end()));
    const auto dw = upload(std::vector<float>(weights.begin(), weights.end()));
    cu::DeviceBuffer losses(static_cast<std::size_t>(p.N) * sizeof(float));
    cu::DeviceBuffer grad(backward ? logits.size() * dtype_bytes(t) : 0);
    cu::DeviceBuffer totals(sizeof(cu::LossTotals));
    cu::DeviceBuffer work(cu::cross_entropy_workspace_bytes(p));
    cu::cross_entropy(p, t, dx.get(), dy.as<std::int64_t>(), p.weighted ? dw.as<float>() : nullptr,
                      losses.as<float>(), backward ? grad.get() : nullptr,
                      grad_output.empty() ? nullptr : dg.as<float>(), totals.as<cu::LossTotals>(),
                      work.get(), nullptr);
    sync("cross_entropy");
    cu::LossTotals tot{};
    totals.download(&tot, sizeof tot);
    if (tot.bad_label_row >= 0)  // the host check above makes this a kernel bug, not bad input
      throw cu::CudaError("cross_entropy flagged row " + std::to_string(tot.bad_label_row) +
                          " whose label passed host validation");
    LossResult r;
    r.loss = tot.loss;
    r.weight_sum = tot.weight_sum;
    r.count = tot.count;
    const auto l = download<float>(losses, static_cast<std::size_t>(p.N));
    r.losses.assign(l.begin(), l.end());
    if (backward) r.dlogits = download_values(grad, logits.size(), t);
    return r;
  }

  Support supports_mlm(const MlmProblem&) const override { return common(DType::f32); }
  MlmResult mlm(const MlmProblem& p, std::span<const std::int64_t> ids,
                std::span<const std::uint8_t> keep, std::span<const std::uint8_t> special,
                std::span<const std::uint8_t> continuation) const override {
    validate_mlm_inputs(p, ids, keep, special, continuation);
    const auto n = static_cast<std::size_t>(p.B * p.L);
    const auto di = upload(std::vector<std::int64_t>(ids.begin(), ids.end()));
    const auto dk = upload(std::vector<std::uint8_t>(keep.begin(), keep.end()));
    const auto ds = upload(std::vector<std::uint8_t>(special.begin(), special.end()));
    const auto dc = upload(std::vector<std::uint8_t>(continuation.begin(), continuation.end()));
    cu::DeviceBuffer out(n * sizeof(std::int64_t)), labels(n * sizeof(std::int64_t));
    cu::DeviceBuffer work(cu::mlm_workspace_bytes(p));
    cu::mlm_mask(p, di.as<std::int64_t>(), dk.as<std::uint8_t>(), ds.as<std::uint8_t>(),
                 p.whole_word ? dc.as<std::uint8_t>() : nullptr, out.as<std::int64_t>(),
                 labels.as<std::int64_t>(), work.get(), nullptr);
    sync("mlm_mask");
    return {download<std::int64_t>(out, n), download<std::int64_t>(labels, n)};
  }

 private:
  // The CUDA kernels keep one key interval per row (visible_keys): attention sinks apart from
  // the window are not applied yet, so such masks are declined rather than half applied.
  static Support no_sinks() {
    return Support::no("cuda kernels do not apply attention-sink tokens (sink_tokens) yet");
  }
  Support common(DType t) const {
    if (!available_) return Support::no(why_);
    if (t == DType::f64) return Support::no("cuda kernels take f32, f16 and bf16");
    return Support::yes();
  }
  void require_available() const {
    if (!available_) throw Unsupported(why_);
  }
  bool available_ = false;
  std::string why_;
};

}  // namespace

std::shared_ptr<const Implementation> make_cuda_implementation() {
  return std::make_shared<CudaImplementation>();
}

}  // namespace maskcheck
