// What a result file records about where it came from: maskcheck version and commit, compiler
// and build type, CPU model and cores, operating system, and the date.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace maskcheck {

nlohmann::json about_json();
// What the built-in implementations run on (maskcheck::builtin, src/builtin.cpp): "libtorch" (its
// version, or "not built"), "gpu" (name, compute capability and SMs, or "none (why)") and
// "gpu_driver" (CUDA driver and runtime versions, when there is a GPU).
nlohmann::json builtin_environment();
std::string utc_now_iso8601();
std::string git_commit();  // "unknown" when the build had no git

}  // namespace maskcheck
