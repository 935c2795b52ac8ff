// Hostile and unlucky input: every case here once crashed, hung, exhausted memory, destroyed a
// file or was accepted silently (issue "Hardening"). Each test fails without its fix.
//   - the safetensors reader with offsets that wrap, JSON nested 1e5 levels, FIFOs and
//     /dev/zero as inputs, files above the size cap;
//   - case files that ask for terabytes (the budget of eval);
//   - outputs onto special files, symbolic links, empty paths, the input itself; stale
//     temporary files; report.md and report.html split by a signal;
//   - concurrent verify runs sharing a counterexample directory;
//   - seeds, timeouts and sizes that used to be read as something else;
//   - result files with fields of the wrong type, unknown time units, HTML in names, names of
//     30,000 characters against compare --gate.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <thread>

#include "cli_run.hpp"
#include "maskcheck/reference/common.hpp"
#include "maskcheck/reports/compare.hpp"
#include "maskcheck/reports/markdown.hpp"
#include "maskcheck/reports/results.hpp"
#include "maskcheck/suite/call.hpp"
#include "maskcheck/suite/io.hpp"
#include "maskcheck/suite/limits.hpp"
#include "maskcheck/suite/recording.hpp"
#include "maskcheck/suite/safetensors.hpp"

namespace mc = maskcheck;
namespace st = maskcheck::safetensors;
namespace fs = std::filesystem;
using maskcheck::testing::CliResult;
using maskcheck::testing::maskcheck_cli;
using maskcheck::testing::temp_path;
using nlohmann::json;

