// The composition root (maskcheck::builtin, suite/adapters/builtin.cpp): every implementation
// this build has. The core suite knows none of them; this library links the adapters.
#pragma once

#include <nlohmann/json.hpp>

#include "maskcheck/suite/registry.hpp"

namespace maskcheck {

// "reference", then the kernels and adapters the build enabled: cpu, cuda (MASKCHECK_ENABLE_CUDA),
// the LibTorch adapters (MASKCHECK_ENABLE_TORCH) and the ggml adapters (MASKCHECK_ENABLE_GGML).
const Registry& builtin_registry();

// What the built-in implementations run on: "libtorch" and "ggml" (their versions, or "not
// built"), "gpu" (name, compute capability and SMs, or "none (why)") and "gpu_driver" (CUDA driver
// and runtime versions, when there is a GPU).
nlohmann::json builtin_environment();

}  // namespace maskcheck
