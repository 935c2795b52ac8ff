// LibTorch peers (see torch_peers.hpp). Every LibTorch call is wrapped by guarded(), which turns a
// c10::Error into TorchError with LibTorch's message; nothing of LibTorch leaks out of this file.
#include "maskcheck/adapters/torch_peers.hpp"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/SDPBackend.h>
#include <ATen/core/Reduction.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <c10/core/GradMode.h>
#include <c10/core/InferenceMode.h>
#include <c10/util/Exception.h>
#include <torch/headeronly/version.h>

#if __has_include(<c10/cuda/CUDACachingAllocator.h>)
#include <c10/cuda/CUDACachingAllocator.h>
#define MASKCHECK_TORCH_CUDA_ALLOCATOR 1
#endif

#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <utility>

#include "maskcheck/reference/masks.hpp"
#include "torch_common.hpp"

namespace maskcheck::torch_peers {

namespace {

using namespace torch_detail;

// The name of the backend at::_fused_sdp_choice returned (at::SDPBackend's value).
std::string sdp_backend_name(std::int64_t choice) {
  switch (static_cast<at::SDPBackend>(choice)) {
    case at::SDPBackend::error:
      return "no backend";
    case at::SDPBackend::math:
      return "math";
    case at::SDPBackend::flash_attention:
      return "flash_attention";
    case at::SDPBackend::efficient_attention:
      return "efficient_attention";
    case at::SDPBackend::cudnn_attention:
      return "cudnn_attention";
    case at::SDPBackend::overrideable:
      return "overrideable";
  }
  return "backend " + std::to_string(choice);
}

void require_cuda_device(Device d) {
  if (d != Device::cuda) return;
  std::string why;
  if (!torch_cuda_available(&why)) throw Unsupported(why);
}

}  // namespace

// ---- versions and devices -------------------------------------------------------------------

std::string torch_version() {
  return TORCH_VERSION;
}

int torch_num_threads() {
  return at::get_num_threads();
}

std::string torch_cuda_version() {
  try {
    if (!at::detail::getCUDAHooks().hasCUDART()) return "";
    const long v = at::detail::getCUDAHooks().versionCUDART();
    return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10);
  } catch (const c10::Error&) {
    return "";
  }
}

std::string torch_cudnn_version() {
  try {
    if (!at::detail::getCUDAHooks().hasCuDNN()) return "";
    return std::to_string(at::detail::getCUDAHooks().versionCuDNN());
  } catch (const c10::Error&) {
    return "";
  }
}

bool torch_cuda_available(std::string* why) {
  try {
    if (!at::detail::getCUDAHooks().hasCUDART()) {
      if (why) *why = "LibTorch was built without CUDA";
      return false;
    }
    if (!at::hasCUDA() || at::getNumGPUs() == 0) {
      if (why) *why = "LibTorch sees no CUDA device";
      return false;
    }
    return true;
  } catch (const c10::Error& e) {
    if (why) *why = std::string("LibTorch CUDA: ") + e.what_without_backtrace();
    return false;
  }
}

std::string guard_onednn_amx() {
  static const std::string note = []() -> std::string {
    if (const char* isa = std::getenv("ONEDNN_MAX_CPU_ISA"); isa && *isa) return "";
    std::fflush(nullptr);
    const pid_t pid = ::fork();
    if (pid == 0) {
      try {
        c10::InferenceMode inference;
        const at::Tensor q = at::ones({1, 2, 64, 8}, at::TensorOptions().dtype(at::kBFloat16));
        const at::Tensor m = at::ones({1, 1, 64, 64}, at::TensorOptions().dtype(at::kBool));
        (void)at::scaled_dot_product_attention(q, q, q, m);
      } catch (...) {
      }
      ::_exit(0);
    }
    if (pid < 0) return "";
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGILL) return "";
    ::setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_FP16", 0);
    return "oneDNN capped at AVX512_CORE_FP16: its AMX kernels die with SIGILL on this machine";
  }();
  return note;
}