namespace {

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

// The message of whatever f throws ("" when it throws nothing).
template <class F>
std::string thrown(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

std::string with_header(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  const std::uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);
  return out + header + data;
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// A fresh directory of this test process.
std::string fresh_dir(const std::string& name) {
  const std::string d = temp_path(name);
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// The pid of a process that has just ended (and been reaped).
pid_t dead_pid() {
  const pid_t p = ::fork();
  if (p == 0) ::_exit(0);
  ::waitpid(p, nullptr, 0);
  return p;
}

// ---- safetensors: offsets -------------------------------------------------------------------

TEST(Hardening, safetensorsOffsetsAboveTwoToTheSixtyThreeAreRefusedBeforeAnyRead) {
  // begin = 2^64 - 4096 used to wrap to -4096 and copy from before the buffer (SIGSEGV under
  // ASan); begin > 2^63 with end in range, and end > 2^63, likewise.
  const std::string data(16, '\x01');
  for (const std::string offsets :
       {"[18446744073709547520, 4]", "[9223372036854775808, 4]", "[18446744073709547520, 0]",
        "[0, 18446744073709551615]", "[9223372036854775807, 9223372036854775811]"}) {
    const std::string header =
        R"({"x": {"dtype": "F32", "shape": [1], "data_offsets": )" + offsets + "}}";
    const std::string msg = thrown([&] { st::parse(with_header(header, data), "evil.st"); });
    EXPECT_TRUE(contains(msg, "evil.st: tensor \"x\" data_offsets")) << offsets << ": " << msg;
  }
}

// ---- inputs: special files, sizes, nesting --------------------------------------------------

TEST(Hardening, inputsMustBeRegularFilesWithinTheirSize) {
  const std::string dir = fresh_dir("inputs");
  const std::string fifo = dir + "/fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  // A FIFO without a writer used to block the reader forever; /dev/zero to fill the memory.
  EXPECT_TRUE(contains(thrown([&] { mc::read_json_file(fifo); }), "a FIFO, not a regular file"));
  EXPECT_TRUE(contains(thrown([&] { mc::read_json_file("/dev/zero"); }), "a character device"));
  EXPECT_TRUE(contains(thrown([&] { st::read_file(fifo); }), "a FIFO"));
  EXPECT_TRUE(contains(thrown([&] { mc::read_json_file(dir); }), "a directory"));
  // Larger than the cap: refused from its size, before reading (a sparse file).
  const std::string big = dir + "/big.json";
  write_text(big, "{}");
  fs::resize_file(big, mc::kMaxJsonFileBytes + 1);
  const std::string msg = thrown([&] { mc::read_json_file(big); });
  EXPECT_TRUE(contains(msg, big) && contains(msg, "above the limit of 256.00 MiB")) << msg;
  EXPECT_TRUE(contains(thrown([&] { st::read_file(big, 1000); }), "above the limit")) << msg;
}

TEST(Hardening, deeplyNestedJsonIsRefusedNotRecursedInto) {
  const std::string path = temp_path("deep.json");
  // 1e5 nested arrays in a field: report's recursion overflowed the stack.
  write_text(path, R"({"schema": "maskcheck.verify/1", "about": )" + std::string(100000, '[') +
                       std::string(100000, ']') + "}");
  const std::string msg = thrown([&] { mc::read_json_file(path); });
  EXPECT_TRUE(contains(msg, path) && contains(msg, "nested more than 64 levels")) << msg;
  const CliResult r = maskcheck_cli("report " + path + " --out " + temp_path("deep_report"));
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_TRUE(contains(r.out, "nested more than")) << r.out;
}

TEST(Hardening, reportAndCompareRefuseFifosAndDevicesInsteadOfHanging) {
  const std::string dir = fresh_dir("fifo_cli");
  const std::string fifo = dir + "/results.json";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  const auto start = std::chrono::steady_clock::now();
  CliResult r = maskcheck_cli("report " + fifo + " --out " + dir + "/out");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_TRUE(contains(r.out, "FIFO")) << r.out;
  r = maskcheck_cli("compare /dev/zero /dev/zero");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_TRUE(contains(r.out, "character device")) << r.out;
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(20));
}

// ---- budgets ----------------------------------------------------------------------------------

TEST(Hardening, casesAboveTheMemoryBudgetAreRefusedWithTheFigure) {
  // About 200 bytes that ask for Lq = Lk = 2^31 - 1: build_mask has no input tensors, and its
  // output (and the reference's keep mask) is B x Lq x Lk.
  const std::string huge_mask =
      R"({"__metadata__": {"maskcheck.op": "masks", "maskcheck.call": "build_mask",)"
      R"( "maskcheck.problem": "{\"B\": 1, \"Lq\": 2147483647, \"Lk\": 2147483647}"}})";
  // 4 KiB of lengths with L = 2^28: a keep mask of 4 TiB.
  const std::string huge_keep =
      R"({"lengths": {"dtype": "I32", "shape": [1024], "data_offsets": [0, 4096]},)"
      R"( "__metadata__": {"maskcheck.op": "masks", "maskcheck.call": "keep_from_lengths",)"
      R"( "maskcheck.problem": "{\"L\": 268435456}"}})";
  const std::vector<std::pair<std::string, std::string>> cases{
      {temp_path("huge_mask.safetensors"), with_header(huge_mask, "")},
      {temp_path("huge_keep.safetensors"), with_header(huge_keep, std::string(4096, '\0'))}};
  for (const auto& [p, bytes] : cases) {
    write_text(p, bytes);
    EXPECT_LT(bytes.size(), 4500u);
    const auto start = std::chrono::steady_clock::now();
    const CliResult r = maskcheck_cli("eval masks --in " + p);
    EXPECT_EQ(r.code, 2) << r.out;
    EXPECT_TRUE(contains(r.out, p + " = needs about") && contains(r.out, "--max-memory 4.00 GiB"))
        << r.out;
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(20));
  }
  // The work budget, and raising a budget runs the case.
  mc::AttentionCall c;
  c.problem.mask.Lq = c.problem.mask.Lk = 3;
  c.problem.D = 2;
  c.q = c.k = c.v = std::vector<double>(6, 0.5);
  const mc::CallCost cost = mc::cost_of(mc::CallInputs(c));
  EXPECT_GT(cost.bytes, 0);
  EXPECT_GT(cost.work, 0);
  EXPECT_TRUE(contains(thrown([&] { mc::check_budget(cost, {100, 1e12}, "f"); }), "memory"));
  EXPECT_TRUE(contains(thrown([&] { mc::check_budget(cost, {1 << 30, 1}, "f"); }), "--max-work"));
  EXPECT_EQ(thrown([&] { mc::check_budget(cost, {}, "f"); }), "");
  mc::safetensors::File f = mc::encode_case(mc::CallInputs(c));
  const std::string small = temp_path("small.safetensors");
  st::write_file(small, f);
  EXPECT_EQ(maskcheck_cli("eval attention --in " + small + " --max-memory 1K").code, 2);
  EXPECT_EQ(maskcheck_cli("eval attention --in " + small + " --max-work 10").code, 2);
  EXPECT_EQ(maskcheck_cli("eval attention --in " + small + " --max-memory 1G").code, 0);
  EXPECT_EQ(maskcheck_cli("eval attention --in " + small + " --max-memory lots").code, 2);
}

