// Running the maskcheck command line (MASKCHECK_CLI, defined by the test's CMake target) from a
// test: its exit code and its output.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <string>

namespace maskcheck::testing {

struct CliResult {
  int code = -1;
  std::string out;  // stdout and stderr
};

// Runs `maskcheck <args>` through the shell; `env` goes in front ("VAR=value ...").
inline CliResult maskcheck_cli(const std::string& args, const std::string& env = {}) {
  const std::string cmd =
      (env.empty() ? "" : env + " ") + std::string(MASKCHECK_CLI) + " " + args + " 2>&1";
  CliResult r;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf;
  while (std::size_t n = std::fread(buf.data(), 1, buf.size(), p)) r.out.append(buf.data(), n);
  const int status = pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

// A path in this test process's own temporary directory.
inline std::string temp_path(const std::string& name) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("maskcheck_cli_test_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  return (dir / name).string();
}

}  // namespace maskcheck::testing