void release_cached_memory() {
#ifdef MASKCHECK_TORCH_CUDA_ALLOCATOR
  if (torch_cuda_available()) {
    guarded("release_cached_memory", [] { c10::cuda::CUDACachingAllocator::emptyCache(); });
  }
#endif
}

// ---- SDPA -----------------------------------------------------------------------------------

std::string sdpa_supports(SdpaBackend b, Layout layout, const AttentionProblem& p, DType t,
                          Device d) {
  p.validate();
  const std::string name(to_string(b));
  if (b != SdpaBackend::math && b != SdpaBackend::dispatch && d != Device::cuda)
    return name + " is a CUDA backend";
  const bool half = t == DType::f16 || t == DType::bf16;
  if ((b == SdpaBackend::flash || b == SdpaBackend::cudnn) && !half)
    return name + " takes fp16 and bf16 only (got " + std::string(to_string(t)) + ")";
  if (b == SdpaBackend::efficient && t == DType::f64) return "efficient takes fp32, fp16 and bf16";
  if (b == SdpaBackend::flash && (p.D % 8 != 0 || p.D > 256))
    return "flash needs a head dim that is a multiple of 8 and at most 256 (got " +
           std::to_string(p.D) + ")";
  if (b == SdpaBackend::cudnn && p.D % 8 != 0)
    return "cudnn needs a head dim that is a multiple of 8 (got " + std::to_string(p.D) + ")";
  const TorchMask m = translate_mask(p.mask, b, layout);
  return m.unsupported;
}

struct SdpaPeer::Impl {
  SdpaBackend backend;
  Layout layout;
  AttentionProblem p;
  TorchMask mask;
  std::string description;
  double scale = 1;
  at::Tensor q, k, v;              // as the backend takes them (flash: [B, L, H, D] views)
  std::optional<at::Tensor> bias;  // additive form, or the boolean mask (dispatch)
  std::optional<at::Tensor> cu_q, cu_k;
  std::int64_t max_q = 0, max_k = 0;
  at::Tensor out;      // the last run's output, as the op returned it
  std::string chosen;  // dispatch: the backend LibTorch picks for these inputs

  // The output in the peer's layout: padded [B, H, Lq, D] or packed [total_q, H, D].
  at::Tensor logical_output() const {
    if (!out.defined()) throw TorchError("SdpaPeer: output() before run()");
    if (backend == SdpaBackend::flash && layout == Layout::padded) return out.transpose(1, 2);
    return out;
  }
};

