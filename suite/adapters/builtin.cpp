// The implementations compiled into this build. Optional parts add themselves here behind the
// macros their CMake targets define, so the registry itself knows none of them.
#include "maskcheck/suite/builtin.hpp"
#include "maskcheck/suite/reference_impl.hpp"
#ifdef MASKCHECK_WITH_TORCH
#include "maskcheck/adapters/torch_impl.hpp"
#include "maskcheck/adapters/torch_peers.hpp"
#endif
#ifdef MASKCHECK_WITH_CUDA
#include "maskcheck/kernels/cuda.hpp"
#endif
#ifdef MASKCHECK_WITH_GGML
#include "maskcheck/adapters/ggml_impl.hpp"
#endif

namespace maskcheck {

std::shared_ptr<const Implementation> make_cpu_implementation();  // suite/adapters/cpu
#ifdef MASKCHECK_WITH_CUDA
std::shared_ptr<const Implementation> make_cuda_implementation();  // suite/adapters/cuda
#endif

const Registry& builtin_registry() {
  static const Registry registry = [] {
    Registry r;
    r.add(std::make_shared<ReferenceImplementation>());
    r.add(make_cpu_implementation());
#ifdef MASKCHECK_WITH_CUDA
    r.add(make_cuda_implementation());
#endif
#ifdef MASKCHECK_WITH_TORCH
    for (auto& impl : make_torch_implementations()) r.add(std::move(impl));
#endif
#ifdef MASKCHECK_WITH_GGML
    for (auto& impl : ggml_adapters::make_ggml_implementations()) r.add(std::move(impl));
#endif
    return r;
  }();
  return registry;
}

nlohmann::json builtin_environment() {
  nlohmann::json j;
#ifdef MASKCHECK_WITH_TORCH
  j["libtorch"] = torch_peers::torch_version();
#else
  j["libtorch"] = "not built";
#endif
#ifdef MASKCHECK_WITH_GGML
  j["ggml"] = ggml_adapters::ggml_version();
#else
  j["ggml"] = "not built";
#endif
#ifdef MASKCHECK_WITH_CUDA
  std::string why;
  if (cuda::device_available(&why)) {
    const cuda::DeviceInfo d = cuda::device_info();
    auto version = [](int v) {
      return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10);
    };
    j["gpu"] = d.name + " (sm_" + std::to_string(d.cc_major) + std::to_string(d.cc_minor) + ", " +
               std::to_string(d.sm_count) + " SMs)";
    j["gpu_driver"] =
        "CUDA driver " + version(d.driver_version) + ", runtime " + version(d.runtime_version);
  } else {
    j["gpu"] = "none (" + why + ")";
  }
#else
  j["gpu"] = "none (built without CUDA)";
#endif
  return j;
}

}  // namespace maskcheck
