// The implementations compiled into this build. Optional parts add themselves here behind the
// macros their CMake targets define, so the registry itself knows none of them.
#include "maskcheck/suite/reference_impl.hpp"
#include "maskcheck/suite/registry.hpp"
#ifdef MASKCHECK_WITH_TORCH
#include "maskcheck/adapters/torch_impl.hpp"
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
    return r;
  }();
  return registry;
}

}  // namespace maskcheck