SdpaPeer::SdpaPeer(SdpaBackend b, Layout layout, const AttentionProblem& p, DType t, Device d,
                   const void* q, const void* k, const void* v)
    : impl_(std::make_unique<Impl>()) {
  if (std::string why = sdpa_supports(b, layout, p, t, d); !why.empty()) throw Unsupported(why);
  require_cuda_device(d);
  Impl& s = *impl_;
  s.backend = b;
  s.layout = layout;
  s.p = p;
  s.mask = translate_mask(p.mask, b, layout);
  s.scale = p.effective_scale();
  const std::int64_t B = p.mask.B, Lq = p.mask.Lq, Lk = p.mask.Lk, H = p.H, Hkv = p.Hkv, D = p.D;
  bool expanded = false;
  guarded("SdpaPeer(" + std::string(to_string(b)) + ")", [&] {
    if (layout == Layout::padded) {
      s.q = wrap(q, {B, H, Lq, D}, t, d);
      s.k = wrap(k, {B, Hkv, Lk, D}, t, d);
      s.v = wrap(v, {B, Hkv, Lk, D}, t, d);
      s.max_q = Lq;
      s.max_k = Lk;
      if (b == SdpaBackend::flash) {  // FlashAttention's layout is [B, L, H, D]: strided views
        s.q = s.q.transpose(1, 2);
        s.k = s.k.transpose(1, 2);
        s.v = s.v.transpose(1, 2);
      }
    } else {
      PackedSegments seg = packed_segments(p.mask);
      s.q = wrap(q, {seg.total_q(), H, D}, t, d);
      s.k = wrap(k, {seg.total_k(), Hkv, D}, t, d);
      s.v = wrap(v, {seg.total_k(), Hkv, D}, t, d);
      const auto n = static_cast<std::int64_t>(seg.cu_q.size());
      const auto to_dev = at::TensorOptions().device(concrete(s.q)).dtype(at::kInt);
      s.cu_q = at::from_blob(seg.cu_q.data(), {n}, at::kInt).to(to_dev, false, true);
      s.cu_k = at::from_blob(seg.cu_k.data(), {n}, at::kInt).to(to_dev, false, true);
      s.max_q = seg.max_q;
      s.max_k = seg.max_k;
    }
    // Backends without grouped-query attention get the K/V heads expanded once.
    if ((b == SdpaBackend::efficient || b == SdpaBackend::cudnn) && Hkv != H) {
      s.k = s.k.repeat_interleave(H / Hkv, 1);
      s.v = s.v.repeat_interleave(H / Hkv, 1);
      expanded = true;
    }
    if (s.mask.form == MaskForm::additive) {
      at::Tensor bias = additive_mask(p.mask, t, concrete(s.q), s.mask.fill);
      // The memory-efficient op wants the bias at the scores' full shape (stride-0 heads).
      if (b == SdpaBackend::efficient) bias = bias.expand({B, H, Lq, Lk});
      s.bias = bias;
    }
    if (s.mask.form == MaskForm::boolean) s.bias = keep_mask(p.mask, concrete(s.q));
    if (b == SdpaBackend::dispatch)
      s.chosen = sdp_backend_name(
          at::_fused_sdp_choice(s.q, s.k, s.v, s.bias, 0.0, s.mask.is_causal, s.scale, H != Hkv));
  });
  const std::string op = b == SdpaBackend::dispatch ? "scaled_dot_product_attention -> " + s.chosen
                                                    : std::string(to_string(b));
  s.description = "torch " + op + " (" + TORCH_VERSION + "), " + std::string(to_string(layout)) +
                  ", mask: " + s.mask.description +
                  (expanded ? ", K/V heads expanded " + std::to_string(Hkv) + " -> " +
                                  std::to_string(H) + " at construction"
                            : std::string());
}

SdpaPeer::~SdpaPeer() = default;
SdpaPeer::SdpaPeer(SdpaPeer&&) noexcept = default;
SdpaPeer& SdpaPeer::operator=(SdpaPeer&&) noexcept = default;

void SdpaPeer::run() {
  Impl& s = *impl_;
  guarded("SdpaPeer(" + std::string(to_string(s.backend)) + ").run", [&] {
    c10::InferenceMode inference;
    switch (s.backend) {
      case SdpaBackend::math:
        s.out = std::get<0>(at::_scaled_dot_product_attention_math(
            s.q, s.k, s.v, s.bias, 0.0, s.mask.is_causal, std::nullopt, s.scale,
            /*enable_gqa=*/s.p.H != s.p.Hkv));
        break;
      case SdpaBackend::flash:
        s.out = std::get<0>(at::_flash_attention_forward(
            s.q, s.k, s.v, s.cu_q, s.cu_k, s.max_q, s.max_k, 0.0, s.mask.is_causal,
            /*return_debug_mask=*/false, s.scale, s.mask.window_left, s.mask.window_right));
        break;
      case SdpaBackend::efficient:
        s.out = std::get<0>(at::_scaled_dot_product_efficient_attention(
            s.q, s.k, s.v, s.bias, /*compute_log_sumexp=*/false, 0.0, s.mask.is_causal, s.scale));
        break;
      case SdpaBackend::cudnn:
        s.out = std::get<0>(at::_scaled_dot_product_cudnn_attention(
            s.q, s.k, s.v, s.bias, /*compute_log_sumexp=*/false, 0.0, s.mask.is_causal,
            /*return_debug_mask=*/false, s.scale));
        break;
      case SdpaBackend::dispatch:
        s.out = at::scaled_dot_product_attention(s.q, s.k, s.v, s.bias, 0.0, s.mask.is_causal,
                                                 s.scale, /*enable_gqa=*/s.p.H != s.p.Hkv);
        break;
    }
  });
}

std::vector<double> SdpaPeer::output() const {
  return guarded("SdpaPeer.output", [&] { return to_host_doubles(impl_->logical_output()); });
}

