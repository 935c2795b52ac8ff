// The maskcheck command line: exit codes (0 pass, 1 property failure, 2 usage or input error),
// seed and replay printed first, JSON output, clear messages for bad input.
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "cli_run.hpp"
#include "maskcheck/suite/call.hpp"
#include "maskcheck/suite/io.hpp"

namespace {

using maskcheck::testing::CliResult;
using maskcheck::testing::maskcheck_cli;
using maskcheck::testing::temp_path;

TEST(Cli, listJsonNamesTheReferenceAndItsOperations) {
  const CliResult r = maskcheck_cli("list --json");
  ASSERT_EQ(r.code, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  bool found = false;
  for (const auto& impl : j.at("implementations"))
    if (impl.at("name") == "reference") {
      found = true;
      std::vector<std::string> ops;
      for (const auto& o : impl.at("operations")) ops.push_back(o.at("op"));
      EXPECT_EQ(ops, (std::vector<std::string>{"masks", "softmax", "attention", "cross_entropy",
                                               "lm_labels", "mlm"}));
    }
  EXPECT_TRUE(found);
  EXPECT_GT(j.at("properties").size(), 30u);
}

TEST(Cli, verifyPrintsSeedAndReplayFirstAndWritesJson) {
  const std::string json = temp_path("verify.json");
  const CliResult r =
      maskcheck_cli("verify --impl reference --op mlm --cases 5 --seed 42 --json " + json);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(r.out.rfind("maskcheck verify: seed 42,", 0), 0u) << r.out;
  EXPECT_NE(r.out.find("replay: maskcheck verify --impl reference --op mlm --seed 42 --cases 5"),
            std::string::npos)
      << r.out;
  const auto j = maskcheck::read_json_file(json);
  EXPECT_EQ(j.at("schema"), "maskcheck.verify/1");
  EXPECT_EQ(j.at("seed"), 42);
  // Where it ran, for the report: machine, toolchain, commit, date, LibTorch and the GPU (or why
  // there is none).
  for (const char* key : {"cpu", "cores", "os", "compiler", "commit", "date", "libtorch", "gpu"})
    EXPECT_TRUE(j.at("about").contains(key)) << key << " in " << j.at("about").dump();
  EXPECT_FALSE(j.at("about").at("gpu").get<std::string>().empty());
  EXPECT_EQ(j.at("summary").at("failed"), 0);
  EXPECT_GT(j.at("summary").at("passed").get<int>(), 0);
  for (const auto& row : j.at("results")) {
    EXPECT_EQ(row.at("implementation"), "reference");
    EXPECT_EQ(row.at("op"), "mlm");
    EXPECT_TRUE(row.contains("max_errors"));
  }
}

TEST(Cli, failingPropertyExitsOneWithShrunkCounterexample) {
  const CliResult r = maskcheck_cli(
      "verify --mutants --impl mutant:causal-off-by-one --property "
      "masks.agreesWithReference --cases 50 --seed 1 --counterexamples " +
      temp_path("ce-masks"));
  // Against mutants the exit code reports the kill rate: killed is success.
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("shrunk counterexample"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("Kill rate: 1/1"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("counterexample files"), std::string::npos) << r.out;
}

// The replay command a mutant's failure prints (without --mutants) runs that mutant like any
// implementation: the failure in full, exit 1. It used to stop at "unknown implementation".
TEST(Cli, replayOfAMutantFailureRunsTheMutant) {
  const std::string args =
      "--property attention.agreesWithReference --cases 50 --seed 1 --no-counterexamples";
  CliResult r = maskcheck_cli("verify --mutants --impl mutant:causal-off-by-one " + args);
  ASSERT_EQ(r.code, 0) << r.out;
  const std::string replay = "replay: maskcheck verify --impl mutant:causal-off-by-one ";
  const auto at = r.out.find(replay);
  ASSERT_NE(at, std::string::npos) << r.out;
  const auto end = r.out.find('\n', at);
  const std::string line = r.out.substr(at + 17, end - at - 17);  // after "replay: maskcheck "
  r = maskcheck_cli(line + " --no-counterexamples");
  EXPECT_EQ(r.code, 1) << line << "\n" << r.out;
  EXPECT_NE(r.out.find("FAILED mutant:causal-off-by-one attention.agreesWithReference"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("shrunk counterexample"), std::string::npos) << r.out;
  // Only a mutant named in --impl joins: the default selection stays the built-ins.
  r = maskcheck_cli("verify --impl own,mutant:nope " + args);
  EXPECT_EQ(r.code, 2) << r.out;
}

// A failing case lands beside the JSON as .safetensors files that `eval` replays.
TEST(Cli, counterexamplesGoBesideTheJsonAndReplayWithEval) {
  const std::string dir = temp_path("ce-json");
  std::filesystem::remove_all(dir);
  const std::string json = dir + "/verify.json";
  CliResult r = maskcheck_cli(
      "verify --mutants --impl mutant:causal-off-by-one --property "
      "attention.agreesWithReference --cases 50 --seed 2 --json " +
      json);
  ASSERT_EQ(r.code, 0) << r.out;
  const auto j = maskcheck::read_json_file(json);
  const auto& files = j.at("results").at(0).at("counterexample_files");
  ASSERT_FALSE(files.empty()) << j.dump(2);
  const std::string file = files.at(0);
  EXPECT_EQ(file.rfind(dir + "/counterexamples/mutant_causal-off-by-one__", 0), 0u) << file;
  EXPECT_NE(r.out.find(file), std::string::npos) << r.out;

  const std::string out = dir + "/result.safetensors";
  r = maskcheck_cli("eval attention --impl mutant:causal-off-by-one --in " + file + " --out " +
                    out);
  ASSERT_EQ(r.code, 0) << r.out;
  // The dtype is the one the failure was found in (the generators do not shrink it).
  EXPECT_TRUE(r.out.find("out: F") != std::string::npos ||
              r.out.find("out: BF16[") != std::string::npos)
      << r.out;
  const auto result = maskcheck::safetensors::read_file(out);
  EXPECT_EQ(result.metadata.at("maskcheck.format"), "maskcheck.result/1");
  EXPECT_EQ(result.metadata.at("maskcheck.implementation"), "mutant:causal-off-by-one");
  // The mutant's replay reproduces what verify recorded from it.
  const auto recorded = maskcheck::safetensors::read_file(file);
  EXPECT_EQ(result.tensors.at("out").bytes, recorded.tensors.at("recorded.out").bytes);

  // --no-counterexamples writes none.
  std::filesystem::remove_all(dir);
  r = maskcheck_cli(
      "verify --mutants --impl mutant:causal-off-by-one --property "
      "attention.agreesWithReference --cases 50 --seed 2 --no-counterexamples --json " +
      json);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_FALSE(std::filesystem::exists(dir + "/counterexamples"));
}

TEST(Cli, evalRejectsBadInputWithExitTwo) {
  namespace st = maskcheck::safetensors;
  maskcheck::AttentionCall a;
  a.problem.mask.Lq = 2;
  a.problem.mask.Lk = 3;
  a.dtype = maskcheck::DType::f64;
  a.q = {1, 2};
  a.k = a.v = {1, 2, 3};
  const std::string attention = temp_path("attention.safetensors");
  st::write_file(attention, maskcheck::encode_case(a));
  ASSERT_EQ(maskcheck_cli("eval attention --in " + attention).code, 0);
  maskcheck::SoftmaxCall s;
  s.problem.mask.Lq = s.problem.mask.Lk = 1;
  s.x = {0.5};
  const std::string softmax = temp_path("softmax.safetensors");
  st::write_file(softmax, maskcheck::encode_case(s));
  auto invalid = a;
  invalid.problem.mask.k_lens = {4};
  const std::string bad_problem = temp_path("bad_problem.safetensors");
  st::write_file(bad_problem, maskcheck::encode_case(invalid));
  const std::string garbage = temp_path("garbage.safetensors");
  std::ofstream(garbage) << "this is not a safetensors file at all";
  const std::string truncated = temp_path("truncated.safetensors");
  {
    std::ifstream in(attention, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::ofstream(truncated, std::ios::binary) << bytes.substr(0, bytes.size() - 5);
  }
  const std::vector<std::pair<std::string, std::string>> cases{
      {"eval attention", "--in"},
      {"eval --in " + attention, "op"},
      {"eval conv --in " + attention, "conv"},
      {"eval attention --in /nonexistent.safetensors", "cannot read"},
      {"eval attention --in " + garbage, "header length"},
      {"eval attention --in " + truncated, "truncated"},
      {"eval attention --in " + softmax, "holds a softmax case"},
      {"eval attention --impl no-such --in " + attention, "no-such"},
      {"eval attention --in " + bad_problem, "k_lens[0]"},
      {"eval attention --impl cpu --in " + attention, "does not support this case: cpu kernels"},
      {"eval softmax --in " + softmax + " --out /proc/no/such/dir/r.safetensors", "cannot"}};
  for (const auto& [args, expected] : cases) {
    const CliResult r = maskcheck_cli(args);
    EXPECT_EQ(r.code, 2) << "maskcheck " << args << "\n" << r.out;
    EXPECT_NE(r.out.find(expected), std::string::npos) << "maskcheck " << args << "\n" << r.out;
  }
}

// A paged KV cache's counterexample replays with eval (the call attention_paged: caches, block
// table and the problem's "paged"), and a block table entry out of range is an input error.
TEST(Cli, pagedCounterexamplesReplayAndBadBlockTablesExitTwo) {
  namespace st = maskcheck::safetensors;
  const std::string dir = temp_path("ce-paged");
  std::filesystem::remove_all(dir);
  const std::string json = dir + "/verify.json";
  CliResult r = maskcheck_cli(
      "verify --mutants --impl mutant:paged-whole-last-page --property "
      "attention.pagedEqualsContiguous --cases 50 --seed 2 --json " +
      json);
  ASSERT_EQ(r.code, 0) << r.out;
  const auto j = maskcheck::read_json_file(json);
  const auto& files = j.at("results").at(0).at("counterexample_files");
  ASSERT_FALSE(files.empty()) << j.dump(2);
  std::string paged_file;
  for (const auto& f : files) {
    const auto c = st::read_file(f.get<std::string>());
    if (c.metadata.at("maskcheck.call") == "attention_paged") paged_file = f.get<std::string>();
  }
  ASSERT_FALSE(paged_file.empty()) << j.dump(2);
  const std::string out = dir + "/result.safetensors";
  r = maskcheck_cli("eval attention --impl mutant:paged-whole-last-page --in " + paged_file +
                    " --out " + out);
  ASSERT_EQ(r.code, 0) << r.out;
  const auto recorded = st::read_file(paged_file);
  EXPECT_EQ(st::read_file(out).tensors.at("out").bytes, recorded.tensors.at("recorded.out").bytes);
  r = maskcheck_cli("eval attention --impl cpu --in " + paged_file);
  EXPECT_EQ(r.code, 0) << r.out;

  // An entry a sequence uses that names no page: exit 2, naming the entry.
  maskcheck::PagedAttentionCall c;
  c.problem.mask.Lq = 1;
  c.problem.mask.Lk = 4;
  c.dtype = maskcheck::DType::f64;
  c.kv.page_size = 2;
  c.kv.num_pages = 2;
  c.kv.max_pages = 2;
  c.kv.block_table = {1, 0};
  c.q = {1};
  c.k_cache = c.v_cache = {1, 2, 3, 4};
  const std::string good = dir + "/good.safetensors";
  st::write_file(good, maskcheck::encode_case(c));
  EXPECT_EQ(maskcheck_cli("eval attention --in " + good).code, 0);
  c.kv.block_table = {1, 7};
  const std::string bad = dir + "/bad.safetensors";
  st::write_file(bad, maskcheck::encode_case(c));
  r = maskcheck_cli("eval attention --in " + bad);
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("block_table[1]"), std::string::npos) << r.out;
}

TEST(Cli, chunkCounterexamplesReplayAndBadKeyRangesExitTwo) {
  namespace st = maskcheck::safetensors;
  const std::string dir = temp_path("ce-chunk");
  std::filesystem::remove_all(dir);
  const std::string json = dir + "/verify.json";
  // A failing split-KV case saves its chunk calls (attention_chunk) beside the unsplit call.
  CliResult r = maskcheck_cli(
      "verify --mutants --impl mutant:split-lse-base2 --property "
      "attention.splitKvMergesToUnsplit --cases 50 --seed 2 --json " +
      json);
  ASSERT_EQ(r.code, 0) << r.out;
  const auto j = maskcheck::read_json_file(json);
  const auto& files = j.at("results").at(0).at("counterexample_files");
  ASSERT_FALSE(files.empty()) << j.dump(2);
  std::string chunk_file;
  for (const auto& f : files) {
    const auto c = st::read_file(f.get<std::string>());
    if (c.metadata.at("maskcheck.call") == "attention_chunk") chunk_file = f.get<std::string>();
  }
  ASSERT_FALSE(chunk_file.empty()) << j.dump(2);
  const std::string out = dir + "/result.safetensors";
  r = maskcheck_cli("eval attention --impl mutant:split-lse-base2 --in " + chunk_file + " --out " +
                    out);
  ASSERT_EQ(r.code, 0) << r.out;
  const auto recorded = st::read_file(chunk_file);
  EXPECT_EQ(st::read_file(out).tensors.at("lse").bytes, recorded.tensors.at("recorded.lse").bytes);
  r = maskcheck_cli("eval attention --impl cpu --in " + chunk_file);
  EXPECT_EQ(r.code, 0) << r.out;

  // A chunk past the keys: exit 2, naming the field; a case without its chunk: exit 2 too.
  maskcheck::ChunkAttentionCall c;
  c.problem.mask.Lq = 1;
  c.problem.mask.Lk = 4;
  c.dtype = maskcheck::DType::f64;
  c.q = {1};
  c.k = c.v = {1, 2, 3, 4};
  c.key_begin = 1;
  c.key_end = 3;
  const std::string good = dir + "/good.safetensors";
  st::write_file(good, maskcheck::encode_case(c));
  EXPECT_EQ(maskcheck_cli("eval attention --in " + good).code, 0);
  c.key_end = 5;
  const std::string bad = dir + "/bad.safetensors";
  st::write_file(bad, maskcheck::encode_case(c));
  r = maskcheck_cli("eval attention --in " + bad);
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("key_begin"), std::string::npos) << r.out;
  auto file = maskcheck::encode_case(c);
  file.metadata["maskcheck.options"] = "{\"key_begin\": 0}";
  st::write_file(bad, file);
  r = maskcheck_cli("eval attention --in " + bad);
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("maskcheck.options.key_end"), std::string::npos) << r.out;
}

TEST(Cli, mutantsMeetTheirOperationsPropertiesAndASurvivorExitsOne) {
  // Without --op or --property a mutant meets only the properties of its own operation.
  const CliResult killed =
      maskcheck_cli("verify --mutants --impl mutant:last-index-off-by-one --cases 10 --seed 1");
  EXPECT_EQ(killed.code, 0) << killed.out;
  EXPECT_NE(killed.out.find("by masks.paddingHelpersAgree\n"), std::string::npos) << killed.out;
  EXPECT_EQ(killed.out.find("softmax."), std::string::npos) << killed.out;
  EXPECT_NE(killed.out.find("Kill rate: 1/1 (100 %)"), std::string::npos) << killed.out;
  // A property of another operation cannot kill it: the survivor makes the run fail.
  const CliResult survived = maskcheck_cli(
      "verify --mutants --impl mutant:gqa-head-modulo --property masks.agreesWithReference "
      "--cases 5 --seed 1");
  EXPECT_EQ(survived.code, 1) << survived.out;
  EXPECT_NE(survived.out.find("SURVIVED mutant:gqa-head-modulo"), std::string::npos)
      << survived.out;
  EXPECT_NE(survived.out.find("Kill rate: 0/1 (0 %)"), std::string::npos) << survived.out;
}

TEST(Cli, usageAndInputErrorsExitTwo) {
  for (const std::string args :
       {"", "verify --impl no-such-impl", "verify --cases 0", "verify --op nope", "verify --bogus",
        "verify --property no.such.property", "report /nonexistent.json --out /tmp/x",
        "list --unknown"}) {
    const CliResult r = maskcheck_cli(args);
    EXPECT_EQ(r.code, 2) << "maskcheck " << args << "\n" << r.out;
    EXPECT_FALSE(r.out.empty()) << args;
  }
  const CliResult unknown = maskcheck_cli("verify --impl no-such-impl");
  EXPECT_NE(unknown.out.find("no-such-impl"), std::string::npos) << unknown.out;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(Cli, reportRejectsUnreadableJsonAndWritesMarkdownAndHtml) {
  const std::string bad = temp_path("bad.json");
  std::ofstream(bad) << "{ not json";
  CliResult r = maskcheck_cli("report " + bad + " --out " + temp_path("out"));
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("cannot parse"), std::string::npos) << r.out;

  const std::string good = temp_path("good.json");
  ASSERT_EQ(
      maskcheck_cli("verify --impl reference --op lm_labels --cases 3 --seed 7 --json " + good)
          .code,
      0);
  r = maskcheck_cli("report " + good + " --out " + temp_path("report"));
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("report.html"), std::string::npos) << r.out;
  const std::string md = slurp(temp_path("report") + "/report.md");
  EXPECT_NE(md.find("| lm_labels.agreesWithReference | pass 3 |"), std::string::npos) << md;
  // A verify file alone: the matrix, no charts.
  const std::string html = slurp(temp_path("report") + "/report.html");
  EXPECT_EQ(html.rfind("<!DOCTYPE html>", 0), 0u) << html.substr(0, 200);
  EXPECT_NE(html.find("lm_labels.agreesWithReference</th><td class=\"pass\""), std::string::npos)
      << html;
  EXPECT_EQ(html.find("<svg"), std::string::npos);
  EXPECT_NE(html.find("</html>"), std::string::npos);
}

// A benchmark file gives charts; a file of neither kind, or an unwritable directory, is an input
// error (exit 2) that leaves an earlier report as it was and no temporary files behind.
TEST(Cli, reportDrawsBenchmarksAndWritesNothingOnBadInput) {
  const std::string bench = temp_path("report_bench.json");
  nlohmann::json rows = nlohmann::json::array();
  for (int l : {512, 1024})
    for (const std::string impl : {"maskcheck", "torch_sdpa"})
      for (int rep = 0; rep < 2; ++rep) {
        const std::string name = "cpu/attention/f32/D64/L" + std::to_string(l) +
                                 "/pad50/padding+causal/" + impl + "/real_time";
        const double t = (impl == "maskcheck" ? 1.0 : 3.0) * l * (1 + 0.1 * rep);
        rows.push_back({{"name", name},
                        {"run_name", name},
                        {"run_type", "iteration"},
                        {"repetitions", 2},
                        {"real_time", t},
                        {"time_unit", "us"},
                        {"useful_FLOPS", 1e15 / t},
                        {"bytes_per_second", 1e12 / t}});
      }
  std::ofstream(bench) << nlohmann::json{
      {"context", {{"cpu.fma_peak_gflops", "100"}}},
      {"benchmarks", rows}}.dump();
  const std::string dir = temp_path("report_bench");
  CliResult r = maskcheck_cli("report " + bench + " --out " + dir);
  ASSERT_EQ(r.code, 0) << r.out;
  const std::string html = slurp(dir + "/report.html");
  EXPECT_NE(html.find("data-kind=\"throughput\""), std::string::npos);
  EXPECT_NE(html.find("data-kind=\"speedup\""), std::string::npos);
  EXPECT_NE(html.find("data-kind=\"limits\""), std::string::npos);
  const std::string md = slurp(dir + "/report.md");

  const std::string neither = temp_path("neither.json");
  std::ofstream(neither) << R"({"hello": "world"})";
  r = maskcheck_cli("report " + bench + " " + neither + " --out " + dir);
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find(neither + ": unknown result file"), std::string::npos) << r.out;
  EXPECT_EQ(slurp(dir + "/report.html"), html);
  EXPECT_EQ(slurp(dir + "/report.md"), md);
  for (const auto& e : std::filesystem::directory_iterator(dir))
    EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << e.path();

