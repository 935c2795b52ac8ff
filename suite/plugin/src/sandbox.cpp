// The sandbox around a plugin worker (plugin_host.hpp): a child subreaper that keeps the
// plugin's processes within a memory and process budget and leaves nothing running behind.
//
// It runs in the worker's process right after exec (one thread, nothing loaded yet), so it may
// fork and go on with ordinary code. The processes it watches are its descendants: the worker,
// what the plugin forked, and what those started and abandoned (orphans are re-parented to the
// sandbox, PR_SET_CHILD_SUBREAPER, even after setsid). It finds them by walking /proc.
#include <dirent.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <map>
#include <string>
#include <vector>

#include "plugin_internal.hpp"

namespace maskcheck::plugin {

std::uint64_t default_worker_memory() {
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
  const std::uint64_t cap = std::uint64_t{16} << 30;
  if (pages <= 0 || page <= 0) return cap;
  const std::uint64_t half =
      static_cast<std::uint64_t>(pages) * static_cast<std::uint64_t>(page) / 2;
  return half < cap ? half : cap;
}

namespace detail {
namespace {

volatile std::sig_atomic_t g_stop = 0;
extern "C" void sandbox_stop(int) {
  g_stop = 1;
}

struct Proc {
  pid_t pid = 0;
  pid_t ppid = 0;
  char state = '?';
};

// Every process of the machine with its parent, from /proc/<pid>/stat.
std::vector<Proc> processes() {
  std::vector<Proc> out;
  DIR* d = ::opendir("/proc");
  if (!d) return out;
  while (const dirent* e = ::readdir(d)) {
    char* end = nullptr;
    const long pid = std::strtol(e->d_name, &end, 10);
    if (pid <= 0 || *end != '\0') continue;
    char path[64];
    std::snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE* f = std::fopen(path, "r");
    if (!f) continue;
    char buf[512];
    const std::size_t n = std::fread(buf, 1, sizeof buf - 1, f);
    std::fclose(f);
    buf[n] = '\0';
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses; read after the last ')'.
    const char* close = std::strrchr(buf, ')');
    if (!close) continue;
    Proc p;
    p.pid = static_cast<pid_t>(pid);
    int ppid = 0;
    if (std::sscanf(close + 1, " %c %d", &p.state, &ppid) != 2) continue;
    p.ppid = ppid;
    out.push_back(p);
  }
  ::closedir(d);
  return out;
}

// The live (not zombie) descendants of `root`.
std::vector<pid_t> descendants(pid_t root) {
  const auto all = processes();
  std::multimap<pid_t, const Proc*> children;
  for (const auto& p : all) children.emplace(p.ppid, &p);
  std::vector<pid_t> out, todo{root};
  while (!todo.empty()) {
    const pid_t parent = todo.back();
    todo.pop_back();
    const auto [lo, hi] = children.equal_range(parent);
    for (auto it = lo; it != hi; ++it) {
      todo.push_back(it->second->pid);
      if (it->second->state != 'Z' && it->second->state != 'X') out.push_back(it->second->pid);
    }
  }
  return out;
}

// Resident bytes of a process (0 when it is gone).
std::uint64_t resident(pid_t pid) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/statm", static_cast<int>(pid));
  FILE* f = std::fopen(path, "r");
  if (!f) return 0;
  unsigned long size = 0, rss = 0;
  const int got = std::fscanf(f, "%lu %lu", &size, &rss);
  std::fclose(f);
  return got == 2
             ? static_cast<std::uint64_t>(rss) * static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE))
             : 0;
}

void sleep_ms(long ms) {
  timespec t{ms / 1000, (ms % 1000) * 1000000L};
  ::nanosleep(&t, nullptr);  // a signal (SIGCHLD, SIGTERM) ends it early, which is what we want
}

// Reaps every child that has ended; returns the status of `worker` when it was among them.
bool reap(pid_t worker, int& status) {
  bool got = false;
  int st = 0;
  for (pid_t r; (r = ::waitpid(-1, &st, WNOHANG)) > 0;)
    if (r == worker) {
      status = st;
      got = true;
    }
  return got;
}