// ---- outputs ----------------------------------------------------------------------------------

TEST(Hardening, outputsOntoSpecialFilesLinksEmptyPathsOrTheInputAreRefused) {
  const std::string dir = fresh_dir("outputs");
  const std::string fifo = dir + "/fifo", link = dir + "/link", target = dir + "/target.json";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  write_text(target, "{}");
  fs::create_symlink(target, link);
  EXPECT_TRUE(contains(thrown([&] { mc::check_output_path("/dev/null", "--json"); }),
                       "--json = /dev/null (is a character device"));
  EXPECT_TRUE(contains(thrown([&] { mc::check_output_path(fifo, "--json"); }), "a FIFO"));
  EXPECT_TRUE(contains(thrown([&] { mc::check_output_path(link, "--out"); }), "symbolic link"));
  EXPECT_TRUE(contains(thrown([&] { mc::check_output_path(dir, "--out"); }), "a directory"));
  EXPECT_TRUE(contains(thrown([&] { mc::check_output_path("", "--out"); }), "empty path"));
  EXPECT_TRUE(
      contains(thrown([&] { mc::check_output_path(target, "--out", link); }), "is the input file"));
  EXPECT_EQ(thrown([&] { mc::check_output_path(target, "--out"); }), "");
  EXPECT_EQ(thrown([&] { mc::check_output_path(dir + "/new.json", "--out"); }), "");
  // write_file_atomic refuses them too, and leaves them as they were.
  EXPECT_THROW(mc::write_file_atomic(fifo, "x"), mc::InvalidArgument);
  EXPECT_THROW(mc::write_file_atomic(link, "x"), mc::InvalidArgument);
  struct stat s {};
  ASSERT_EQ(::lstat(fifo.c_str(), &s), 0);
  EXPECT_TRUE(S_ISFIFO(s.st_mode));
  ASSERT_EQ(::lstat(link.c_str(), &s), 0);
  EXPECT_TRUE(S_ISLNK(s.st_mode));

  // Through the command line, each with exit 2 and the flag named.
  const std::string verify = "verify --impl reference --op mlm --cases 2 --seed 1 ";
  std::vector<std::pair<std::string, std::string>> commands{
      {verify + "--json " + fifo, "--json"},
      {verify + "--json " + link, "--json"},
      {"report " + target + " --out ''", "--out"},
      {"compare " + target + " " + target + " --out " + link, "--out"}};
#if MASKCHECK_HAVE_BENCH  // (the ASan build has no benchmarks)
  commands.push_back({"bench --filter '^ceiling/cpu/fma' --json " + link, "--json"});
#endif
  for (const auto& [args, flag] : commands) {
    const CliResult r = maskcheck_cli(args);
    EXPECT_EQ(r.code, 2) << args << "\n" << r.out;
    EXPECT_TRUE(contains(r.out, flag + " = ")) << args << "\n" << r.out;
  }
  EXPECT_FALSE(fs::exists("/report.md"));
  ASSERT_EQ(::lstat(link.c_str(), &s), 0);
  EXPECT_TRUE(S_ISLNK(s.st_mode));
  EXPECT_EQ(read_text(target), "{}");

  // eval --out onto its own input.
  mc::AttentionCall c;
  c.problem.mask.Lq = c.problem.mask.Lk = 1;
  c.q = c.k = c.v = {0.5};
  const std::string in = dir + "/case.safetensors";
  st::write_file(in, mc::encode_case(mc::CallInputs(c)));
  const std::string before = read_text(in);
  const CliResult r =
      maskcheck_cli("eval attention --in " + in + " --out " + dir + "/./case.safetensors");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_TRUE(contains(r.out, "is the input file")) << r.out;
  EXPECT_EQ(read_text(in), before);
}

