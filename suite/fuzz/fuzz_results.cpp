// Fuzz target: result files as `maskcheck report` and `maskcheck compare` read them (verify JSON
// and Google Benchmark JSON): parsing with the depth limit, the field checks of doc_kind, both
// report pages, and a comparison of the file with itself.
#include <nlohmann/json.hpp>

#include "fuzz_common.hpp"
#include "maskcheck/reports/compare.hpp"
#include "maskcheck/reports/html.hpp"
#include "maskcheck/reports/markdown.hpp"
#include "maskcheck/reports/results.hpp"
#include "maskcheck/suite/io.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace mc = maskcheck;
  namespace mr = maskcheck::reports;
  mc::fuzz::expect_clean([&] {
    const nlohmann::json doc =
        mc::parse_json_text(std::string(mc::fuzz::bytes(data, size)), "fuzz.json");
    const mr::DocKind kind = mr::doc_kind(doc, "fuzz.json");
    (void)mr::markdown_report({doc});
    mr::HtmlOptions html;
    html.sources = {"fuzz.json"};
    (void)mr::html_report({doc}, html);
    mr::ResultSet side;
    side.path = "fuzz.json";
    if (kind == mr::DocKind::verify) {
      side.verify = doc;
      side.verify_path = "fuzz.json";
    } else {
      side.bench = doc;
      side.bench_path = "fuzz.json";
    }
    mr::CompareOptions options;
    options.gate = "maskcheck";
    mc::fuzz::expect_clean(
        [&] { (void)mr::compare_markdown(mr::compare_results(side, side, options)); });
  });
  return 0;
}