  const std::string fresh = temp_path("report_none");
  r = maskcheck_cli("report " + neither + " --out " + fresh);
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_FALSE(std::filesystem::exists(fresh + "/report.md"));
  EXPECT_FALSE(std::filesystem::exists(fresh + "/report.html"));

  r = maskcheck_cli("report " + bench + " --out /proc/no/such/dir");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("cannot"), std::string::npos) << r.out;
}

TEST(Cli, invalidEnvironmentKnobIsAnInputError) {
  const CliResult r =
      maskcheck_cli("verify --impl reference --op mlm --seed 1 2>&1; MASKCHECK_CASES=abc " +
                    std::string(MASKCHECK_CLI) + " verify --op mlm");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("MASKCHECK_CASES"), std::string::npos) << r.out;
}

}  // namespace

namespace {

// Google Benchmark writes non-finite counters as bare nan / inf; reports read them as null.
TEST(Io, readsBenchmarkJsonWithNonFiniteCounters) {
  const std::string path = temp_path("nonfinite.json");
  std::ofstream(path) << R"({"context": {}, "benchmarks": [{"name": "x", "a": nan, "b": -inf, )"
                         R"("c": Infinity, "label": "nan stays", "d": 1.5}]})";
  const auto j = maskcheck::read_json_file(path);
  const auto& b = j.at("benchmarks").at(0);
  EXPECT_TRUE(b.at("a").is_null());
  EXPECT_TRUE(b.at("b").is_null());
  EXPECT_TRUE(b.at("c").is_null());
  EXPECT_EQ(b.at("label"), "nan stays");
  EXPECT_EQ(b.at("d"), 1.5);
}

}  // namespace