TEST(Hardening, staleTemporaryFilesOfDeadProcessesAreRemoved) {
  const std::string dir = fresh_dir("stale");
  const std::string target = dir + "/report.md";
  const std::string stale = target + ".tmp." + std::to_string(dead_pid());
  const std::string live = target + ".tmp." + std::to_string(::getppid());  // ctest, alive
  write_text(stale, "left by a killed maskcheck");
  write_text(live, "being written by a live process");
  mc::write_file_atomic(target, "new");
  EXPECT_FALSE(fs::exists(stale));
  EXPECT_TRUE(fs::exists(live));
  EXPECT_EQ(read_text(target), "new");
}

TEST(Hardening, aSignalBetweenTheTwoRenamesCannotSplitTheReportPair) {
  // report writes report.md and report.html; a SIGTERM (a CI timeout) between the two renames
  // used to leave the new report.md beside the old report.html. The hook holds the window open.
  const std::string dir = fresh_dir("pair");
  const std::string v1 = dir + "/v1.json", v2 = dir + "/v2.json", out = dir + "/report";
  ASSERT_EQ(maskcheck_cli("verify --impl reference --op mlm --cases 2 --seed 1 --json " + v1).code,
            0);
  ASSERT_EQ(maskcheck_cli("verify --impl reference --op mlm --cases 3 --seed 2 --json " + v2).code,
            0);
  ASSERT_EQ(maskcheck_cli("report " + v1 + " --out " + out).code, 0);
  // The signal comes once the first rename has happened (report.md is new): inside the window.
  const std::string cmd = "MASKCHECK_TEST_PAUSE_BETWEEN_RENAMES_MS=3000 " +
                          std::string(MASKCHECK_CLI) + " report " + v2 + " --out " + out +
                          " & pid=$!; for i in $(seq 600); do grep -q '| seed | 2 ' " + out +
                          "/report.md && break; sleep 0.05; done; kill -TERM $pid; wait $pid; "
                          "echo $?";
  FILE* p = ::popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  char buf[64] = {};
  (void)!std::fgets(buf, sizeof buf, p);
  ::pclose(p);
  EXPECT_EQ(std::atoi(buf), 128 + SIGTERM);  // it was killed by the signal, after the renames
  const std::string md = read_text(out + "/report.md"), html = read_text(out + "/report.html");
  // Both from the second run (seed 2).
  EXPECT_TRUE(contains(md, "| seed | 2 ")) << md.substr(0, 600);
  EXPECT_TRUE(contains(html, "seed 2, 3 cases per property")) << html.substr(0, 2000);
  for (const auto& e : fs::directory_iterator(out))
    EXPECT_FALSE(contains(e.path().filename().string(), ".tmp.")) << e.path();
}

// ---- concurrent runs --------------------------------------------------------------------------

TEST(Hardening, concurrentVerifyRunsKeepTheirOwnCounterexampleFiles) {
  const std::string dir = fresh_dir("shared_ce");
  // Another run holds the directory (its lock, as a running verify does).
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::flock(fd, LOCK_EX), 0);
  write_text(dir + "/mutant_causal-off-by-one__attention.agreesWithReference__call0.safetensors",
             "the other run's file");
  const std::string json_path = temp_path("concurrent.json");
  const CliResult r = maskcheck_cli(
      "verify --impl mutant:causal-off-by-one --property attention.agreesWithReference --cases 50 "
      "--seed 1 --counterexamples " +
      dir + " --json " + json_path);
  ::close(fd);
  ASSERT_EQ(r.code, 1) << r.out;
  EXPECT_TRUE(contains(r.out, "is in use by another maskcheck verify")) << r.out;
  const auto j = mc::read_json_file(json_path);
  const auto& files = j.at("results").at(0).at("counterexample_files");
  ASSERT_FALSE(files.empty()) << j.dump();
  for (const auto& f : files) {
    EXPECT_EQ(f.get<std::string>().rfind(dir + "/run-1/", 0), 0u) << f;
    EXPECT_TRUE(fs::exists(f.get<std::string>())) << f;
  }
  EXPECT_EQ(
      read_text(dir +
                "/mutant_causal-off-by-one__attention.agreesWithReference__call0.safetensors"),
      "the other run's file");
  // Without a competitor the directory itself is used, and a run that fails nothing leaves no
  // directory behind.
  const std::string own = temp_path("own_ce");
  fs::remove_all(own);
  EXPECT_EQ(
      maskcheck_cli("verify --impl reference --op mlm --cases 2 --seed 1 --counterexamples " + own)
          .code,
      0);
  EXPECT_FALSE(fs::exists(own));
}

