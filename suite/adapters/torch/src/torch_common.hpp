// Helpers shared by the LibTorch peers (torch_peers.cpp) and the LibTorch implementations
// (torch_impl.cpp): error translation, dtypes and devices, the boolean and additive mask tensors
// built from the one predicate, tensors to host doubles. Internal to suite/adapters/torch.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "maskcheck/adapters/torch_peers.hpp"
#include "maskcheck/reference/masks.hpp"

namespace maskcheck::torch_peers::torch_detail {

template <class F>
decltype(auto) guarded(std::string_view what, F&& f) {
  try {
    return f();
  } catch (const c10::Error& e) {
    std::string msg = e.what_without_backtrace();
    while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
    throw TorchError(std::string(what) + ": " + msg);
  }
}

inline at::ScalarType scalar_type(DType t) {
  switch (t) {
    case DType::f64:
      return at::kDouble;
    case DType::f32:
      return at::kFloat;
    case DType::f16:
      return at::kHalf;
    case DType::bf16:
      return at::kBFloat16;
  }
  return at::kFloat;
}

inline at::Device device_of(Device d) {
  // No index: from_blob finds the device that owns the pointer.
  return d == Device::cuda ? at::Device(at::kCUDA) : at::Device(at::kCPU);
}

inline at::TensorOptions options(DType t, Device d) {
  return at::TensorOptions().dtype(scalar_type(t)).device(device_of(d));
}

// A tensor over caller-owned memory; LibTorch never frees it. Inputs are never written.
inline at::Tensor wrap(const void* p, at::IntArrayRef sizes, DType t, Device d) {
  return at::from_blob(const_cast<void*>(p), sizes, options(t, d));
}

inline at::Device concrete(const at::Tensor& like) {
  return like.device();
}

// The boolean keep-mask [B, 1, Lq, Lk] (true = attend), built on the host from the one predicate
// and uploaded once.
inline at::Tensor keep_mask(const MaskSpec& spec, at::Device dev) {
  std::vector<std::uint8_t> keep = ref::build_keep_mask(spec);
  const at::Tensor host = at::from_blob(keep.data(), {spec.B, 1, spec.Lq, spec.Lk}, at::kByte);
  // copy = true: the result owns its memory before `keep` dies.
  return host.to(at::TensorOptions().device(dev).dtype(at::kBool), /*non_blocking=*/false,
                 /*copy=*/true);
}

// The additive mask [B, 1, Lq, Lk] in dtype t: 0 where keep, `fill` elsewhere, with the last
// axis' storage padded to a multiple of 16 elements (the memory-efficient kernel's alignment).
inline at::Tensor additive_mask(const MaskSpec& spec, DType t, at::Device dev, double fill) {
  const at::Tensor keep = keep_mask(spec, dev);
  const std::int64_t padded = (spec.Lk + 15) / 16 * 16;
  at::Tensor storage = at::empty({spec.B, 1, spec.Lq, padded},
                                 at::TensorOptions().dtype(scalar_type(t)).device(dev));
  at::Tensor bias = storage.narrow(3, 0, spec.Lk);
  bias.fill_(fill);
  bias.masked_fill_(keep, 0.0);
  return bias;
}

inline std::vector<double> to_host_doubles(const at::Tensor& t) {
  const at::Tensor h = t.contiguous().to(at::TensorOptions().device(at::kCPU).dtype(at::kDouble));
  std::vector<double> out(static_cast<std::size_t>(h.numel()));
  if (!out.empty()) std::memcpy(out.data(), h.data_ptr<double>(), out.size() * sizeof(double));
  return out;
}

}  // namespace maskcheck::torch_peers::torch_detail
