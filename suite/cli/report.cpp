// maskcheck report and maskcheck compare: result files in, Markdown and HTML out.
#include "commands.hpp"

#include <filesystem>
#include <iostream>

#include "maskcheck/reference/common.hpp"
#include "maskcheck/reports/compare.hpp"
#include "maskcheck/reports/html.hpp"
#include "maskcheck/reports/markdown.hpp"
#include "maskcheck/reports/results.hpp"
#include "maskcheck/reports/shards.hpp"
#include "maskcheck/suite/about.hpp"
#include "maskcheck/suite/io.hpp"

namespace mc = maskcheck;

namespace maskcheck::cli {

// `report`: both pages are rendered before either is written, and they are replaced together
// (write_files_atomic: both temporary files written first, the renames shielded from SIGINT,
// SIGTERM, SIGHUP and SIGQUIT), so that a bad input, a failed render or an interrupt leaves no
// half-written report, nor a Markdown page beside a stale HTML one.
int cmd_report(const std::vector<std::string>& inputs, const std::string& out_dir) {
  if (out_dir.empty())
    throw mc::InvalidArgument("--out", "''", "must name a directory for report.md and report.html");
  const std::string md_path = out_dir + "/report.md", html_path = out_dir + "/report.html";
  for (const auto& p : {md_path, html_path}) {
    mc::check_output_path(p, "--out");
    for (const auto& in : inputs) mc::check_output_path(p, "--out", in);
  }
  std::vector<nlohmann::json> read;
  for (const auto& path : inputs) {
    read.push_back(mc::read_json_file(path));
    mc::reports::doc_kind(read.back(), path);  // names the file that is neither kind
  }
  // The shards of a run (verify --shard K/N) become one matrix.
  const mc::reports::ResultFiles files = mc::reports::merge_shards(read, inputs);
  const auto& docs = files.docs;
  const std::string md = mc::reports::markdown_report(docs);
  mc::reports::HtmlOptions html_options;
  html_options.sources = files.sources;
  html_options.out_dir = out_dir;
  std::error_code ec;
  html_options.cwd = std::filesystem::current_path(ec);
  html_options.generated = mc::utc_now_iso8601();
  const std::string html = mc::reports::html_report(docs, html_options);
  mc::write_files_atomic({{md_path, md}, {html_path, html}});
  std::cout << "wrote " << out_dir << "/report.md and " << out_dir << "/report.html\n";
  return 0;
}

int cmd_compare(const std::string& baseline, const std::string& next,
                const reports::CompareOptions& options, const std::string* out) {
  if (out) check_output_path(*out, "--out");
  const auto c =
      reports::compare_results(reports::load_results(baseline, "BASELINE", read_json_file),
                               reports::load_results(next, "NEW", read_json_file), options);
  const std::string md = reports::compare_markdown(c);
  if (out) write_file_atomic(*out, md);
  std::cout << md << std::flush;
  return c.failed() ? kExitFailed : 0;
}

}  // namespace maskcheck::cli
