// Text of the reports, escaped for where it goes. Everything a report prints that came from a
// result file (benchmark and implementation names, messages, machine strings) is untrusted: a
// name may hold HTML, Markdown, table pipes, backticks or newlines. The HTML page escapes with
// svg.hpp's esc(); Markdown (report.md, compare's pull-request comment) uses these.
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace maskcheck::reports {

// Plain Markdown text, also inside a table cell: HTML special characters become entities
// (GitHub renders raw HTML in Markdown); \ ` [ ] and | are backslash-escaped (no code spans,
// links or images, no table cells split); newlines become spaces. Emphasis characters (* _) are
// left alone: at worst they italicize.
std::string md_text(std::string_view s);
// An inline code span that holds `s` literally, inside a table cell too: the fence is longer
// than any run of backticks in `s`, '|' is escaped (GFM tables split on it even in code), and
// newlines become spaces.
std::string md_code(std::string_view s);
// A fenced code block holding `s` literally (its fence longer than any backtick run in `s`).
std::string md_block(std::string_view s);

// The small formatters every page shares.
// x with `digits` decimals ("12.50"); "-" when x is not finite.
std::string fixed(double x, int digits);
// A ratio: `digits` decimals and `sign` ("1.020x", "2.71\u00d7"); "-" when not finite.
std::string ratio_text(double r, int digits, std::string_view sign);
// A context or about field as text: strings as they are, numbers and booleans as JSON, else "".
std::string context_text(const nlohmann::json& ctx, const std::string& key);

}  // namespace maskcheck::reports
