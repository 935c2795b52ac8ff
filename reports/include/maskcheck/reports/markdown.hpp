// Markdown reports from maskcheck result files: verify JSON (schema maskcheck.verify/1) and
// Google Benchmark JSON (benchmark rows grouped by name, peers beside maskcheck with speedups).
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace maskcheck::reports {

// Throws std::runtime_error for a document whose schema it does not know.
std::string markdown_report(const std::vector<nlohmann::json>& docs);

}  // namespace maskcheck::reports
