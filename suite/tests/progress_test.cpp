// Progress of long runs: the status line on a terminal, plain lines in a log, and what
// `maskcheck verify` and `maskcheck bench` show with it.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "cli_run.hpp"
#include "maskcheck/suite/io.hpp"
#include "maskcheck/suite/progress.hpp"

namespace {

using maskcheck::Progress;
using maskcheck::testing::CliResult;
using maskcheck::testing::maskcheck_cli;
using maskcheck::testing::temp_path;

// Sets MASKCHECK_PROGRESS for one test.
struct ProgressEnv {
  explicit ProgressEnv(const char* v) { ::setenv("MASKCHECK_PROGRESS", v, 1); }
  ~ProgressEnv() { ::unsetenv("MASKCHECK_PROGRESS"); }
};

std::string contents(std::FILE* f) {
  std::fflush(f);
  std::rewind(f);
  std::string s;
  char buf[512];
  while (std::size_t n = std::fread(buf, 1, sizeof buf, f)) s.append(buf, n);
  return s;
}

TEST(Progress, durationsReadLikePeopleWriteThem) {
  EXPECT_EQ(Progress::duration(0), "0 s");
  EXPECT_EQ(Progress::duration(59.4), "59 s");
  EXPECT_EQ(Progress::duration(60), "1 min");
  EXPECT_EQ(Progress::duration(312), "5 min 12 s");
  EXPECT_EQ(Progress::duration(3600), "1 h");
  EXPECT_EQ(Progress::duration(3720), "1 h 2 min");
  EXPECT_EQ(Progress::duration(-3), "0 s");
}

TEST(Progress, textCountsAndEstimatesOnlyWhileItemsRemain) {
  const ProgressEnv env("plain");
  Progress p("properties", 4, nullptr);
  EXPECT_EQ(p.text(0), "0 of 4 properties, 0 s elapsed");
  EXPECT_EQ(p.text(2), "2 of 4 properties, 0 s elapsed, ~0 s left");
  EXPECT_EQ(p.text(4), "4 of 4 properties, 0 s elapsed");
}

TEST(Progress, terminalModeRewritesOneLineAndErasesIt) {
  const ProgressEnv env("tty");
  std::FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  Progress p("benchmarks", 3, f);
  ASSERT_EQ(p.mode(), Progress::Mode::tty);
  p.update(1, "cpu/mlm/T1024");
  p.clear();
  p.update(2);
  p.finish();
  const std::string s = contents(f);
  EXPECT_EQ(s,
            "\r\033[K1 of 3 benchmarks, 0 s elapsed, ~0 s left (cpu/mlm/T1024)\r\033[K"
            "\r\033[K2 of 3 benchmarks, 0 s elapsed, ~0 s left\r\033[K");
  EXPECT_EQ(s.find('\n'), std::string::npos);  // never a line of its own on a terminal
  std::fclose(f);
}

TEST(Progress, plainModePrintsLinesAtMostOncePerIntervalAndTheLast) {
  const ProgressEnv env("plain");
  std::FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  Progress p("properties", 5, f, /*interval=*/3600);
  for (std::size_t i = 1; i <= 5; ++i) p.update(i, "x");
  p.clear();  // nothing to erase in a log
  p.finish();
  EXPECT_EQ(contents(f),
            "progress: 1 of 5 properties, 0 s elapsed, ~0 s left\n"
            "progress: 5 of 5 properties, 0 s elapsed\n");
  std::fclose(f);
}

TEST(Progress, offPrintsNothingAndTheDefaultFollowsTheStream) {
  {
    const ProgressEnv env("off");
    std::FILE* f = std::tmpfile();
    Progress p("properties", 2, f);
    p.update(1);
    p.update(2);
    EXPECT_EQ(contents(f), "");
    std::fclose(f);
  }
  ::unsetenv("MASKCHECK_PROGRESS");
  std::FILE* f = std::tmpfile();
  EXPECT_EQ(Progress::mode_for(f), Progress::Mode::plain);  // a file is not a terminal
  std::fclose(f);
}

TEST(ProgressCli, verifyShowsPropertyKOfNAndTheTimeLeft) {
  CliResult r =
      maskcheck_cli("verify --impl reference --op masks --cases 3 --seed 1 --no-counterexamples",
                    "MASKCHECK_PROGRESS=plain");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("progress: 1 of "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(" properties, "), std::string::npos) << r.out;
  // Every result line carries the elapsed time.
  EXPECT_NE(r.out.find("elapsed"), std::string::npos) << r.out;

  // --quiet drops the passing lines, not the progress; on a terminal it is a status line.
  r = maskcheck_cli(
      "verify --impl reference --op masks --cases 3 --seed 1 --quiet "
      "--no-counterexamples",
      "MASKCHECK_PROGRESS=tty");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("\r\033[K1 of "), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("progress: "), std::string::npos) << r.out;
}

#if MASKCHECK_HAVE_BENCH
TEST(ProgressCli, benchShowsBenchmarkKOfNAndKeepsItsJsonClean) {
  const std::string json = temp_path("progress_bench.json");
  CliResult r = maskcheck_cli(
      "bench --filter '^cpu/(mlm|lm_labels)/' --repetitions 2 --min-time 0.001 --json " + json,
      "MASKCHECK_CI=1 MASKCHECK_PROGRESS=plain");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("progress: 0 of 2 benchmarks"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("progress: 2 of 2 benchmarks"), std::string::npos) << r.out;
  // Two benchmarks, two repetitions each plus four aggregates: the counting pass left no trace.
  const auto j = maskcheck::read_json_file(json);
  EXPECT_EQ(j.at("benchmarks").size(), 12u) << j.dump(1);

  // Without --json too, a filter that matches nothing is a usage error.
  r = maskcheck_cli("bench --filter '^no/such/benchmark$'", "MASKCHECK_CI=1");
  EXPECT_EQ(r.code, 2) << r.out;
}
#endif

}  // namespace
