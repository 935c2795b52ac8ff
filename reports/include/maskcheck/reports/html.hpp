// The HTML report: one self-contained page (inline CSS and SVG, no script, nothing fetched; a
// Content-Security-Policy forbids any load) from the same result files as the Markdown report:
//   - machine and versions, one column per result file ("not recorded" where a file is silent);
//   - per verify file: the implementation x property matrix (pass / FAIL / ERROR / skip /
//     deviation, colour and text), failures with message, shrunk counterexample, replay command
//     and counterexample files (linked when they exist), skipped cases, deviations, mutants;
//   - per bench file: throughput against sequence length, speedup over LibTorch and the fraction
//     of the measured bandwidth / FMA limits as inline SVG charts (medians with the spread over
//     repetitions, every value also in a table beside the chart), and a table of every row.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace maskcheck::reports {

struct HtmlOptions {
  // The input paths, in the order of the documents: shown on the page (may be empty).
  std::vector<std::string> sources;
  // Counterexample files named in verify results are linked relative to `out_dir` (where
  // report.html goes) when they exist; relative names in the results are taken from `cwd` (the
  // directory verify ran in, normally the current one). An empty out_dir: listed, not linked.
  std::filesystem::path out_dir;
  std::filesystem::path cwd;
  std::string generated;  // when the page was made (shown as given; empty: not shown)
};

// Throws std::runtime_error for a document that is neither result kind.
std::string html_report(const std::vector<nlohmann::json>& docs, const HtmlOptions& options = {});

// Escapes & < > " ' for HTML text and attribute values.
std::string html_escape(std::string_view s);

}  // namespace maskcheck::reports
