#include "maskcheck/suite/process.hpp"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <stdexcept>

namespace maskcheck {
namespace {

volatile std::sig_atomic_t g_noted = 0;
extern "C" void note_signal(int sig) {
  g_noted = sig;
}

}  // namespace

std::filesystem::path self_executable() {
  std::error_code ec;
  auto p = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) throw std::runtime_error("cannot resolve /proc/self/exe: " + ec.message());
  return p;
}

int run_foreground(const std::filesystem::path& bin, const std::vector<std::string>& args,
                   int* noted) {
  g_noted = 0;
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  struct sigaction note = {};
  struct sigaction old_int = {};
  struct sigaction old_term = {};
  note.sa_handler = note_signal;
  sigemptyset(&note.sa_mask);
  sigaction(SIGINT, nullptr, &old_int);
  sigaction(SIGTERM, nullptr, &old_term);
  // A signal this process was told to ignore (a background job's SIGINT) stays ignored by both.
  if (old_int.sa_handler != SIG_IGN) sigaction(SIGINT, &note, nullptr);
  if (old_term.sa_handler != SIG_IGN) sigaction(SIGTERM, &note, nullptr);
  std::cout.flush();
  std::cerr.flush();
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    // Handled signals are reset to their default by exec; restore them explicitly anyway.
    sigaction(SIGINT, &old_int, nullptr);
    sigaction(SIGTERM, &old_term, nullptr);
    ::execv(bin.c_str(), argv.data());
    std::fprintf(stderr, "maskcheck: cannot run %s: %s\n", bin.c_str(), std::strerror(errno));
    ::_exit(127);
  }
  int status = 0, rc = 127;
  if (pid < 0) {
    std::cerr << "maskcheck: cannot start " << bin.string() << ": " << std::strerror(errno) << "\n";
  } else {
    while (::waitpid(pid, &status, 0) < 0) {
      if (errno == EINTR) continue;  // a noted signal: the child got it too
      status = -1;
      break;
    }
    if (status == -1)
      rc = 1;
    else if (WIFEXITED(status))
      rc = WEXITSTATUS(status);
    else if (WIFSIGNALED(status))
      rc = 128 + WTERMSIG(status);
  }
  sigaction(SIGINT, &old_int, nullptr);
  sigaction(SIGTERM, &old_term, nullptr);
  if (noted) *noted = g_noted;
  return rc;
}

}  // namespace maskcheck