void SdpaPeer::copy_output(void* dst) const {
  guarded("SdpaPeer.copy_output", [&] {
    const at::Tensor src = impl_->logical_output();
    at::Tensor dst_t = at::from_blob(dst, src.sizes(), src.options());
    dst_t.copy_(src);
  });
}

const TorchMask& SdpaPeer::mask() const {
  return impl_->mask;
}
struct PagedSdpaPeer::Impl {
  at::Tensor q, k_rows, v_rows, index, mask, out;
  std::int64_t B = 0, Lk = 0, Hkv = 0, D = 0;
  double scale = 1;
  bool gqa = false;
  std::string description;
};

PagedSdpaPeer::PagedSdpaPeer(const AttentionProblem& p, const PagedKv& kv, DType t, const void* q,
                             const void* k_cache, const void* v_cache)
    : impl_(std::make_unique<Impl>()) {
  kv.validate(p);
  Impl& s = *impl_;
  s.B = p.mask.B;
  s.Lk = p.mask.Lk;
  s.Hkv = p.Hkv;
  s.D = p.D;
  s.scale = p.effective_scale();
  s.gqa = p.H != p.Hkv;
  const std::int64_t P = kv.page_size, slots = kv.num_pages * P;
  std::vector<std::int64_t> index(static_cast<std::size_t>(s.B * s.Lk), 0);
  for (std::int64_t b = 0; b < s.B; ++b)
    for (std::int64_t j = 0; j < p.mask.k_len(b); ++j)
      index[static_cast<std::size_t>(b * s.Lk + j)] = kv.slot(b, j);
  guarded("PagedSdpaPeer", [&] {
    s.q = wrap(q, {s.B, p.H, p.mask.Lq, s.D}, t, Device::cpu);
    s.k_rows = wrap(k_cache, {slots, s.Hkv * s.D}, t, Device::cpu);
    s.v_rows = wrap(v_cache, {slots, s.Hkv * s.D}, t, Device::cpu);
    s.index = at::from_blob(index.data(), {s.B * s.Lk}, at::kLong).clone();
    s.mask = keep_mask(p.mask, s.q.device());
    s.description =
        std::string("torch index_select of the pages, then scaled_dot_product_attention (") +
        TORCH_VERSION + "), boolean keep-mask [B, 1, Lq, Lk], enable_gqa";
  });
}
PagedSdpaPeer::~PagedSdpaPeer() = default;

void PagedSdpaPeer::run() {
  Impl& s = *impl_;
  guarded("PagedSdpaPeer.run", [&] {
    c10::InferenceMode inference;
    auto gather = [&](const at::Tensor& rows) {
      return rows.index_select(0, s.index).view({s.B, s.Lk, s.Hkv, s.D}).transpose(1, 2);
    };
    s.out = at::scaled_dot_product_attention(s.q, gather(s.k_rows), gather(s.v_rows), s.mask, 0.0,
                                             false, s.scale, s.gqa);
  });
}

void PagedSdpaPeer::copy_output(void* out) const {
  const Impl& s = *impl_;
  guarded("PagedSdpaPeer.copy_output", [&] {
    const at::Tensor o = s.out.contiguous();
    at::from_blob(out, o.sizes(), o.options()).copy_(o);
  });
}

const std::string& PagedSdpaPeer::description() const {
  return impl_->description;
}

struct SdpaBackwardPeer::Impl {
  at::Tensor q, k, v, dout, mask, out;
  std::string description;
};

