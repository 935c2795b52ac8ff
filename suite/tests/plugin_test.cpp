// The plugin ABI end to end, through the command line: the example plugin passes the catalogue,
// its attention backward (ABI 1.2) included; a plugin that crashes or hangs fails (exit 1) while
// every other result is kept; a plugin with a masking bug, in the forward or the backward, is
// caught; libraries that are not usable plugins are input errors (exit 2).
// The test plugins are the example with one fault each (suite/tests/plugins/faulty_plugin.c).
#include <gtest/gtest.h>

#include <signal.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "cli_run.hpp"
#include "maskcheck/plugin.h"
#include "maskcheck/suite/call.hpp"
#include "maskcheck/suite/cases.hpp"
#include "maskcheck/suite/io.hpp"
#include "maskcheck/suite/runner.hpp"
#include "maskcheck/suite/safetensors.hpp"

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

// The signal a NULL dereference in a plugin kills its process with: SIGSEGV, or under
// AddressSanitizer (the asan preset's ASAN_OPTIONS has abort_on_error=1) SIGABRT after its report.
#if defined(__SANITIZE_ADDRESS__)
const std::string kSegv = "SIGABRT";
#else
const std::string kSegv = "SIGSEGV";
#endif

// The first match of `re` in s (empty when none); s must outlive it.
std::smatch match(const std::string& s, const std::string& re) {
  std::smatch m;
  std::regex_search(s, m, std::regex(re));
  return m;
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
  // softmax, attention forward and backward, cross-entropy
  EXPECT_GE(j.at("summary").at("passed").get<int>(), 33);
  EXPECT_EQ(j.at("plugins").at(0).at("name"), "example");
  EXPECT_EQ(j.at("plugins").at(0).at("abi"), "1.5");
  EXPECT_EQ(j.at("plugins").at(0).at("varlen"), true);
  EXPECT_EQ(j.at("plugins").at(0).at("attention_backward"),
            (nlohmann::json{"f64", "f32", "f16", "bf16"}));
  int backward = 0;
  for (const auto& row : j.at("results")) {
    EXPECT_EQ(row.at("implementation"), "plugin:example");
    if (row.at("status") == "passed") {
      EXPECT_GT(row.at("cases").get<int>(), 0) << row.dump();
    }
    if (row.at("property").get<std::string>().starts_with("attention.backward.")) {
      ++backward;
      EXPECT_EQ(row.at("status"), "passed") << row.dump();
      EXPECT_GT(row.at("cases").get<int>(), 10) << row.dump();
    }
  }
  EXPECT_EQ(backward, 6);
  // ABI 1.2's upstream gradient of cross-entropy, in every dtype.
  EXPECT_EQ(j.at("plugins").at(0).at("cross_entropy_upstream"),
            (nlohmann::json{"f64", "f32", "f16", "bf16"}));
  const auto rows = rows_by_property(j);
  for (const char* name : {"cross_entropy.upstream.agreesWithReference",
                           "cross_entropy.upstream.ignoredRowsNeverReadTheirs"}) {
    EXPECT_EQ(rows.at(name).at("status"), "passed") << rows.at(name).dump();
    EXPECT_GT(rows.at(name).at("cases").get<int>(), 10) << rows.at(name).dump();
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

// --no-shrink: each attention property's first crash is enough here (shrinking a crash is
// aCrashOnOneShapeIsShrunkAndSavedWithItsSignal's); under ASan every crash of a shrink costs the
// worker's sanitizer report, which made this test 4 of the ASan stage's minutes.
TEST(Plugin, crashFailsItsPropertiesAndKeepsEveryOtherResult) {
  const std::string json = temp_path("crash.json");
  const CliResult r = maskcheck_cli(
      "verify --plugin " + test_plugin("crash") + " --seed 5 --no-shrink --json " + json, kCi);
  ASSERT_EQ(r.code, 1) << r.out;
  const auto j = maskcheck::read_json_file(json);
  int attention = 0, others = 0;
  for (const auto& [name, row] : rows_by_property(j)) {
    if (name.starts_with("attention.backward.")) {  // the plugin has no backward: never called
      EXPECT_EQ(row.at("status"), "skipped") << row.dump();
      EXPECT_TRUE(contains(row.at("skip_reasons").dump(),
                           "plugin:crash has no attention_backward: its "
                           "attention_backward_dtypes is 0"))
          << row.dump();
    } else if (row.at("op") == "attention" && name != "attention.varlenEqualsPadded") {
      ++attention;
      EXPECT_EQ(row.at("status"), "failed") << row.dump();
      const std::string msg = row.value("message", "");
      EXPECT_TRUE(contains(msg, "crashed: the worker died of " + kSegv)) << msg;
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
  // The limit leaves room for an ASan worker on the long softmax rows of the default cases.
  const std::string json = temp_path("leak.json");
  const CliResult r =
      maskcheck_cli("verify --plugin " + test_plugin("leak") +
                    " --property attention.agreesWithReference,softmax.agreesWithReference "
                    "--plugin-memory 1536M --cases 100 --seed 5 --no-counterexamples --json " +
                    json);
  ASSERT_EQ(r.code, 1) << r.out;
  auto rows = rows_by_property(maskcheck::read_json_file(json));
  const auto& att = rows.at("attention.agreesWithReference");
  EXPECT_EQ(att.at("status"), "failed") << att.dump();
  const std::string msg = att.value("message", "");
  EXPECT_TRUE(contains(msg, "over its limit: the plugin's")) << msg;
  EXPECT_TRUE(contains(msg, "above --plugin-memory 1.50 GiB")) << msg;
  // The sandbox polls the worker's memory: it kills it inside the call that crossed the limit,
  // or, when the poll comes just after that call returned, after it (the message says which).
  EXPECT_TRUE(contains(msg, "inside plugin:leak attention_forward") ||
              contains(msg, "after plugin:leak attention_forward"))
      << msg;
  EXPECT_TRUE(contains(att.at("replay").get<std::string>(), "--plugin-memory 1610612736"))
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

  // The file's own eval command runs as written: it names the library.
  const auto meta = maskcheck::safetensors::read_file(file).metadata;
  const std::string command = meta.at("maskcheck.eval");
  EXPECT_TRUE(contains(command, "--plugin " + test_plugin("right_padding"))) << command;
  ASSERT_EQ(command.rfind("maskcheck eval ", 0), 0u) << command;
  const CliResult again = maskcheck_cli(command.substr(std::string("maskcheck ").size()));
  EXPECT_EQ(again.code, 0) << command << "\n" << again.out;
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
                       "maskcheck speaks ABI 1.5"))
      << r.out;
  r = maskcheck_cli("verify --plugin " + test_plugin("abi_newer"));
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_TRUE(contains(r.out, "built for ABI 1.7, newer than this maskcheck's 1.5")) << r.out;
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
      {test_plugin("backward_dtypes"),
       "attention_backward_dtypes has 0xd beyond attention_dtypes 0x2 (the backward runs on "
       "attention's cases"},
      {test_plugin("ce_upstream_dtypes"),
       "cross_entropy_upstream_dtypes has 0xd beyond cross_entropy_dtypes 0x2 (grad_output is an "
       "input of cross_entropy)"},
      {test_plugin("mods_unknown"), "score_modifiers has unknown bits 0x8"},
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
      EXPECT_EQ(impl.at("plugin").at("attention_backward").size(), 4u);
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

// ---- ABI 1.1 -------------------------------------------------------------------------------

TEST(PluginAbi11, aPluginBuiltAgainstAbi10StillLoadsAndPasses) {
  // Its table is followed by 0xFF bytes where ABI 1.1's fields would be.
  const std::string json = temp_path("abi10.json");
  const CliResult r = maskcheck_cli("verify --plugin " + test_plugin("abi10") +
                                    " --seed 4 --cases 20 --json " + json);
  ASSERT_EQ(r.code, 0) << r.out;
  const auto j = maskcheck::read_json_file(json);
  EXPECT_EQ(j.at("plugins").at(0).at("abi"), "1.0");
  EXPECT_EQ(j.at("plugins").at(0).at("storage"), nlohmann::json::object());
  EXPECT_EQ(j.at("plugins").at(0).at("attention_backward"), nlohmann::json::array());
  EXPECT_GE(j.at("summary").at("passed").get<int>(), 5);
}

TEST(PluginAbi11, mixedStorageOfACorrectKernelPasses) {
  // f16 attention with q and out in float32, k and v in float16, as llama.cpp stores them.
  const CliResult l = maskcheck_cli("list --json --plugin " + test_plugin("storage"));
  ASSERT_EQ(l.code, 0) << l.out;
  const auto listed = nlohmann::json::parse(l.out);
  for (const auto& impl : listed.at("implementations"))
    if (impl.at("name") == "plugin:storage") {
      const auto& st = impl.at("plugin").at("storage").at("f16");
      EXPECT_EQ(st.at("q"), "f32");
      EXPECT_EQ(st.at("k"), "f16");
      EXPECT_EQ(st.at("v"), "f16");
      EXPECT_EQ(st.at("out"), "f32");
    }
  const std::string json = temp_path("storage.json");
  const CliResult r = maskcheck_cli(
      "verify --plugin " + test_plugin("storage") + " --dtype f16 --seed 6 --json " + json, kCi);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_TRUE(contains(r.out, "f16 stores q=f32,out=f32")) << r.out;
  const auto j = maskcheck::read_json_file(json);
  int checked = 0, backward = 0;
  for (const auto& row : j.at("results")) {
    EXPECT_EQ(row.at("coverage").value("f32", 0), 0) << row.dump();  // --dtype f16 only
    checked += row.at("cases").get<int>();
    // The backward in the same storage: dout as out (f32), dq as q (f32), dk and dv as k, v (f16).
    if (row.at("property").get<std::string>().starts_with("attention.backward.")) {
      EXPECT_EQ(row.at("status"), "passed") << row.dump();
      backward += row.at("status") == "passed";
    }
  }
  EXPECT_GT(checked, 100);
  EXPECT_EQ(backward, 6);
}

TEST(PluginAbi11, mixedStorageHandsEachTensorInItsDtypeAndTheReferenceTheSameValues) {
  // In process: the values of q reach the plugin in float32 (not rounded to the case's f16), k in
  // float16; the recorded call keeps both, and the case file says so.
  const std::string dir = temp_path("storage_ce");
  std::filesystem::remove_all(dir);
  const CliResult r = maskcheck_cli("verify --plugin " + test_plugin("storage") +
                                    " --property attention.deterministic --dtype f16 --cases 3 "
                                    "--seed 2 --counterexamples " +
                                    dir);
  ASSERT_EQ(r.code, 0) << r.out;
  maskcheck::AttentionCase c;
  c.dtype = maskcheck::DType::f16;
  c.storage = maskcheck::Storage::of(maskcheck::DType::f16);
  c.storage->q = c.storage->out = maskcheck::DType::f32;
  c.problem.mask.Lq = c.problem.mask.Lk = 4;
  c.problem.D = 8;
  c.data_seed = 3;
  const auto d = maskcheck::make_data(c);
  EXPECT_FALSE(maskcheck::safetensors::exactly_representable(d.q, maskcheck::DType::f16));
  EXPECT_TRUE(maskcheck::safetensors::exactly_representable(d.q, maskcheck::DType::f32));
  EXPECT_TRUE(maskcheck::safetensors::exactly_representable(d.k, maskcheck::DType::f16));
  // A case file of it: q in F32, k in F16, maskcheck.storage naming q and out.
  maskcheck::AttentionCall call{c.problem, c.dtype, d.q, d.k, d.v, false, c.storage};
  const auto f = maskcheck::encode_case(call);
  EXPECT_EQ(f.tensors.at("q").dtype, maskcheck::safetensors::Dtype::F32);
  EXPECT_EQ(f.tensors.at("k").dtype, maskcheck::safetensors::Dtype::F16);
  EXPECT_EQ(nlohmann::json::parse(f.metadata.at("maskcheck.storage")),
            (nlohmann::json{{"q", "f32"}, {"out", "f32"}}));
  const std::string path = temp_path("storage_case.safetensors");
  maskcheck::safetensors::write_file(path, f);
  const auto back = std::get<maskcheck::AttentionCall>(
      maskcheck::decode_case(maskcheck::safetensors::read_file(path), path));
  EXPECT_EQ(back.q, d.q);
  ASSERT_TRUE(back.storage.has_value());
  EXPECT_EQ(back.storage->q, maskcheck::DType::f32);
  // eval hands it to the plugin as is; the example (f16 for every tensor) cannot take its q.
  CliResult e =
      maskcheck_cli("eval attention --plugin " + test_plugin("storage") + " --in " + path);
  EXPECT_EQ(e.code, 0) << e.out;
  e = maskcheck_cli("eval attention --plugin " + std::string(EXAMPLE_PLUGIN) + " --in " + path);
  EXPECT_EQ(e.code, 2) << e.out;
  EXPECT_TRUE(contains(e.out, "q holds values that are not exact in f16")) << e.out;
}

TEST(PluginAbi11, aKernelThatRoundsMoreThanItDeclaresFails) {
  // Declares float32 k and v, rounds them to float16.
  const CliResult r = maskcheck_cli("verify --plugin " + test_plugin("overround") +
                                    " --property attention.agreesWithReference --seed 1 "
                                    "--cases 50 --no-counterexamples");
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_TRUE(contains(r.out, "FAILED plugin:overround attention.agreesWithReference")) << r.out;
}

TEST(PluginAbi11, additiveMaskTensorAlone) {
  // The plugin reads only maskcheck_mask.additive (float16 in f16 cases, float32 otherwise) and
  // rejects anything but 0 and -inf in it.
  const CliResult r = maskcheck_cli("verify --plugin " + test_plugin("additive") +
                                        " --seed 8 --json " + temp_path("additive.json"),
                                    kCi);
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_TRUE(contains(r.out, "additive mask tensor")) << r.out;
  EXPECT_TRUE(contains(r.out, "f16 stores mask=f16")) << r.out;
}

TEST(PluginAbi11, varlenRunsForAPluginWithThePackedEntry) {
  const std::string json = temp_path("varlen.json");
  CliResult r =
      maskcheck_cli("verify --plugin " + std::string(EXAMPLE_PLUGIN) +
                        " --property attention.varlenEqualsPadded --seed 3 --json " + json,
                    kCi);
  ASSERT_EQ(r.code, 0) << r.out;
  auto row = rows_by_property(maskcheck::read_json_file(json)).at("attention.varlenEqualsPadded");
  EXPECT_EQ(row.at("status"), "passed") << row.dump();
  EXPECT_GT(row.at("cases").get<int>(), 10) << row.dump();
  // Without the entry (ABI 1.0 tables, or a NULL attention_varlen_forward) it is skipped, saying
  // why.
  r = maskcheck_cli("verify --plugin " + test_plugin("keep") +
                        " --property attention.varlenEqualsPadded --seed 3 --json " + json,
                    kCi);
  ASSERT_EQ(r.code, 0) << r.out;
  row = rows_by_property(maskcheck::read_json_file(json)).at("attention.varlenEqualsPadded");
  EXPECT_EQ(row.at("status"), "skipped") << row.dump();
  EXPECT_TRUE(contains(row.at("skip_reasons").dump(), "has no attention_varlen_forward"))
      << row.dump();
}

TEST(PluginAbi11, aPluginThatDeclinesToLoadSaysWhy) {
  CliResult r = maskcheck_cli("list --plugin " + test_plugin("unavailable"));
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_TRUE(contains(r.out,
                       "the plugin unavailable declines to load: this test plugin needs a "
                       "device this machine does not have"))
      << r.out;
  // NULL from the entry point: what the library printed while loading is shown, all of it.
  r = maskcheck_cli("verify --plugin " + test_plugin("null"));
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_TRUE(contains(r.out, "maskcheck_plugin_v1() returned NULL")) << r.out;
  EXPECT_TRUE(contains(r.out, "null plugin: diagnostic line 1 of 40")) << r.out;
  EXPECT_TRUE(contains(r.out, "null plugin: diagnostic line 40 of 40")) << r.out;
}

TEST(PluginAbi11, aCrashOnOneShapeIsShrunkAndSavedWithItsSignal) {
  const std::string json = temp_path("crash_shape.json");
  const std::string dir = temp_path("crash_shape_ce");
  std::filesystem::remove_all(dir);
  const CliResult r = maskcheck_cli("verify --plugin " + test_plugin("crash_shape") +
                                    " --property attention.agreesWithReference,"
                                    "attention.deterministic --seed 1 --cases 60 --json " +
                                    json + " --counterexamples " + dir);
  ASSERT_EQ(r.code, 1) << r.out;
  const auto row =
      rows_by_property(maskcheck::read_json_file(json)).at("attention.agreesWithReference");
  EXPECT_EQ(row.at("status"), "failed") << row.dump();
  const std::string msg = row.value("message", "");
  EXPECT_TRUE(contains(msg, "crashed: the worker died of " + kSegv)) << msg;
  EXPECT_TRUE(contains(msg, "shrunk with every plugin call in a process of its own")) << msg;
  EXPECT_TRUE(contains(msg, "attention_forward died of " + kSegv)) << msg;
  // Shrunk to the shape it dies on (a head dim with D % 4 == 3, more than 4 keys), one sequence,
  // in the dtype of the case that first killed the worker ("... on attention f16 H=...").
  ASSERT_TRUE(row.contains("counterexample")) << row.dump();
  const std::string ce = row.at("counterexample").at(0).at("value").get<std::string>();
  const std::smatch d = match(ce, R"( D=(\d+) )"), lk = match(ce, R"( Lk=(\d+))");
  ASSERT_FALSE(d.empty()) << ce;
  EXPECT_EQ(std::stoi(d[1]) % 4, 3) << ce;
  EXPECT_GT(std::stoi(lk[1]), 4) << ce;
  EXPECT_TRUE(contains(ce, " B=1 ")) << ce;
  const std::smatch first = match(msg, R"(on attention (\w+) )"),
                    shrunk = match(ce, R"(^attention (\w+))");
  ASSERT_FALSE(first.empty()) << msg;
  ASSERT_FALSE(shrunk.empty()) << ce;
  EXPECT_EQ(first[1].str(), shrunk[1].str()) << "shrinking left the dtype the crash was found in\n"
                                             << msg << "\n"
                                             << ce;
  ASSERT_TRUE(row.contains("counterexample_files")) << row.dump();
  const std::string file = row.at("counterexample_files").at(0).get<std::string>();
  const auto meta = maskcheck::safetensors::read_file(file).metadata;
  EXPECT_EQ(meta.at("maskcheck.signal"), kSegv);
  EXPECT_TRUE(contains(meta.at("maskcheck.output"), "is the shape it dies on"))
      << meta.at("maskcheck.output");
  EXPECT_TRUE(contains(meta.at("maskcheck.eval"), "--plugin " + test_plugin("crash_shape")));
  // Replaying it in process dies the same way.
  const CliResult e = maskcheck_cli("eval attention --plugin " + test_plugin("crash_shape") +
                                    " --in " + file + " --quiet");
  EXPECT_NE(e.code, 0) << e.out;
  EXPECT_TRUE(contains(e.out, "is the shape it dies on")) << e.out;
}

// ---- ABI 1.3: score modifiers
// --------------------------------------------------------------------

TEST(PluginAbi13, modifiersReachTheExampleAndOlderTablesSkipThem) {
  const std::string props =
      " --property attention.agreesWithReference,attention.sinkLogitsLowerRowSums,"
      "attention.softcapSaturates,attention.alibiEqualsPositionDimension";
  const std::string json = temp_path("modifiers.json");
  CliResult r = maskcheck_cli("verify --plugin " + std::string(EXAMPLE_PLUGIN) + props +
                                  " --cases 30 --seed 8 --json " + json,
                              kCi);
  ASSERT_EQ(r.code, 0) << r.out;
  auto j = maskcheck::read_json_file(json);
  EXPECT_EQ(j.at("plugins").at(0).at("score_modifiers"),
            (nlohmann::json{{"softcap", true}, {"alibi", true}, {"sink_logits", true}}));
  auto rows = rows_by_property(j);
  for (const char* name : {"attention.sinkLogitsLowerRowSums", "attention.softcapSaturates",
                           "attention.alibiEqualsPositionDimension"}) {
    EXPECT_EQ(rows.at(name).at("status"), "passed") << rows.at(name).dump();
    EXPECT_EQ(rows.at(name).at("skip_reasons").dump().find("does not"), std::string::npos)
        << rows.at(name).dump();
  }
  // The example's table reporting ABI 1.2: score_modifiers, past the end of such a table, is not
  // read, and the modifier properties are skipped naming what it lacks.
  r = maskcheck_cli("verify --plugin " + test_plugin("abi12_table") + props +
                        " --cases 10 --seed 8 --json " + json,
                    kCi);
  ASSERT_EQ(r.code, 0) << r.out;
  j = maskcheck::read_json_file(json);
  EXPECT_EQ(j.at("plugins").at(0).at("score_modifiers"),
            (nlohmann::json{{"softcap", false}, {"alibi", false}, {"sink_logits", false}}));
  rows = rows_by_property(j);
  EXPECT_EQ(rows.at("attention.agreesWithReference").at("status"), "passed");
  const std::pair<const char*, const char*> skipped[] = {
      {"attention.sinkLogitsLowerRowSums", "plugin:abi does not take learned sink logits"},
      {"attention.softcapSaturates", "plugin:abi does not apply logit soft-capping"},
      {"attention.alibiEqualsPositionDimension", "plugin:abi does not apply ALiBi"}};
  for (const auto& [name, why] : skipped) {
    EXPECT_EQ(rows.at(name).at("status"), "skipped") << rows.at(name).dump();
    EXPECT_TRUE(contains(rows.at(name).at("skip_reasons").dump(), why)) << rows.at(name).dump();
  }
}

TEST(PluginAbi13, anIgnoredSinkLogitIsCaught) {
  const std::string json = temp_path("sink_ignored.json");
  const CliResult r = maskcheck_cli("verify --plugin " + test_plugin("sink_ignored") +
                                        " --property attention.sinkLogitsLowerRowSums --cases 30 "
                                        "--seed 9 --no-counterexamples --json " +
                                        json,
                                    kCi);
  ASSERT_EQ(r.code, 1) << r.out;
  const auto row =
      rows_by_property(maskcheck::read_json_file(json)).at("attention.sinkLogitsLowerRowSums");
  EXPECT_EQ(row.at("status"), "failed") << row.dump();
}

// ---- ABI 1.4: attention sinks ------------------------------------------------------------------

TEST(PluginAbi14, sinksReachTheExampleAndOlderTablesSkipThem) {
  const std::string props =
      " --property masks.sinksAreTheWindowPlusTheSegmentsFirstKeys,attention.sinksSurviveTheWindow,"
      "attention.agreesWithReference";
  const std::string json = temp_path("sinks.json");
  CliResult r = maskcheck_cli("verify --plugin " + std::string(EXAMPLE_PLUGIN) + props +
                                  " --cases 30 --seed 8 --json " + json,
                              kCi);
  ASSERT_EQ(r.code, 0) << r.out;
  auto rows = rows_by_property(maskcheck::read_json_file(json));
  EXPECT_EQ(rows.at("attention.sinksSurviveTheWindow").at("status"), "passed")
      << rows.at("attention.sinksSurviveTheWindow").dump();
  // A 1.3 table (no sink_tokens in its mask descriptor, no mask tensor): not given such masks.
  r = maskcheck_cli("verify --plugin " + test_plugin("abi13_table") + props +
                        " --cases 10 --seed 8 --json " + json,
                    kCi);
  ASSERT_EQ(r.code, 0) << r.out;
  rows = rows_by_property(maskcheck::read_json_file(json));
  const auto& row = rows.at("attention.sinksSurviveTheWindow");
  EXPECT_EQ(row.at("status"), "skipped") << row.dump();
  EXPECT_TRUE(contains(row.at("skip_reasons").dump(),
                       "is not given masks with attention sinks: its mask descriptor has them "
                       "from ABI 1.4 on"))
      << row.dump();
  EXPECT_EQ(rows.at("attention.agreesWithReference").at("status"), "passed");
}

TEST(PluginAbi15, pagedCachesAndKeyChunksReachTheExampleAndOlderTablesSkipThem) {
  const std::string props =
      " --property attention.pagedEqualsContiguous,attention.splitKvMergesToUnsplit";
  const std::string json = temp_path("paged.json");
  CliResult r = maskcheck_cli("verify --plugin " + std::string(EXAMPLE_PLUGIN) + props +
                                  " --cases 30 --seed 8 --json " + json,
                              kCi);
  ASSERT_EQ(r.code, 0) << r.out;
  auto j = maskcheck::read_json_file(json);
  EXPECT_EQ(j.at("plugins").at(0).at("attention_features"),
            (nlohmann::json{{"paged_kv", true}, {"key_chunk", true}}));
  auto rows = rows_by_property(j);
  for (const char* name : {"attention.pagedEqualsContiguous", "attention.splitKvMergesToUnsplit"})
    EXPECT_EQ(rows.at(name).at("status"), "passed") << rows.at(name).dump();
  // A 1.3 table: attention_features, past the end of such a table, is not read.
  r = maskcheck_cli("verify --plugin " + test_plugin("abi13_table") + props +
                        " --cases 10 --seed 8 --json " + json,
                    kCi);
  ASSERT_EQ(r.code, 0) << r.out;
  rows = rows_by_property(maskcheck::read_json_file(json));
  for (const auto& [name, why] : std::vector<std::pair<std::string, std::string>>{
           {"attention.pagedEqualsContiguous",
            "does not take a paged KV cache: plugin ABI 1.3 < 1.5, the version that added "
            "attention_features"},
           {"attention.splitKvMergesToUnsplit",
            "does not take split-KV chunks: plugin ABI 1.3 < 1.5"}}) {
    EXPECT_EQ(rows.at(name).at("status"), "skipped") << rows.at(name).dump();
    EXPECT_TRUE(contains(rows.at(name).at("skip_reasons").dump(), why)) << rows.at(name).dump();
  }
}

TEST(PluginAbi15, anIgnoredBlockTableIsCaught) {
  const std::string json = temp_path("paged_in_order.json");
  const CliResult r = maskcheck_cli("verify --plugin " + test_plugin("paged_in_order") +
                                        " --property attention.pagedEqualsContiguous --cases 30 "
                                        "--seed 9 --no-counterexamples --json " +
                                        json,
                                    kCi);
  ASSERT_EQ(r.code, 1) << r.out;
  const auto row =
      rows_by_property(maskcheck::read_json_file(json)).at("attention.pagedEqualsContiguous");
  EXPECT_EQ(row.at("status"), "failed") << row.dump();
}

TEST(PluginAbi14, ignoredSinkTokensAreCaught) {
  const std::string json = temp_path("sinks_ignored.json");
  const CliResult r = maskcheck_cli("verify --plugin " + test_plugin("sinks_ignored") +
                                        " --property attention.sinksSurviveTheWindow --cases 30 "
                                        "--seed 9 --no-counterexamples --json " +
                                        json,
                                    kCi);
  ASSERT_EQ(r.code, 1) << r.out;
  const auto row =
      rows_by_property(maskcheck::read_json_file(json)).at("attention.sinksSurviveTheWindow");
  EXPECT_EQ(row.at("status"), "failed") << row.dump();
}

// ---- ABI 1.2: attention backward ---------------------------------------------------------------

TEST(PluginAbi12, olderTablesHaveTheBackwardSkippedWithTheReason) {
  // The example's table reporting ABI 1.0 and 1.1: its attention_backward, past the end of such a
  // table, is still set, and must not be read.
  for (const std::string abi : {"1.0", "1.1"}) {
    const std::string lib = test_plugin(abi == "1.0" ? "abi10_table" : "abi11_table");
    const std::string json = temp_path("old_table.json");
    const CliResult r = maskcheck_cli(
        "verify --plugin " + lib +
        " --property attention.backward.agreesWithReference,attention.backward.deterministic,"
        "attention.agreesWithReference,cross_entropy.upstream.agreesWithReference --cases 10 "
        "--seed 2 --json " +
        json);
    ASSERT_EQ(r.code, 0) << r.out;
    const auto j = maskcheck::read_json_file(json);
    EXPECT_EQ(j.at("plugins").at(0).at("abi"), abi);
    EXPECT_EQ(j.at("plugins").at(0).at("attention_backward"), nlohmann::json::array());
    EXPECT_EQ(j.at("plugins").at(0).at("cross_entropy_upstream"), nlohmann::json::array());
    auto rows = rows_by_property(j);
    const auto& ce = rows.at("cross_entropy.upstream.agreesWithReference");
    EXPECT_EQ(ce.at("status"), "skipped") << ce.dump();
    EXPECT_TRUE(contains(ce.at("skip_reasons").dump(),
                         "plugin:abi takes no upstream gradient in cross_entropy: plugin ABI " +
                             abi + " < 1.2, the version that added grad_output"))
        << ce.dump();
    EXPECT_EQ(rows.at("attention.agreesWithReference").at("status"), "passed");
    for (const char* name :
         {"attention.backward.agreesWithReference", "attention.backward.deterministic"}) {
      const auto& row = rows.at(name);
      EXPECT_EQ(row.at("status"), "skipped") << row.dump();
      EXPECT_TRUE(contains(row.at("skip_reasons").dump(),
                           "plugin:abi has no attention_backward: plugin ABI " + abi +
                               " < 1.2, the version that added it"))
          << row.dump();
    }
  }
}

TEST(PluginAbi12, olderTablesAreNotGivenPrefixLmOrChunkedMasks) {
  // Their mask descriptor ends before prefix_lens and chunk: such cases are skipped with the
  // reason, the others run and pass. The example (1.2) reads both and passes them.
  const std::string json = temp_path("old_table_masks.json");
  CliResult r = maskcheck_cli("verify --plugin " + test_plugin("abi11_table") +
                              " --property attention.agreesWithReference,"
                              "attention.chunkedEqualsDocuments --cases 40 --seed 6 --json " +
                              json);
  ASSERT_EQ(r.code, 0) << r.out;
  auto rows = rows_by_property(maskcheck::read_json_file(json));
  for (const char* name : {"attention.agreesWithReference", "attention.chunkedEqualsDocuments"}) {
    const auto& row = rows.at(name);
    EXPECT_TRUE(contains(row.at("skip_reasons").dump(),
                         "plugin:abi (plugin ABI 1.1) is not given prefix-LM or chunked masks"))
        << row.dump();
  }
  EXPECT_EQ(rows.at("attention.agreesWithReference").at("status"), "passed");
  r = maskcheck_cli("verify --plugin " + std::string(EXAMPLE_PLUGIN) +
                    " --property attention.prefixLmIsBidirectionalPrefixThenCausal,"
                    "attention.chunkedEqualsDocuments --cases 30 --seed 6 --json " +
                    json);
  ASSERT_EQ(r.code, 0) << r.out;
  rows = rows_by_property(maskcheck::read_json_file(json));
  for (const char* name :
       {"attention.prefixLmIsBidirectionalPrefixThenCausal", "attention.chunkedEqualsDocuments"}) {
    EXPECT_EQ(rows.at(name).at("status"), "passed") << rows.at(name).dump();
    EXPECT_EQ(rows.at(name).at("skip_reasons").dump().find("prefix"), std::string::npos)
        << rows.at(name).dump();
  }
}

TEST(PluginAbi12, aBackwardBugIsCaughtSavedAndReplayed) {
  // The backward ignores the causal clause; the forward is the example's, and passes.
  const std::string json = temp_path("backward_causal.json");
  const std::string dir = temp_path("backward_causal_ce");
  std::filesystem::remove_all(dir);
  const CliResult r = maskcheck_cli("verify --plugin " + test_plugin("backward_causal") +
                                    " --property attention.backward.agreesWithReference,"
                                    "attention.agreesWithReference --cases 100 --seed 1 --json " +
                                    json + " --counterexamples " + dir);
  ASSERT_EQ(r.code, 1) << r.out;
  EXPECT_TRUE(
      contains(r.out, "FAILED plugin:backward_causal attention.backward.agreesWithReference"))
      << r.out;
  auto rows = rows_by_property(maskcheck::read_json_file(json));
  EXPECT_EQ(rows.at("attention.agreesWithReference").at("status"), "passed");
  const auto& row = rows.at("attention.backward.agreesWithReference");
  EXPECT_EQ(row.at("status"), "failed") << row.dump();
  ASSERT_TRUE(row.contains("counterexample")) << row.dump();
  EXPECT_TRUE(contains(row.at("counterexample").dump(), "causal")) << row.dump();
  // The saved case is the call attention_backward; eval replays it against the plugin in process.
  ASSERT_TRUE(row.contains("counterexample_files")) << row.dump();
  const std::string file = row.at("counterexample_files").at(0).get<std::string>();
  const auto meta = maskcheck::safetensors::read_file(file).metadata;
  EXPECT_TRUE(contains(meta.at("maskcheck.call"), "attention_backward")) << file;
  const std::string out = temp_path("backward_causal_out.safetensors");
  std::filesystem::remove(out);
  CliResult e = maskcheck_cli("eval attention --plugin " + test_plugin("backward_causal") +
                              " --in " + file + " --out " + out);
  EXPECT_EQ(e.code, 0) << e.out;
  const auto result = maskcheck::safetensors::read_file(out);
  for (const char* name : {"dq", "dk", "dv"})
    EXPECT_TRUE(result.tensors.count(name)) << name << "\n" << e.out;
  // The example, whose backward is right, gives other gradients on the same case.
  const std::string good = temp_path("backward_example_out.safetensors");
  std::filesystem::remove(good);
  e = maskcheck_cli("eval attention --plugin " + std::string(EXAMPLE_PLUGIN) + " --in " + file +
                    " --out " + good);
  EXPECT_EQ(e.code, 0) << e.out;
  const auto right = maskcheck::safetensors::read_file(good);
  bool differ = false;
  for (const char* name : {"dq", "dk", "dv"})
    differ = differ || maskcheck::safetensors::to_doubles(result.tensors.at(name), name) !=
                           maskcheck::safetensors::to_doubles(right.tensors.at(name), name);
  EXPECT_TRUE(differ);
  // The file's own eval command runs as written.
  const std::string command = meta.at("maskcheck.eval");
  ASSERT_EQ(command.rfind("maskcheck eval ", 0), 0u) << command;
  EXPECT_EQ(maskcheck_cli(command.substr(std::string("maskcheck ").size())).code, 0) << command;
}

TEST(PluginAbi12, aCrashInTheBackwardIsContainedShrunkAndSaved) {
  const std::string json = temp_path("crash_backward.json");
  const CliResult r = maskcheck_cli(
      "verify --plugin " + test_plugin("crash_backward") +
      " --property attention.backward.agreesWithReference,attention.agreesWithReference,"
      "softmax.agreesWithReference --cases 20 --seed 5 --no-counterexamples --json " +
      json);
  ASSERT_EQ(r.code, 1) << r.out;
  auto rows = rows_by_property(maskcheck::read_json_file(json));
  EXPECT_EQ(rows.at("attention.agreesWithReference").at("status"), "passed");
  EXPECT_EQ(rows.at("softmax.agreesWithReference").at("status"), "passed");
  const auto& row = rows.at("attention.backward.agreesWithReference");
  EXPECT_EQ(row.at("status"), "failed") << row.dump();
  const std::string msg = row.value("message", "");
  EXPECT_TRUE(contains(msg, "crashed: the worker died of " + kSegv)) << msg;
  EXPECT_TRUE(contains(msg, "inside plugin:crash_backward attention_backward")) << msg;
  EXPECT_TRUE(contains(msg, "attention_backward ")) << msg;  // the problem it was running
  EXPECT_TRUE(contains(msg, "shrunk with every plugin call in a process of its own")) << msg;
  EXPECT_TRUE(contains(msg, "attention_backward died of " + kSegv)) << msg;
}

TEST(PluginAbi12, backwardGradientsLeftUnwrittenFail) {
  const CliResult r = maskcheck_cli("verify --plugin " + test_plugin("backward_unwritten") +
                                    " --property attention.backward.maskedGradientsAreExactlyZero"
                                    " --cases 100 --seed 3 --no-counterexamples");
  ASSERT_EQ(r.code, 1) << r.out;
  EXPECT_TRUE(contains(r.out, "attention_backward left ")) << r.out;
  EXPECT_TRUE(contains(r.out, "elements of dk unwritten")) << r.out;
}

TEST(PluginAbi12, anUpstreamGradientReadForIgnoredRowsIsCaught) {
  // cross_entropy multiplies the gradient rows of ignored labels by their grad_output as well:
  // right for finite values (the rows are 0), NaN for the NaN maskcheck puts there.
  const std::string json = temp_path("ce_upstream_read.json");
  const CliResult r = maskcheck_cli(
      "verify --plugin " + test_plugin("ce_upstream_read") +
          " --op cross_entropy --cases 30 --seed 4 --no-counterexamples --json " + json,
      kCi);
  ASSERT_EQ(r.code, 1) << r.out;
  auto rows = rows_by_property(maskcheck::read_json_file(json));
  EXPECT_EQ(rows.at("cross_entropy.agreesWithReference").at("status"), "passed");
  EXPECT_EQ(rows.at("cross_entropy.upstream.agreesWithReference").at("status"), "passed");
  const auto& row = rows.at("cross_entropy.upstream.ignoredRowsNeverReadTheirs");
  EXPECT_EQ(row.at("status"), "failed") << row.dump();
  EXPECT_TRUE(contains(r.out,
                       "FAILED plugin:ce_upstream_read "
                       "cross_entropy.upstream.ignoredRowsNeverReadTheirs"))
      << r.out;
}

TEST(PluginCli, dtypeSelectsTheCasesAndReplaysWithIt) {
  const std::string json = temp_path("dtype.json");
  CliResult r = maskcheck_cli("verify --plugin " + std::string(EXAMPLE_PLUGIN) +
                              " --op softmax --dtype bf16 --cases 10 --seed 5 --json " + json);
  ASSERT_EQ(r.code, 0) << r.out;
  const auto j = maskcheck::read_json_file(json);
  for (const auto& row : j.at("results")) {
    EXPECT_EQ(row.at("coverage").value("f32", 0) + row.at("coverage").value("f64", 0) +
                  row.at("coverage").value("f16", 0),
              0)
        << row.dump();
    EXPECT_TRUE(contains(row.at("replay").get<std::string>(), " --dtype bf16 ")) << row.dump();
  }
  // A dtype the plugin does not take: skipped with the reason.
  r = maskcheck_cli("verify --plugin " + test_plugin("overround") +
                    " --property attention.deterministic --dtype bf16 --cases 5 --seed 5 --json " +
                    json);
  ASSERT_EQ(r.code, 0) << r.out;
  const auto row = rows_by_property(maskcheck::read_json_file(json)).at("attention.deterministic");
  EXPECT_EQ(row.at("status"), "skipped");
  EXPECT_TRUE(contains(row.at("skip_reasons").dump(), "takes none of --dtype bf16")) << row.dump();
  EXPECT_EQ(maskcheck_cli("verify --impl reference --dtype f8").code, 2);
}

TEST(PluginCli, evalHonoursNoLse) {
  // A hand-written attention case that does not say want_lse, against a plugin without a
  // log-sum-exp (MASKCHECK_FLAG_NO_LSE): run without one instead of being declined.
  maskcheck::AttentionCase c;
  c.problem.mask.B = 1;
  c.problem.mask.Lq = c.problem.mask.Lk = 3;
  c.problem.D = 4;
  const auto d = maskcheck::make_data(c);
  auto f = maskcheck::encode_case(
      maskcheck::AttentionCall{c.problem, c.dtype, d.q, d.k, d.v, true, std::nullopt});
  f.metadata.erase("maskcheck.options");
  const std::string path = temp_path("no_lse.safetensors");
  maskcheck::safetensors::write_file(path, f);
  CliResult r = maskcheck_cli("eval attention --plugin " + test_plugin("keep") + " --in " + path);
  EXPECT_EQ(r.code, 0) << r.out;
  // Asking for it explicitly is still declined, with the reason.
  f.metadata["maskcheck.options"] = R"({"want_lse": true})";
  maskcheck::safetensors::write_file(path, f);
  r = maskcheck_cli("eval attention --plugin " + test_plugin("keep") + " --in " + path);
  EXPECT_EQ(r.code, 2) << r.out;
}

#ifdef MASKCHECK_HAVE_BENCH
TEST(PluginCli, benchTimesAPluginOnTheSameCasesCheckedFirst) {
  const std::string json = temp_path("bench_plugin.json");
  const CliResult r =
      maskcheck_cli("bench --plugin " + std::string(EXAMPLE_PLUGIN) +
                        " --filter '^cpu/(softmax/f32/Lk256/|cross_entropy/f32/)' --repetitions 1"
                        " --min-time 0.001 --json " +
                        json,
                    kCi);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_TRUE(contains(r.out, "All results match")) << r.out;
  const auto j = maskcheck::read_json_file(json);
  std::set<std::string> impls;
  for (const auto& b : j.at("benchmarks")) {
    const std::string name = b.at("name").get<std::string>();
    EXPECT_FALSE(b.contains("error_occurred") && b.at("error_occurred").get<bool>()) << b.dump();
    const std::string base = name.substr(0, name.rfind("/real_time"));
    impls.insert(base.substr(base.rfind('/') + 1));
  }
  EXPECT_TRUE(impls.count("plugin:example")) << j.dump(1);
  EXPECT_TRUE(impls.count("maskcheck")) << j.dump(1);
  EXPECT_EQ(
      nlohmann::json::parse(j.at("context").at("plugins").get<std::string>()).at(0).at("name"),
      "example");
}

// The rows of a bench run's JSON by name, without Google Benchmark's "/real_time" suffix.
std::map<std::string, nlohmann::json> bench_rows(const nlohmann::json& j) {
  std::map<std::string, nlohmann::json> rows;
  for (const auto& b : j.at("benchmarks")) {
    const std::string name = b.at("name").get<std::string>();
    rows[name.substr(0, name.rfind("/real_time"))] = b;
  }
  return rows;
}

// The keys of a row: its counters and fields, whatever their values.
std::set<std::string> keys_of(const nlohmann::json& row) {
  std::set<std::string> keys;
  for (const auto& [key, value] : row.items()) keys.insert(key);
  return keys;
}

// maskcheck bench at CI sizes, the CPU attention backward rows only, with these plugins.
CliResult bench_backward(const std::vector<std::string>& plugins, const std::string& json) {
  std::string cmd = "bench";
  for (const auto& p : plugins) cmd += " --plugin " + p;
  return maskcheck_cli(cmd +
                           " --filter '^cpu/attention_backward/' --repetitions 1 --min-time 0.001"
                           " --json " +
                           json,
                       kCi);
}

TEST(PluginCli, benchTimesAPluginsAttentionBackwardCheckedFirst) {
  // The example (ABI 1.2, a backward in every dtype): a plugin row beside maskcheck's in each CI
  // case (f32, bf16), checked against the sampled fp64 gradients, with maskcheck's counters.
  // An ABI 1.1 table has no backward, the storage variant none in bf16: not registered, with why.
  const std::string json = temp_path("bench_plugin_backward.json");
  const CliResult r =
      bench_backward({EXAMPLE_PLUGIN, test_plugin("abi11_table"), test_plugin("storage")}, json);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_TRUE(contains(r.out, "All results match")) << r.out;
  EXPECT_TRUE(contains(r.out, "plugin:abi has no attention_backward: plugin ABI 1.1 < 1.2"))
      << r.out;
  EXPECT_TRUE(contains(r.out, "plugin:storage does not take bf16 for attention_backward")) << r.out;
  const auto rows = bench_rows(maskcheck::read_json_file(json));
  int plugin_rows = 0;
  for (const auto& [name, row] : rows) {
    EXPECT_FALSE(row.value("error_occurred", false)) << row.dump();
    EXPECT_FALSE(contains(name, "plugin:abi")) << name;
    if (!name.ends_with("/plugin:example") && !name.ends_with("/plugin:storage")) continue;
    ++plugin_rows;
    EXPECT_TRUE(contains(row.at("label").get<std::string>(), "check: max|err|")) << row.dump();
    EXPECT_GT(row.at("real_time").get<double>(), 0) << row.dump();
    const std::string ours = name.substr(0, name.rfind('/')) + "/maskcheck";
    ASSERT_TRUE(rows.count(ours)) << ours;
    EXPECT_EQ(keys_of(row), keys_of(rows.at(ours))) << row.dump() << "\n" << rows.at(ours).dump();
  }
  // example in f32 and bf16, storage in f32
  EXPECT_EQ(plugin_rows, 3) << r.out;
  EXPECT_TRUE(
      rows.count("cpu/attention_backward/bf16/D64/L128/pad50/padding+causal/plugin:example"))
      << r.out;
}

TEST(PluginCli, benchReportsAWrongBackwardAsAMismatchAndDoesNotTimeIt) {
  // A backward that ignores the causal clause: each row fails its check, is reported (a third
  // party's mismatch is reported only, as for the forward rows: exit 0) and is not timed.
  const std::string json = temp_path("bench_plugin_backward_causal.json");
  const CliResult r = bench_backward({test_plugin("backward_causal")}, json);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_TRUE(contains(r.out, "Peer mismatches")) << r.out;
  EXPECT_TRUE(contains(r.out, "/plugin:backward_causal: dq, dk, dv (sampled)")) << r.out;
  int wrong = 0;
  for (const auto& [name, row] : bench_rows(maskcheck::read_json_file(json))) {
    if (!name.ends_with("/plugin:backward_causal")) {
      EXPECT_FALSE(row.value("error_occurred", false)) << row.dump();
      continue;
    }
    ++wrong;
    EXPECT_TRUE(row.value("error_occurred", false)) << row.dump();
    EXPECT_TRUE(row.at("error_message").get<std::string>().starts_with("mismatch: ")) << row.dump();
    EXPECT_EQ(row.at("iterations"), 0) << row.dump();
    EXPECT_FALSE(row.contains("label")) << row.dump();  // the label comes with a timed run
  }
  EXPECT_EQ(wrong, 2) << r.out;  // f32, bf16
}
#endif

// ---- the 16-bit conversions of plugin.h ------------------------------------------------------

TEST(PluginHeader, sixteenBitConversionsMatchTheReferenceStorageTypes) {
  for (std::uint32_t b = 0; b < 65536; ++b) {
    const auto bits = static_cast<std::uint16_t>(b);
    const double h = static_cast<double>(maskcheck::half::from_bits(bits));
    const double bf = static_cast<double>(maskcheck::bfloat16::from_bits(bits));
    const float fh = maskcheck_f16_to_f32(bits), fb = maskcheck_bf16_to_f32(bits);
    if (std::isnan(h)) {
      EXPECT_TRUE(std::isnan(fh)) << b;
    } else {
      ASSERT_EQ(static_cast<double>(fh), h) << b;
      ASSERT_EQ(maskcheck_f32_to_f16(fh), bits) << b;
    }
    if (std::isnan(bf)) {
      EXPECT_TRUE(std::isnan(fb)) << b;
    } else {
      ASSERT_EQ(static_cast<double>(fb), bf) << b;
      ASSERT_EQ(maskcheck_f32_to_bf16(fb), bits) << b;
    }
  }
  // Rounding: every float between, near and past the 16-bit ranges.
  maskcheck::DataRng rng(7);
  for (int i = 0; i < 200000; ++i) {
    const std::uint32_t u = static_cast<std::uint32_t>(rng.next());
    float f;
    std::memcpy(&f, &u, sizeof f);
    if (std::isnan(f)) continue;
    ASSERT_EQ(maskcheck_f32_to_f16(f), maskcheck::half(static_cast<double>(f)).bits) << f;
    ASSERT_EQ(maskcheck_f32_to_bf16(f), maskcheck::bfloat16(static_cast<double>(f)).bits) << f;
  }
  EXPECT_TRUE(std::isnan(maskcheck_f16_to_f32(maskcheck_f32_to_f16(NAN))));
  EXPECT_EQ(maskcheck_f32_to_f16(65520.0f), 0x7c00);  // ties past the largest finite: infinity
  EXPECT_EQ(maskcheck_f32_to_f16(65519.0f), 0x7bff);
}

}  // namespace