// Kills every descendant until none is left (new ones forked meanwhile included), reaping them.
void kill_all(pid_t self, pid_t worker, bool& worker_done, int& status) {
  for (int round = 0; round < 500; ++round) {
    const auto live = descendants(self);
    if (live.empty()) break;
    for (pid_t p : live) ::kill(p, SIGKILL);
    sleep_ms(2);
    if (reap(worker, status)) worker_done = true;
  }
  if (reap(worker, status)) worker_done = true;
  // What is left are zombies of processes whose parent is about to be reaped: wait briefly.
  for (int i = 0; i < 100 && !worker_done; ++i) {
    sleep_ms(5);
    if (reap(worker, status)) worker_done = true;
  }
  while (::waitpid(-1, nullptr, WNOHANG) > 0) {
  }
}

void tell(int fd, const std::string& line) {
  if (fd < 0) return;
  const std::string l = line + "\n";
  (void)!::write(fd, l.data(), l.size());
}

std::string gib(std::uint64_t bytes) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.2f GiB", static_cast<double>(bytes) / (1 << 30));
  return buf;
}

}  // namespace

void enter_sandbox(std::uint64_t memory_limit, int message_fd) {
  const pid_t parent = ::getppid();
  ::prctl(PR_SET_CHILD_SUBREAPER, 1);
  struct sigaction stop = {};
  stop.sa_handler = sandbox_stop;
  sigemptyset(&stop.sa_mask);
  for (int s : {SIGTERM, SIGINT, SIGHUP}) ::sigaction(s, &stop, nullptr);
  struct sigaction child = {};
  child.sa_handler = [](int) {};  // only to end the sleep early
  sigemptyset(&child.sa_mask);
  ::sigaction(SIGCHLD, &child, nullptr);
  // maskcheck gone: clean up (SIGTERM is handled), then go.
  ::prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (::getppid() != parent) g_stop = 1;

  const pid_t self = ::getpid();
  const pid_t worker = ::fork();
  if (worker == 0) {
    struct sigaction dfl = {};
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    for (int s : {SIGTERM, SIGINT, SIGHUP, SIGCHLD}) ::sigaction(s, &dfl, nullptr);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != self) ::_exit(126);
    return;  // the worker proper
  }
  if (worker < 0) {
    std::fprintf(stderr, "maskcheck: the plugin sandbox cannot fork: %s\n", std::strerror(errno));
    ::_exit(125);
  }

  int status = 0;
  bool worker_done = false;
  for (int tick = 0; !worker_done && !g_stop; ++tick) {
    if (reap(worker, status)) {
      worker_done = true;  // its status is reaped now: kill_all cannot reap it again
      break;
    }
    if (tick % 5 == 0) {  // every 50 ms
      const auto live = descendants(self);
      std::uint64_t rss = 0;
      for (pid_t p : live) rss += resident(p);
      if (rss > memory_limit) {
        tell(message_fd, "limit memory the plugin's " + std::to_string(live.size()) +
                             " process(es) held " + gib(rss) + " resident, above --plugin-memory " +
                             gib(memory_limit));
        break;
      }
      if (live.size() > static_cast<std::size_t>(kMaxWorkerProcesses)) {
        tell(message_fd, "limit processes the plugin ran " + std::to_string(live.size()) +
                             " processes, above the limit of " +
                             std::to_string(kMaxWorkerProcesses));
        break;
      }
    }
    sleep_ms(10);
  }
  kill_all(self, worker, worker_done, status);
  if (!worker_done) ::_exit(128 + SIGTERM);
  if (WIFEXITED(status)) ::_exit(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    // Die of the worker's signal, so the parent sees it; no core file of the sandbox.
    const int sig = WTERMSIG(status);
    rlimit none{0, 0};
    ::setrlimit(RLIMIT_CORE, &none);
    struct sigaction dfl = {};
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    ::sigaction(sig, &dfl, nullptr);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    ::sigprocmask(SIG_UNBLOCK, &set, nullptr);
    ::raise(sig);
    ::_exit(128 + sig);
  }
  ::_exit(125);
}

}  // namespace detail
}  // namespace maskcheck::plugin