SdpaBackwardPeer::SdpaBackwardPeer(const AttentionProblem& p, DType t, Device d, const void* q,
                                   const void* k, const void* v, const void* dout)
    : impl_(std::make_unique<Impl>()) {
  p.validate();
  require_cuda_device(d);
  Impl& s = *impl_;
  const std::int64_t B = p.mask.B, Lq = p.mask.Lq, Lk = p.mask.Lk, H = p.H, Hkv = p.Hkv, D = p.D;
  guarded("SdpaBackwardPeer", [&] {
    c10::AutoGradMode grad(true);
    s.q = wrap(q, {B, H, Lq, D}, t, d).clone().requires_grad_(true);
    s.k = wrap(k, {B, Hkv, Lk, D}, t, d).clone().requires_grad_(true);
    s.v = wrap(v, {B, Hkv, Lk, D}, t, d).clone().requires_grad_(true);
    s.dout = wrap(dout, {B, H, Lq, D}, t, d).clone();
    s.mask = keep_mask(p.mask, s.q.device());
    const std::string chosen = sdp_backend_name(
        at::_fused_sdp_choice(s.q, s.k, s.v, s.mask, 0.0, false, p.effective_scale(), H != Hkv));
    s.out = at::scaled_dot_product_attention(s.q, s.k, s.v, s.mask, 0.0, false, p.effective_scale(),
                                             /*enable_gqa=*/H != Hkv);
    s.description = "torch scaled_dot_product_attention -> " + chosen + " (" + TORCH_VERSION +
                    "), backward through autograd, mask: boolean keep-mask [B, 1, Lq, Lk]";
  });
}
SdpaBackwardPeer::~SdpaBackwardPeer() = default;

void SdpaBackwardPeer::run() {
  Impl& s = *impl_;
  guarded("SdpaBackwardPeer.run", [&] {
    c10::AutoGradMode grad(true);
    for (at::Tensor* x : {&s.q, &s.k, &s.v}) x->mutable_grad() = at::Tensor();
    s.out.backward(s.dout, /*retain_graph=*/true);
  });
}

void SdpaBackwardPeer::copy_gradients(void* dq, void* dk, void* dv) const {
  const Impl& s = *impl_;
  guarded("SdpaBackwardPeer.copy_gradients", [&] {
    const std::pair<const at::Tensor*, void*> pairs[] = {{&s.q, dq}, {&s.k, dk}, {&s.v, dv}};
    for (const auto& [x, dst] : pairs) {
      const at::Tensor g = x->grad().contiguous();
      at::from_blob(dst, g.sizes(), g.options()).copy_(g);
    }
  });
}

const std::string& SdpaBackwardPeer::description() const {
  return impl_->description;
}

const std::string& SdpaPeer::description() const {
  return impl_->description;
}

// ---- softmax --------------------------------------------------------------------------------

std::string softmax_supports(const SoftmaxProblem& p, DType, Device) {
  p.validate();
  return translate_softmax_mask(p.mask).unsupported;
}

struct SoftmaxPeer::Impl {
  SoftmaxProblem p;
  TorchMask mask;
  std::string description;
  at::Tensor x, y;
  std::optional<at::Tensor> bias;
};

SoftmaxPeer::SoftmaxPeer(const SoftmaxProblem& p, DType t, Device d, const void* x, void* y)
    : impl_(std::make_unique<Impl>()) {
  if (std::string why = softmax_supports(p, t, d); !why.empty()) throw Unsupported(why);
  require_cuda_device(d);
  Impl& s = *impl_;
  s.p = p;
  s.mask = translate_softmax_mask(p.mask);
  guarded("SoftmaxPeer", [&] {
    const std::int64_t B = p.mask.B, H = p.H, Lq = p.mask.Lq, Lk = p.mask.Lk;
    s.x = wrap(x, {B, H, Lq, Lk}, t, d);
    s.y = wrap(y, {B, H, Lq, Lk}, t, d);
    if (s.mask.form == MaskForm::additive)
      s.bias = additive_mask(p.mask, t, s.x.device(), s.mask.fill);
  });
  s.description = std::string("torch softmax(x") + (p.scale != 1.0 ? " * scale" : "") +
                  (s.bias ? " + mask" : "") + ", -1) (" + TORCH_VERSION +
                  "), mask: " + s.mask.description;
}

SoftmaxPeer::~SoftmaxPeer() = default;
SoftmaxPeer::SoftmaxPeer(SoftmaxPeer&&) noexcept = default;
SoftmaxPeer& SoftmaxPeer::operator=(SoftmaxPeer&&) noexcept = default;

