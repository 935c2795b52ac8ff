// What a result file records about where it came from: maskcheck version and commit, compiler
// and build type, CPU model and cores, operating system, and the date.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace maskcheck {

nlohmann::json about_json();
std::string utc_now_iso8601();
std::string git_commit();  // "unknown" when the build had no git

}  // namespace maskcheck