// ---- values -------------------------------------------------------------------------------

TEST(Hardening, seedsTimeoutsAndSizesAreParsedStrictly) {
  EXPECT_EQ(mc::parse_seed("18446744073709551615", "--seed"), 18446744073709551615ull);
  EXPECT_EQ(mc::parse_seed("0", "--seed"), 0u);
  for (const char* bad : {"-1", "18446744073709551616", "", " 1", "1 ", "+1", "0x10", "1e3"})
    EXPECT_THROW(mc::parse_seed(bad, "--seed"), mc::InvalidArgument) << bad;
  EXPECT_EQ(mc::parse_positive("2.5", "--plugin-timeout"), 2.5);
  for (const char* bad : {"nan", "inf", "-1", "0", "", "1x", " 1", "1e999"})
    EXPECT_THROW(mc::parse_positive(bad, "--plugin-timeout"), mc::InvalidArgument) << bad;
  EXPECT_EQ(mc::parse_size("4G", "--max-memory"), std::uint64_t{4} << 30);
  EXPECT_EQ(mc::parse_size("1.5GiB", "--max-memory"), std::uint64_t{3} << 29);
  EXPECT_EQ(mc::parse_size("512m", "--max-memory"), std::uint64_t{512} << 20);
  EXPECT_EQ(mc::parse_size("4096", "--max-memory"), 4096u);
  for (const char* bad : {"", "G", "-1G", "0", "nan", "4X", "1e3G", "4GB5", ".5G", "99999999T"})
    EXPECT_THROW(mc::parse_size(bad, "--max-memory"), mc::InvalidArgument) << bad;

  const std::string verify = "verify --impl reference --op mlm --cases 2 ";
  std::vector<std::pair<std::string, std::string>> commands{
      {verify + "--seed -1", ""},
      {verify + "--seed 18446744073709551616", ""},
      {verify + "--seed ''", ""},
      {verify, "MASKCHECK_SEED=-1"},
      {verify + "--seed 1 --plugin-timeout nan", ""},
      {verify + "--seed 1 --counterexamples ''", ""}};
#if MASKCHECK_HAVE_BENCH
  commands.push_back({"bench --min-time nan", ""});
#endif
  for (const auto& [args, env] : commands) {
    const CliResult r = maskcheck_cli(args, env);
    EXPECT_EQ(r.code, 2) << env << " " << args << "\n" << r.out;
    EXPECT_TRUE(contains(r.out, "invalid argument")) << args << "\n" << r.out;
  }
}

// ---- result files -------------------------------------------------------------------------

json verify_file() {
  return {{"schema", "maskcheck.verify/1"},
          {"seed", 1},
          {"cases", 2},
          {"about", {{"commit", "abc"}, {"date", "2026-12-05"}}},
          {"summary", {{"passed", 1}}},
          {"results",
           {{{"implementation", "cpu"},
             {"property", "p"},
             {"status", "passed"},
             {"cases", 2},
             {"skip_reasons", json::object()}}}}};
}

json bench_file(const std::string& name, const std::string& unit = "ms") {
  json doc = {{"context", {{"date", "2026-12-05"}}}, {"benchmarks", json::array()}};
  for (int k = 0; k < 3; ++k)
    doc["benchmarks"].push_back({{"name", name},
                                 {"run_name", name},
                                 {"run_type", "iteration"},
                                 {"repetitions", 3},
                                 {"real_time", 1.0 + 0.1 * k},
                                 {"time_unit", unit}});
  return doc;
}