namespace {

#if MASKCHECK_HAVE_BENCH
// MASKCHECK_CI=1 for the child processes of one test (the benchmarks' small sizes and probes).
struct CiBudget {
  CiBudget() { ::setenv("MASKCHECK_CI", "1", 1); }
  ~CiBudget() { ::unsetenv("MASKCHECK_CI"); }
};

TEST(Cli, benchWritesJsonOnlyFromAFinishedRunAndRejectsBadFlags) {
  const CiBudget ci;
  const std::string json = temp_path("bench.json");
  std::filesystem::remove(json);
  CliResult r = maskcheck_cli("bench --filter '^ceiling/cpu/fma' --json " + json +
                              " --repetitions 2 --min-time 0.001");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("--benchmark_repetitions=2"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("wrote " + json), std::string::npos) << r.out;
  const auto j = maskcheck::read_json_file(json);
  EXPECT_TRUE(j.at("context").contains("cpu.fma_peak_gflops")) << j.at("context").dump();
  EXPECT_TRUE(j.at("context").contains("cpu.triad_bandwidth_gbps"));
  EXPECT_TRUE(j.at("context").contains("cpu.timing"));
  // The CUDA rows' timing is described only where they run (a CPU file used to carry it too).
  EXPECT_EQ(j.at("context").contains("cuda.timing"), j.at("context").contains("cuda.device"))
      << j.at("context").dump();
  EXPECT_FALSE(j.at("context").contains("maskcheck.timing")) << j.at("context").dump();
  bool median = false;
  ASSERT_FALSE(j.at("benchmarks").empty());
  for (const auto& b : j.at("benchmarks")) {
    EXPECT_EQ(b.at("name").get<std::string>().rfind("ceiling/cpu/fma", 0), 0u) << b.dump();
    median = median || b.value("aggregate_name", "") == "median";
  }
  EXPECT_TRUE(median);

  // A run that writes nothing (here: no benchmark matches) leaves the previous file as it was,
  // and no temporary file behind.
  const std::string before = j.dump();
  r = maskcheck_cli("bench --filter '^no/such/benchmark$' --json " + json);
  EXPECT_EQ(r.code, 2) << r.out;  // matching nothing is a usage error
  EXPECT_NE(r.out.find("left unchanged"), std::string::npos) << r.out;
  EXPECT_EQ(maskcheck::read_json_file(json).dump(), before);
  for (const auto& e :
       std::filesystem::directory_iterator(std::filesystem::path(json).parent_path()))
    EXPECT_EQ(e.path().filename().string().find("bench.json.tmp"), std::string::npos) << e.path();

  for (const std::string args : {"bench --bogus", "bench --repetitions 0", "bench --min-time -1",
                                 "bench --filter '('", "bench --json"}) {
    r = maskcheck_cli(args);
    EXPECT_EQ(r.code, 2) << "maskcheck " << args << "\n" << r.out;
    EXPECT_FALSE(r.out.empty()) << args;
  }

  // Without maskcheck_bench beside it, `bench` says so (exit 2).
  const std::string lone = temp_path("lone/maskcheck");
  std::filesystem::create_directories(std::filesystem::path(lone).parent_path());
  std::filesystem::copy_file(MASKCHECK_CLI, lone,
                             std::filesystem::copy_options::overwrite_existing);
  const std::string cmd = lone + " bench 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  std::array<char, 4096> buf;
  while (std::size_t n = std::fread(buf.data(), 1, buf.size(), p)) out.append(buf.data(), n);
  const int status = pclose(p);
  EXPECT_EQ(WIFEXITED(status) ? WEXITSTATUS(status) : -1, 2) << out;
  EXPECT_NE(out.find("maskcheck_bench"), std::string::npos) << out;
  EXPECT_NE(out.find("missing"), std::string::npos) << out;
}
#endif

// `maskcheck compare`: exit 0 without a regression, 1 with one, 2 for unusable input.
nlohmann::json compare_bench_json(double factor) {
  nlohmann::json doc{{"context", {{"maskcheck.commit", "0123456789ab"}}},
                     {"benchmarks", nlohmann::json::array()}};
  const double base[] = {1.00, 1.02, 0.99, 1.01, 0.98};
  for (const std::string row : {"cpu/softmax/x/maskcheck", "cpu/softmax/x/torch"})
    for (int k = 0; k < 5; ++k)
      doc["benchmarks"].push_back({{"name", row + "/real_time"},
                                   {"run_name", row + "/real_time"},
                                   {"run_type", "iteration"},
                                   {"repetitions", 5},
                                   {"repetition_index", k},
                                   {"real_time", base[k] * factor},
                                   {"time_unit", "ms"}});
  return doc;
}

TEST(Cli, compareExitsZeroOneOrTwoAndWritesTheMarkdown) {
  const std::string base = temp_path("compare/base.json"), same = temp_path("compare/same.json"),
                    slow = temp_path("compare/slow.json"), out = temp_path("compare/out.md");
  maskcheck::write_json_atomic(base, compare_bench_json(1.0));
  maskcheck::write_json_atomic(same, compare_bench_json(1.0));
  maskcheck::write_json_atomic(slow, compare_bench_json(1.2));

  CliResult r = maskcheck_cli("compare " + base + " " + same);
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(r.out.rfind("**maskcheck compare: PASS** — no gated benchmark significantly slower "
                        "than 5 % (alpha 0.05; 2 compared, geometric mean +0.0 %)\n",
                        0),
            0u)
      << r.out;

  std::filesystem::remove(out);
  r = maskcheck_cli("compare " + base + " " + slow + " --out " + out);
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_EQ(r.out.rfind("**maskcheck compare: FAIL** — 2 benchmarks significantly slower than "
                        "5 % (alpha 0.05)\n",
                        0),
            0u)
      << r.out;
  std::ifstream in(out);
  const std::string written((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(written, r.out);  // stdout and --out hold the same Markdown

  // Only maskcheck's own rows gate: the slower LibTorch peer is shown, not failed.
  r = maskcheck_cli("compare " + base + " " + slow + " --gate '/maskcheck[^/]*$'");
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_EQ(r.out.rfind("**maskcheck compare: FAIL** — 1 benchmark significantly slower", 0), 0u)
      << r.out;
  // 20 % is within a 25 % threshold, written either way.
  for (const std::string t : {"25", "25%"}) {
    r = maskcheck_cli("compare " + base + " " + slow + " --max-slowdown " + t);
    EXPECT_EQ(r.code, 0) << r.out;
    EXPECT_NE(r.out.find("Regression: median slower by more than 25 %"), std::string::npos)
        << r.out;
  }

  // Properties: passed -> failed is a regression, in directories as ci/main.sh writes them.
  const std::string dir_a = temp_path("compare/a"), dir_b = temp_path("compare/b");
  std::filesystem::create_directories(dir_a);
  std::filesystem::create_directories(dir_b);
  auto verify = [](const std::string& status) {
    return nlohmann::json{{"schema", "maskcheck.verify/1"},
                          {"about", {{"commit", "abc"}}},
                          {"results",
                           {{{"implementation", "cpu"},
                             {"property", "attention.agreesWithReference"},
                             {"status", status},
                             {"message", "max error 0.5"}}}}};
  };
  maskcheck::write_json_atomic(dir_a + "/verify.json", verify("passed"));
  maskcheck::write_json_atomic(dir_b + "/verify.json", verify("failed"));
  r = maskcheck_cli("compare " + dir_a + " " + dir_b);
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_EQ(r.out.rfind("**maskcheck compare: FAIL** — 1 property regressed\n", 0), 0u) << r.out;
  r = maskcheck_cli("compare " + dir_b + " " + dir_a);
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("**Fixed** (1)"), std::string::npos) << r.out;

  // Usage and input errors: a message naming the problem, exit 2, no Markdown.
  const std::vector<std::pair<std::string, std::string>> bad{
      {"compare " + base, "new is required"},
      {"compare " + base + " " + temp_path("compare/nope.json"), "NEW: no such file"},
      {"compare " + dir_a + " " + slow, "the kinds must match"},
      {"compare " + base + " " + same + " --max-slowdown -5", "--max-slowdown '-5'"},
      {"compare " + base + " " + same + " --max-slowdown fast", "--max-slowdown 'fast'"},
      {"compare " + base + " " + same + " --alpha 0", "--alpha must lie strictly between 0 and 1"},
      {"compare " + base + " " + same + " --alpha 1.5", "--alpha"},
      {"compare " + base + " " + same + " --gate '('", "is not a regular expression"},
      {"compare " + base + " " + same + " --gate '^nothing$'", "matches no benchmark row"},
      {"compare " + temp_path("compare") + " " + same, "holds neither verify.json nor bench.json"},
  };
  for (const auto& [args, message] : bad) {
    r = maskcheck_cli(args);
    EXPECT_EQ(r.code, 2) << args << "\n" << r.out;
    EXPECT_NE(r.out.find(message), std::string::npos) << args << "\n" << r.out;
    EXPECT_EQ(r.out.find("maskcheck compare:"), std::string::npos) << args << "\n" << r.out;
  }

  r = maskcheck_cli("compare --help");
  EXPECT_EQ(r.code, 0) << r.out;
  for (const std::string flag : {"--max-slowdown", "--alpha", "--gate", "--out"})
    EXPECT_NE(r.out.find(flag), std::string::npos) << r.out;
}

}  // namespace
