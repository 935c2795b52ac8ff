// Child processes of the command line, beside the plugin workers' (isolation.cpp, sandbox.cpp):
// the maskcheck executable's own path, and running a helper program (maskcheck_bench) in the
// foreground.
#pragma once

#include <csignal>
#include <filesystem>
#include <string>
#include <vector>

namespace maskcheck {

// This executable (/proc/self/exe); throws std::runtime_error when it cannot be resolved.
std::filesystem::path self_executable();

// Forks and execs `bin` with `args` (args[0] included; its output goes straight to ours) and
// waits for it. SIGINT and SIGTERM reach the child (same process group) while this process only
// notes them in `*noted` (0 when none came), so that it can clean up after the child is gone.
// Returns the child's exit code, 128 + signal when it was killed, 127 when it could not start.
int run_foreground(const std::filesystem::path& bin, const std::vector<std::string>& args,
                   int* noted);

}  // namespace maskcheck
