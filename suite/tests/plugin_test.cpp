// The plugin ABI end to end, through the command line: the example plugin passes the catalogue;
// a plugin that crashes or hangs fails (exit 1) while every other result is kept; a plugin with
// a masking bug is caught; libraries that are not usable plugins are input errors (exit 2).
// The test plugins are the example with one fault each (suite/tests/plugins/faulty_plugin.c).
#include <gtest/gtest.h>

#include <signal.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <thread>

#include "cli_run.hpp"
#include "maskcheck/suite/io.hpp"
#include "maskcheck/suite/runner.hpp"

namespace {

using maskcheck::testing::CliResult;
using maskcheck::testing::maskcheck_cli;
using maskcheck::testing::temp_path;

const std::string kCi = "MASKCHECK_CI=1";  // 30 cases per property

std::string test_plugin(const std::string& fault) {
  return std::string(TEST_PLUGIN_DIR) + "/libmaskcheck_test_plugin_" + fault + ".so";
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

// The rows of a verify JSON, by property.
std::map<std::string, nlohmann::json> rows_by_property(const nlohmann::json& j) {
  std::map<std::string, nlohmann::json> rows;
  for (const auto& r : j.at("results")) rows[r.at("property").get<std::string>()] = r;
  return rows;
}

TEST(Plugin, examplePassesTheCatalogue) {
  const std::string json = temp_path("example.json");
  const CliResult r = maskcheck_cli(
      "verify --plugin " + std::string(EXAMPLE_PLUGIN) + " --seed 11 --json " + json, kCi);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_TRUE(contains(r.out, "replay: maskcheck verify --impl plugin:example --plugin ")) << r.out;
  const auto j = maskcheck::read_json_file(json);
  EXPECT_EQ(j.at("summary").at("failed"), 0);
  EXPECT_EQ(j.at("summary").at("error"), 0);
  EXPECT_GE(j.at("summary").at("passed").get<int>(), 27);  // softmax, attention, cross-entropy
  EXPECT_EQ(j.at("plugins").at(0).at("name"), "example");
  EXPECT_EQ(j.at("plugins").at(0).at("abi"), "1.0");
  for (const auto& row : j.at("results")) {
    EXPECT_EQ(row.at("implementation"), "plugin:example");
    if (row.at("status") == "passed") {
      EXPECT_GT(row.at("cases").get<int>(), 0) << row.dump();
    }
  }
}

TEST(Plugin, keepTensorVariantPassesAndInProcessRunsToo) {
  CliResult r = maskcheck_cli("verify --plugin " + test_plugin("keep") + " --seed 3 --cases 15");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_TRUE(contains(r.out, "keep-mask tensor")) << r.out;
  r = maskcheck_cli("verify --plugin " + std::string(EXAMPLE_PLUGIN) +
                    " --in-process --op softmax --cases 5 --seed 3");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_TRUE(contains(r.out, " --in-process --op softmax --seed 3")) << r.out;
}

TEST(Plugin, pluginsRunBesideBuiltInImplementations) {
  const std::string json = temp_path("peers.json");
  const CliResult r =
      maskcheck_cli("verify --impl reference --plugin " + std::string(EXAMPLE_PLUGIN) +
                    " --property softmax.agreesWithReference --cases 5 --seed 2 "
                    "--json " +
                    json);
  ASSERT_EQ(r.code, 0) << r.out;
  std::set<std::string> impls;
  const auto j = maskcheck::read_json_file(json);
  for (const auto& row : j.at("results")) impls.insert(row.at("implementation").get<std::string>());
  EXPECT_EQ(impls, (std::set<std::string>{"reference", "plugin:example"}));
}

TEST(Plugin, crashFailsItsPropertiesAndKeepsEveryOtherResult) {
  const std::string json = temp_path("crash.json");
  const CliResult r =
      maskcheck_cli("verify --plugin " + test_plugin("crash") + " --seed 5 --json " + json, kCi);
  ASSERT_EQ(r.code, 1) << r.out;
  const auto j = maskcheck::read_json_file(json);
  int attention = 0, others = 0;
  for (const auto& [name, row] : rows_by_property(j)) {
    if (row.at("op") == "attention" && name != "attention.varlenEqualsPadded") {
      ++attention;
      EXPECT_EQ(row.at("status"), "failed") << row.dump();
      const std::string msg = row.value("message", "");
      EXPECT_TRUE(contains(msg, "crashed: the worker ")) << msg;
      EXPECT_TRUE(contains(msg, "inside plugin:crash attention_forward")) << msg;
      EXPECT_TRUE(contains(msg, "attention ")) << msg;  // the problem it was running
      EXPECT_TRUE(
          contains(row.at("replay").get<std::string>(),
                   "--impl plugin:crash --plugin " + test_plugin("crash") + " --property " + name))
          << row.dump();
    } else if (row.at("op") == "softmax" || row.at("op") == "cross_entropy") {
      ++others;
      EXPECT_EQ(row.at("status"), "passed") << row.dump();
    }
  }
  EXPECT_GE(attention, 10);
  EXPECT_GE(others, 10);
  EXPECT_TRUE(contains(r.out, "FAILED plugin:crash attention.agreesWithReference")) << r.out;
}

TEST(Plugin, hangIsKilledAtTheTimeoutAndTheRunGoesOn) {
  const std::string json = temp_path("hang.json");
  const auto start = std::chrono::steady_clock::now();
  const CliResult r = maskcheck_cli(
      "verify --plugin " + test_plugin("hang") +
      " --property attention.agreesWithReference,softmax.agreesWithReference,"
      "cross_entropy.agreesWithReference --plugin-timeout 1 --cases 10 --seed 5 --json " +
      json);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_EQ(r.code, 1) << r.out;
  EXPECT_LT(seconds, 60);
  auto rows = rows_by_property(maskcheck::read_json_file(json));
  const std::string msg = rows.at("attention.agreesWithReference").value("message", "");
  EXPECT_EQ(rows.at("attention.agreesWithReference").at("status"), "failed");
  EXPECT_TRUE(contains(msg,
                       "timed out: the worker was silent for 1 s inside plugin:hang "
                       "attention_forward"))
      << msg;
  EXPECT_TRUE(contains(msg, "killed it with SIGKILL")) << msg;
  EXPECT_TRUE(contains(rows.at("attention.agreesWithReference").at("replay").get<std::string>(),
                       "--plugin-timeout 1"));
  EXPECT_EQ(rows.at("softmax.agreesWithReference").at("status"), "passed");
  EXPECT_EQ(rows.at("cross_entropy.agreesWithReference").at("status"), "passed");
}

TEST(Plugin, aLeakingPluginIsKilledAtItsMemoryLimit) {
  // 64 MiB resident per call and never freed: without a limit it runs until the machine does.
  const std::string json = temp_path("leak.json");
  const CliResult r =
      maskcheck_cli("verify --plugin " + test_plugin("leak") +
                    " --property attention.agreesWithReference,softmax.agreesWithReference "
                    "--plugin-memory 400M --cases 100 --seed 5 --no-counterexamples --json " +
                    json);
  ASSERT_EQ(r.code, 1) << r.out;
  auto rows = rows_by_property(maskcheck::read_json_file(json));
  const auto& att = rows.at("attention.agreesWithReference");
  EXPECT_EQ(att.at("status"), "failed") << att.dump();
  const std::string msg = att.value("message", "");
  EXPECT_TRUE(contains(msg, "over its limit: the plugin's")) << msg;
  EXPECT_TRUE(contains(msg, "above --plugin-memory 0.39 GiB")) << msg;
  EXPECT_TRUE(contains(msg, "inside plugin:leak attention_forward")) << msg;
  EXPECT_TRUE(contains(att.at("replay").get<std::string>(), "--plugin-memory 419430400"))
      << att.dump();
  EXPECT_EQ(rows.at("softmax.agreesWithReference").at("status"), "passed");
  EXPECT_EQ(maskcheck_cli("verify --plugin " + test_plugin("leak") + " --plugin-memory 0").code, 2);
}

TEST(Plugin, processesAPluginLeavesBehindAreKilled) {
  // The plugin forks, its child calls setsid and forks again, and exits: the grandchild sleeps
  // forever in a session of its own, out of the worker's process group.
  const std::string pids = temp_path("orphans.txt");
  std::filesystem::remove(pids);
  const CliResult r = maskcheck_cli("verify --plugin " + test_plugin("orphan") +
                                        " --property attention.agreesWithReference --cases 5 "
                                        "--seed 5 --no-counterexamples",
                                    "MASKCHECK_TEST_ORPHAN_FILE=" + pids);
  ASSERT_EQ(r.code, 0) << r.out;
  std::ifstream in(pids);
  int pid = 0, seen = 0;
  while (in >> pid) {
    ++seen;
    bool gone = false;
    for (int i = 0; i < 100 && !gone; ++i) {  // reaped by the sandbox, else by init
      gone = ::kill(pid, 0) != 0 && errno == ESRCH;
      if (!gone) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    EXPECT_TRUE(gone) << "the plugin's orphan " << pid << " is still running";
    if (!gone) ::kill(pid, SIGKILL);
  }
  EXPECT_GE(seen, 1) << r.out;
}

TEST(Plugin, maskingBugIsCaught) {
  // The padding side ignored: left-padded batches are read as right-padded.
  const std::string json = temp_path("right_padding.json");
  const CliResult r = maskcheck_cli("verify --plugin " + test_plugin("right_padding") +
                                    " --property attention.agreesWithReference,"
                                    "softmax.agreesWithReference --cases 100 --seed 1 --json " +
                                    json);
  ASSERT_EQ(r.code, 1) << r.out;
  auto rows = rows_by_property(maskcheck::read_json_file(json));
  const auto& att = rows.at("attention.agreesWithReference");
  EXPECT_EQ(att.at("status"), "failed") << att.dump();
  ASSERT_TRUE(att.contains("counterexample")) << att.dump();
  EXPECT_TRUE(contains(att.at("counterexample").dump(), "padding=left")) << att.dump();
  EXPECT_EQ(rows.at("softmax.agreesWithReference").at("status"), "passed");
  EXPECT_TRUE(contains(r.out, "shrunk counterexample")) << r.out;

  // The worker saved the shrunk case; maskcheck eval replays it against the plugin.
  ASSERT_TRUE(att.contains("counterexample_files")) << att.dump();
  const std::string file = att.at("counterexample_files").at(0).get<std::string>();
  EXPECT_TRUE(std::filesystem::exists(file)) << file;
  const CliResult e = maskcheck_cli("eval attention --impl plugin:right_padding --plugin " +
                                    test_plugin("right_padding") + " --in " + file);
  EXPECT_EQ(e.code, 0) << e.out;
  EXPECT_TRUE(contains(e.out, "--impl plugin:right_padding")) << e.out;
  EXPECT_EQ(maskcheck_cli("eval attention --impl plugin:right_padding --in " + file).code, 2);
}

TEST(Plugin, namedDeviationsAreReportedAndStrictFailsThem) {
  // Log-sum-exp +inf for an empty row is FlashAttention's convention, not a masking bug: a named
  // deviation, which --strict (passed on to the workers) turns into a failure.
  const std::string json = temp_path("lse_inf.json");
  const std::string args = "verify --plugin " + test_plugin("lse_inf") +
                           " --property attention.agreesWithReference --cases 100 --seed 1";
  CliResult r = maskcheck_cli(args + " --json " + json);
  ASSERT_EQ(r.code, 0) << r.out;
  const auto row =
      rows_by_property(maskcheck::read_json_file(json)).at("attention.agreesWithReference");
  EXPECT_EQ(row.at("status"), "deviation") << row.dump();
  EXPECT_TRUE(row.at("deviations").contains("empty_row_lse")) << row.dump();
  r = maskcheck_cli(args + " --strict --no-counterexamples");
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_TRUE(contains(r.out, "empty_row_lse")) << r.out;
}

TEST(Plugin, outputRowsLeftUnwrittenFailInsteadOfPassingAsNanRows) {
  // Outputs are poisoned with a signaling NaN: rows a plugin never wrote used to read back as
  // NaN rows and pass as the fully_masked_row_nan convention (exit 0 without --strict).
  const CliResult r = maskcheck_cli("verify --plugin " + test_plugin("unwritten") +
                                    " --property attention.agreesWithReference,"
                                    "attention.rowsSumToOneOrAreZero --cases 100 --seed 3 "
                                    "--no-counterexamples");
  ASSERT_EQ(r.code, 1) << r.out;
  EXPECT_TRUE(contains(r.out, "attention_forward left ")) << r.out;
  EXPECT_TRUE(contains(r.out, "elements of out unwritten")) << r.out;
  EXPECT_FALSE(contains(r.out, "fully_masked_row_nan")) << r.out;
}

TEST(Plugin, writePastAnOutputIsCaught) {
  const CliResult r = maskcheck_cli("verify --plugin " + test_plugin("overrun") +
                                    " --property attention.agreesWithReference --cases 5 --seed 1 "
                                    "--no-counterexamples");
  ASSERT_EQ(r.code, 1) << r.out;
  EXPECT_TRUE(contains(r.out, "attention_forward wrote past the end of out")) << r.out;
}

TEST(Plugin, unsupportedCasesAreSkippedWithThePluginsReason) {
  const std::string json = temp_path("picky.json");
  const CliResult r = maskcheck_cli("verify --plugin " + test_plugin("picky") +
                                    " --op attention --cases 40 --seed 4 --json " + json);
  ASSERT_EQ(r.code, 0) << r.out;
  // The other cases of the same properties still ran and passed.
  int skipped = 0, passed_beside = 0;
  const auto j = maskcheck::read_json_file(json);
  for (const auto& row : j.at("results"))
    if (row.at("skip_reasons").contains("picky plugin: no packed documents")) {
      skipped += row.at("skip_reasons").at("picky plugin: no packed documents").get<int>();
      passed_beside += row.at("status") == "passed" && row.at("cases").get<int>() > 0;
    }
  EXPECT_GT(skipped, 0);
  EXPECT_GE(passed_beside, 10);
}

TEST(Plugin, abiMismatchIsAnInputError) {
  CliResult r = maskcheck_cli("verify --plugin " + test_plugin("abi2"));
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_TRUE(contains(r.out,
                       "plugin ABI version mismatch: the plugin reports ABI 2.0, this "
                       "maskcheck speaks ABI 1.0"))
      << r.out;
  r = maskcheck_cli("verify --plugin " + test_plugin("abi_newer"));
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_TRUE(contains(r.out, "built for ABI 1.7, newer than this maskcheck's 1.0")) << r.out;
}

TEST(Plugin, unusableLibrariesAreInputErrors) {
  const std::string text = temp_path("not_a_library.so");
  std::ofstream(text) << "not an ELF file\n";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"/nonexistent/libnothing.so", "no such file"},
      {text, "cannot load it as a shared library"},
      {std::filesystem::path(text).parent_path().string(), "is a directory"},
      {test_plugin("no_entry"), "no symbol maskcheck_plugin_v1: not a maskcheck plugin"},
      {test_plugin("load"), "crashed while loading"},
  };
  for (const auto& [path, message] : cases) {
    for (const std::string cmd : {"verify --plugin ", "list --plugin "}) {
      const CliResult r = maskcheck_cli(cmd + path);
      EXPECT_EQ(r.code, 2) << cmd << path << "\n" << r.out;
      EXPECT_TRUE(contains(r.out, message)) << cmd << path << "\n" << r.out;
    }
  }
  CliResult r =
      maskcheck_cli("verify --plugin " + test_plugin("load_hang") + " --plugin-timeout 1");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_TRUE(contains(r.out, "did not finish loading: the worker was silent for 1 s")) << r.out;
  r = maskcheck_cli("verify --mutants --plugin " + std::string(EXAMPLE_PLUGIN));
  EXPECT_EQ(r.code, 2) << r.out;
}

TEST(Plugin, listShowsWhatThePluginDeclares) {
  const CliResult r = maskcheck_cli("list --json --plugin " + test_plugin("keep"));
  ASSERT_EQ(r.code, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  bool found = false;
  for (const auto& impl : j.at("implementations"))
    if (impl.at("name") == "plugin:keep") {
      found = true;
      EXPECT_EQ(impl.at("plugin").at("device"), "cpu");
      EXPECT_EQ(impl.at("plugin").at("keep_tensor"), true);
      EXPECT_EQ(impl.at("plugin").at("lse"), false);
      EXPECT_EQ(impl.at("operations").size(), 3u);
    }
  EXPECT_TRUE(found) << r.out;
}

// The worker's results cross a pipe as JSON: nothing may be lost on the way.
TEST(Plugin, outcomesRoundTripThroughJson) {
  maskcheck::PropertyOutcome o;
  o.implementation = "plugin:x";
  o.property = "attention.agreesWithReference";
  o.op = maskcheck::Op::attention;
  o.status = maskcheck::Status::failed;
  o.cases = 7;
  o.skipped_cases = 2;
  o.skip_reasons = {{"no f16", 2}};
  o.coverage = {{"causal", 3}, {"f32", 7}};
  o.message = "out: 3 mismatching elements\n  out(b=0, h=0, q=1, d=0) got 1 want 2";
  o.counterexample = {{"case", "attention f32 ..."}, {"b", "0"}};
  o.seed = 18446744073709551615ull;
  o.seconds = 0.25;
  o.max_errors = {{"out", 1.5, std::numeric_limits<double>::infinity(), 3}};
  o.replay = "maskcheck verify --plugin '/a b/x.so'";
  const auto back =
      maskcheck::outcome_from_json(nlohmann::json::parse(maskcheck::outcome_json(o).dump()));
  EXPECT_EQ(maskcheck::outcome_json(back), maskcheck::outcome_json(o));
  ASSERT_EQ(back.max_errors.size(), 1u);
  EXPECT_TRUE(std::isinf(back.max_errors[0].max_rel_err));  // JSON null, read back as +inf
}

TEST(Plugin, replayQuotesPluginPathsForTheShell) {
  maskcheck::VerifyConfig c;
  c.seed = 9;
  c.cases = 4;
  c.impls = "plugin:x";
  c.plugins = {{"plugin:x", "/tmp/a dir/it's.so"}};
  EXPECT_EQ(maskcheck::replay_command(c, "plugin:x", "softmax.deterministic"),
            "maskcheck verify --impl plugin:x --plugin '/tmp/a dir/it'\\''s.so' --property "
            "softmax.deterministic --seed 9 --cases 4");
  EXPECT_EQ(
      maskcheck::replay_command(c, "reference", "softmax.deterministic"),
      "maskcheck verify --impl reference --property softmax.deterministic --seed 9 --cases 4");
}

}  // namespace