TEST(Hardening, resultFilesWithFieldsOfTheWrongTypeNameTheFileAndTheField) {
  ASSERT_EQ(mc::reports::doc_kind(verify_file(), "v.json"), mc::reports::DocKind::verify);
  const std::vector<std::pair<std::function<void(json&)>, std::string>> corruptions{
      {[](json& d) { d["results"][0]["status"] = 7; }, "v.json: field results[0].status must be"},
      {[](json& d) { d["results"][0]["status"] = "maybe"; }, "results[0].status must be passed"},
      {[](json& d) { d["about"]["commit"] = 1; }, "field about.commit must be a string"},
      {[](json& d) { d["about"] = "x"; }, "field about must be an object"},
      {[](json& d) { d.erase("results"); }, "field results is missing"},
      {[](json& d) { d["seed"] = -1; }, "field seed must be an unsigned integer"},
      {[](json& d) { d["cases"] = 1e10; }, "field cases must be an integer"},
      {[](json& d) {
         d["results"][0]["skip_reasons"] = {{"x", "y"}};
       },
       "results[0].skip_reasons[\"x\"] must be"},
      {[](json& d) {
         d["results"][0]["counterexample"] = {{{"type", 1}}};
       },
       "results[0].counterexample[0].type must be a string"},
      {[](json& d) { d["results"][0]["counterexample_files"] = {1}; },
       "results[0].counterexample_files[0] must be a string"},
      {[](json& d) { d["summary"]["failed"] = "none"; }, "field summary.failed must be"},
      {[](json& d) {
         d["mutants"] = {{{"killed", "yes"}}};
       },
       "field mutants[0].killed must be"},
      {[](json& d) { d["schema"] = "maskcheck.verify/9"; }, "field schema must be"}};
  for (const auto& [corrupt, expected] : corruptions) {
    json d = verify_file();
    corrupt(d);
    const std::string msg = thrown([&] { mc::reports::doc_kind(d, "v.json"); });
    EXPECT_TRUE(contains(msg, "v.json: ") && contains(msg, expected))
        << "expected '" << expected << "' in: " << msg;
  }
  // An unknown time unit used to be read as seconds and reported as a regression.
  const std::string msg =
      thrown([&] { mc::reports::doc_kind(bench_file("x/maskcheck", "fortnights"), "b.json"); });
  EXPECT_TRUE(contains(msg, "b.json: field benchmarks[0].time_unit must be ns, us, ms or s"))
      << msg;
  json b = bench_file("x/maskcheck");
  b["benchmarks"][1]["real_time"] = "fast";
  EXPECT_TRUE(contains(thrown([&] { mc::reports::doc_kind(b, "b.json"); }),
                       "benchmarks[1].real_time must be a number"));
}

TEST(Hardening, htmlInNamesIsEscapedInTheMarkdownOfReportAndCompare) {
  const std::string evil = "cpu/<img src=x onerror=alert(1)>|`x`/maskcheck";
  const std::string md = mc::reports::markdown_report({bench_file(evil)});
  EXPECT_FALSE(contains(md, "<img")) << md;
  EXPECT_TRUE(contains(md, "| cpu/&lt;img src=x onerror=alert(1)&gt;\\|\\`x\\` | maskcheck |"))
      << md;
  json v = verify_file();
  v["results"][0]["implementation"] = "<script>alert(1)</script>";
  v["results"][0]["property"] = "p|q";
  const std::string vmd = mc::reports::markdown_report({v});
  EXPECT_FALSE(contains(vmd, "<script>")) << vmd;
  EXPECT_TRUE(contains(vmd, "p\\|q")) << vmd;

  mc::reports::ResultSet a, n;
  a.path = "a.json";
  a.bench = bench_file(evil);
  a.bench_path = "a.json";
  n = a;
  n.path = n.bench_path = "n.json";
  const auto c = mc::reports::compare_results(a, n, {});
  const std::string cmd = mc::reports::compare_markdown(c);
  for (std::size_t at = cmd.find("<img"); at != std::string::npos; at = cmd.find("<img", at + 1))
    EXPECT_TRUE(contains(cmd.substr(at - 7, 7), "``cpu/")) << cmd;  // only inside code spans
}

TEST(Hardening, gateRegexOnThirtyThousandCharacterNamesNeitherCrashesNorHangs) {
  // std::regex recursed per character and overflowed the stack on such names.
  const std::string name = std::string(30000, 'a') + "/maskcheck";
  mc::reports::ResultSet a, n;
  a.path = a.bench_path = "a.json";
  a.bench = bench_file(name);
  n = a;
  n.path = n.bench_path = "n.json";
  mc::reports::CompareOptions o;
  o.gate = "(a|b)*/maskcheck$";
  const auto start = std::chrono::steady_clock::now();
  const auto c = mc::reports::compare_results(a, n, o);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
  ASSERT_EQ(c.bench.size(), 1u);
  EXPECT_TRUE(c.bench[0].gated);
  o.gate = "(a";
  EXPECT_THROW(mc::reports::validate(o), std::invalid_argument);
}

}  // namespace
