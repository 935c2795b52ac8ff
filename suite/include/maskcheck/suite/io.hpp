// File output that never leaves a truncated file over a good one: write to a temporary file in
// the same directory, flush, then rename over the target.
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace maskcheck {

// Throws std::runtime_error naming the path when it cannot write.
void write_file_atomic(const std::string& path, std::string_view content);
void write_json_atomic(const std::string& path, const nlohmann::json& j);
// Throws std::runtime_error naming the path when it cannot read or parse.
nlohmann::json read_json_file(const std::string& path);

}  // namespace maskcheck