void SoftmaxPeer::run() {
  Impl& s = *impl_;
  guarded("SoftmaxPeer.run", [&] {
    c10::InferenceMode inference;
    at::Tensor z = s.x;
    if (s.p.scale != 1.0) z = z * s.p.scale;
    if (s.bias) z = z + *s.bias;
    at::softmax_out(s.y, z, -1);
  });
}

const TorchMask& SoftmaxPeer::mask() const {
  return impl_->mask;
}
const std::string& SoftmaxPeer::description() const {
  return impl_->description;
}

// ---- cross-entropy --------------------------------------------------------------------------

std::string cross_entropy_supports(const LossProblem& p, DType, Device) {
  p.validate();
  if (p.weighted) return "per-token weights: LibTorch's cross_entropy weights classes, not tokens";
  return "";
}

struct CrossEntropyPeer::Impl {
  LossProblem p;
  std::string description;
  at::Tensor logits;  // a leaf with requires_grad over the caller's buffer
  at::Tensor labels;
  at::Tensor loss;  // the last run's reduced loss (detached)
};

CrossEntropyPeer::CrossEntropyPeer(const LossProblem& p, DType t, Device d, const void* logits,
                                   const std::int64_t* labels)
    : impl_(std::make_unique<Impl>()) {
  if (std::string why = cross_entropy_supports(p, t, d); !why.empty()) throw Unsupported(why);
  require_cuda_device(d);
  Impl& s = *impl_;
  s.p = p;
  guarded("CrossEntropyPeer", [&] {
    s.logits = wrap(logits, {p.N, p.V}, t, d);
    s.logits.requires_grad_(true);
    s.labels = at::from_blob(const_cast<std::int64_t*>(labels), {p.N},
                             at::TensorOptions().dtype(at::kLong).device(device_of(d)));
  });
  s.description = "torch cross_entropy(ignore_index=" + std::to_string(p.ignore_index) +
                  ", reduction=" + to_string(p.reduction) +
                  (p.label_smoothing != 0 ? ", label_smoothing" : "") +
                  ") + backward, grad set to none between runs (" + TORCH_VERSION + ")";
}

CrossEntropyPeer::~CrossEntropyPeer() = default;
CrossEntropyPeer::CrossEntropyPeer(CrossEntropyPeer&&) noexcept = default;
CrossEntropyPeer& CrossEntropyPeer::operator=(CrossEntropyPeer&&) noexcept = default;

void CrossEntropyPeer::run() {
  Impl& s = *impl_;
  guarded("CrossEntropyPeer.run", [&] {
    c10::AutoGradMode grad_mode(true);
    s.logits.mutable_grad().reset();
    std::int64_t reduction = at::Reduction::Mean;
    if (s.p.reduction == Reduction::sum) reduction = at::Reduction::Sum;
    if (s.p.reduction == Reduction::none) reduction = at::Reduction::None;
    at::Tensor loss = at::cross_entropy_loss(s.logits, s.labels, std::nullopt, reduction,
                                             s.p.ignore_index, s.p.label_smoothing);
    if (s.p.reduction == Reduction::none) loss = loss.sum();
    loss.backward();
    s.loss = loss.detach();
  });
}

double CrossEntropyPeer::loss() const {
  return guarded("CrossEntropyPeer.loss", [&] {
    if (!impl_->loss.defined()) throw TorchError("CrossEntropyPeer: loss() before run()");
    return impl_->loss.to(at::TensorOptions().device(at::kCPU).dtype(at::kDouble)).item<double>();
  });
}

std::vector<double> CrossEntropyPeer::grad() const {
  return grad_rows(0, impl_->p.N);
}

std::vector<double> CrossEntropyPeer::grad_rows(std::int64_t row_begin,
                                                std::int64_t row_end) const {
  return guarded("CrossEntropyPeer.grad", [&] {
    const at::Tensor& g = impl_->logits.grad();
    if (!g.defined()) throw TorchError("CrossEntropyPeer: grad() before run()");
    return to_host_doubles(g.narrow(0, row_begin, row_end - row_begin));
  });
}

const std::string& CrossEntropyPeer::description() const {
  return impl_->description;
}

}  // namespace maskcheck::torch_peers
