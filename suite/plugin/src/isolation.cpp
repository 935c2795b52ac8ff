// Plugins in child processes. Both ends of the protocol live here:
//
//   parent (maskcheck verify --plugin)          worker (maskcheck plugin-worker, same binary)
//   fork + exec /proc/self/exe plugin-worker -> loads the library, runs one property
//                                            <- "call <function> <query|run> <problem>" per call
//                                            <- "done" when the call returned
//                                            <- "result <json>" (info, outcome or load_error)
//
// The worker's standard output and error go to a second pipe; the parent keeps their tail for
// failure messages (a plugin that fails to load gets all of that tail shown). The parent kills the
// worker's process group when no message arrived for the timeout, and reports a worker that dies
// of a signal, exits without a result or times out as a failed property, naming the plugin call it
// was in. A worker that died of a signal is run again with --isolate-calls: every plugin call then
// runs in a process of its own (forked from the worker), a call that dies becomes an ordinary
// failure of its case (CrashedCall), and rapidcheck shrinks it and the runner saves it as
// counterexample files like any other failure, with the signal and the call's last output.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <iostream>
#include <limits>
#include <optional>
#include <sstream>

#include "maskcheck/plugin.h"
#include "maskcheck/suite/forwarding.hpp"
#include "maskcheck/suite/plugin_host.hpp"
#include "maskcheck/suite/process.hpp"
#include "maskcheck/suite/recording.hpp"
#include "plugin_internal.hpp"

namespace maskcheck::plugin {

// ---- PluginInfo -----------------------------------------------------------------------------

std::string PluginInfo::device() const {
  switch (device_type) {
    case kDLCPU:
      return "cpu";
    case kDLCUDA:
      return "cuda:" + std::to_string(device_id);
    default:
      return "device type " + std::to_string(device_type) + ":" + std::to_string(device_id);
  }
}

std::string PluginInfo::summary() const {
  std::ostringstream os;
  os << (description.empty() ? "plugin" : description) << " [";
  if (!version.empty()) os << "version " << version << ", ";
  os << "ABI " << abi_major << "." << abi_minor << ", " << device();
  if (keep_tensor) os << ", keep-mask tensor";
  if (additive_mask) os << ", additive mask tensor";
  if (!lse) os << ", no log-sum-exp";
  if (varlen) os << ", varlen";
  if (!backward.empty()) {
    os << ", backward";
    if (backward != dtypes(Op::attention))
      for (std::size_t i = 0; i < backward.size(); ++i)
        os << (i ? "," : " ") << to_string(backward[i]);
  }
  if (modifiers.any()) {
    ScoreModifiers all;
    if (modifiers.softcap) all.softcap = 1;
    if (modifiers.alibi) all.alibi_slopes = {0};
    if (modifiers.sink_logits) all.sink_logits = {0};
    os << ", " << all.describe();
  }
  if (!ce_upstream.empty()) {
    os << ", cross-entropy upstream gradient";
    if (ce_upstream != dtypes(Op::cross_entropy))
      for (std::size_t i = 0; i < ce_upstream.size(); ++i)
        os << (i ? "," : " ") << to_string(ce_upstream[i]);
  }
  for (const auto& [t, st] : storage) {
    std::string parts;
    for (Op op : op_list())
      if (const std::string d = st.describe(op, t); !d.empty())
        parts += (parts.empty() ? "" : ",") + d;
    if (st.mask != DType::f32) parts += (parts.empty() ? "" : ",") + std::string("mask=f16");
    os << ", " << to_string(t) << " stores " << parts;
  }
  os << ", " << path << "]";
  return os.str();
}

std::vector<Op> PluginInfo::op_list() const {
  std::vector<Op> v;
  for (const auto& [op, dts] : ops) v.push_back(op);
  return v;
}

std::vector<DType> PluginInfo::dtypes(Op op) const {
  for (const auto& [o, dts] : ops)
    if (o == op) return dts;
  return {};
}

std::string PluginInfo::no_backward() const {
  if (!backward.empty()) return "";
  const std::string abi = std::to_string(abi_major) + "." + std::to_string(abi_minor);
  if (abi_minor < 2)
    return impl_name() + " has no attention_backward: plugin ABI " + abi +
           " < 1.2, the version that added it";
  return impl_name() + " has no attention_backward: its attention_backward_dtypes is 0";
}

std::string PluginInfo::no_attention_feature(bool paged_kv) const {
  if (paged_kv ? paged : key_chunk) return "";
  const std::string what = paged_kv ? "a paged KV cache" : "split-KV chunks";
  const std::string abi = std::to_string(abi_major) + "." + std::to_string(abi_minor);
  if (abi_minor < 5)
    return impl_name() + " does not take " + what + ": plugin ABI " + abi +
           " < 1.5, the version that added attention_features";
  return impl_name() + " does not take " + what + ": its attention_features lacks " +
         (paged_kv ? "MASKCHECK_ATTN_PAGED_KV" : "MASKCHECK_ATTN_KEY_CHUNK");
}

std::string PluginInfo::no_ce_upstream(DType t) const {
  if (std::find(ce_upstream.begin(), ce_upstream.end(), t) != ce_upstream.end()) return "";
  const std::string abi = std::to_string(abi_major) + "." + std::to_string(abi_minor);
  if (abi_minor < 2)
    return impl_name() + " takes no upstream gradient in cross_entropy: plugin ABI " + abi +
           " < 1.2, the version that added grad_output";
  if (ce_upstream.empty())
    return impl_name() + " takes no upstream gradient in cross_entropy: its " +
           "cross_entropy_upstream_dtypes is 0";
  return impl_name() + " takes no upstream gradient in cross_entropy for " +
         std::string(to_string(t)) + " (not in its cross_entropy_upstream_dtypes)";
}

Storage PluginInfo::storage_for(DType t) const {
  for (const auto& [d, s] : storage)
    if (d == t) return s;
  Storage s = Storage::of(t);
  s.mask = DType::f32;
  return s;
}

namespace {
constexpr const char* kStorageFields[] = {"q", "k",      "v",       "out", "x",
                                          "y", "logits", "dlogits", "mask"};
DType* storage_field(Storage& s, std::string_view name) {
  DType* fields[] = {&s.q, &s.k, &s.v, &s.out, &s.x, &s.y, &s.logits, &s.dlogits, &s.mask};
  for (std::size_t i = 0; i < std::size(kStorageFields); ++i)
    if (name == kStorageFields[i]) return fields[i];
  throw InvalidArgument("storage field", std::string(name), "unknown");
}
}  // namespace

nlohmann::json PluginInfo::to_json() const {
  auto names = [](const std::vector<DType>& dts) {
    nlohmann::json d = nlohmann::json::array();
    for (DType t : dts) d.push_back(std::string(to_string(t)));
    return d;
  };
  nlohmann::json ops_json = nlohmann::json::array();
  for (const auto& [op, dts] : ops)
    ops_json.push_back({{"op", std::string(to_string(op))}, {"dtypes", names(dts)}});
  // {"f16": {"q": "f32", "k": "f16", ...}}: every field, for the dtypes with mixed storage.
  nlohmann::json storage_json = nlohmann::json::object();
  for (const auto& [t, st] : storage) {
    Storage copy = st;
    nlohmann::json fields;
    for (const char* field : kStorageFields)
      fields[field] = std::string(to_string(*storage_field(copy, field)));
    storage_json[std::string(to_string(t))] = fields;
  }
  return {{"path", path},
          {"name", name},
          {"version", version},
          {"description", description},
          {"abi", std::to_string(abi_major) + "." + std::to_string(abi_minor)},
          {"abi_major", abi_major},
          {"abi_minor", abi_minor},
          {"device", device()},
          {"device_type", device_type},
          {"device_id", device_id},
          {"keep_tensor", keep_tensor},
          {"additive_mask", additive_mask},
          {"lse", lse},
          {"varlen", varlen},
          {"attention_backward", names(backward)},
          {"cross_entropy_upstream", names(ce_upstream)},
          {"score_modifiers",
           {{"softcap", modifiers.softcap},
            {"alibi", modifiers.alibi},
            {"sink_logits", modifiers.sink_logits}}},
          {"attention_features", {{"paged_kv", paged}, {"key_chunk", key_chunk}}},
          {"storage", storage_json},
          {"operations", ops_json}};
}

PluginInfo PluginInfo::from_json(const nlohmann::json& j) {
  PluginInfo i;
  i.path = j.at("path").get<std::string>();
  i.name = j.at("name").get<std::string>();
  i.version = j.at("version").get<std::string>();
  i.description = j.at("description").get<std::string>();
  i.abi_major = j.at("abi_major").get<std::uint32_t>();
  i.abi_minor = j.at("abi_minor").get<std::uint32_t>();
  i.device_type = j.at("device_type").get<std::int32_t>();
  i.device_id = j.at("device_id").get<std::int32_t>();
  i.keep_tensor = j.at("keep_tensor").get<bool>();
  i.lse = j.at("lse").get<bool>();
  i.additive_mask = j.at("additive_mask").get<bool>();
  i.varlen = j.at("varlen").get<bool>();
  for (const auto& t : j.at("attention_backward"))
    i.backward.push_back(dtype_from_string(t.get<std::string>()));
  for (const auto& t : j.at("cross_entropy_upstream"))
    i.ce_upstream.push_back(dtype_from_string(t.get<std::string>()));
  const auto& mods = j.at("score_modifiers");
  i.modifiers.softcap = mods.at("softcap").get<bool>();
  i.modifiers.alibi = mods.at("alibi").get<bool>();
  i.modifiers.sink_logits = mods.at("sink_logits").get<bool>();
  const auto& features = j.at("attention_features");
  i.paged = features.at("paged_kv").get<bool>();
  i.key_chunk = features.at("key_chunk").get<bool>();
  for (const auto& [t, fields] : j.at("storage").items()) {
    const DType dt = dtype_from_string(t);
    Storage st = Storage::of(dt);
    for (const auto& [field, d] : fields.items())
      *storage_field(st, field) = dtype_from_string(d.get<std::string>());
    i.storage.emplace_back(dt, st);
  }
  for (const auto& o : j.at("operations")) {
    std::vector<DType> dts;
    for (const auto& t : o.at("dtypes")) dts.push_back(dtype_from_string(t.get<std::string>()));
    i.ops.emplace_back(op_from_string(o.at("op").get<std::string>()), std::move(dts));
  }
  return i;
}

const PluginInfo* plugin_info(const Implementation& impl) {
  const auto* p = dynamic_cast<const detail::PluginBase*>(&impl);
  return p ? &p->info() : nullptr;
}

namespace {

// ---- the worker's side ---------------------------------------------------------------------

// Writes protocol lines to the parent (or only the result, to stdout, when run by hand).
class Channel final : public CallObserver {
 public:
  explicit Channel(int fd) : fd_(fd) {}
  void before_call(const std::string& function, bool query, const std::string& problem) override {
    send("call " + function + (query ? " query " : " run ") + problem);
  }
  void after_call() override { send("done"); }
  void result(const nlohmann::json& j) {
    if (fd_ < 0) {
      std::cout << j.dump(2) << std::endl;
      return;
    }
    send("result " + j.dump());
  }

 private:
  void send(std::string line) {
    if (fd_ < 0) return;
    for (char& ch : line)
      if (ch == '\n') ch = ' ';
    line += '\n';
    const char* p = line.data();
    std::size_t left = line.size();
    while (left > 0) {
      const ssize_t n = ::write(fd_, p, left);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) ::_exit(3);  // the parent is gone
      p += n;
      left -= static_cast<std::size_t>(n);
    }
  }
  int fd_;
};

// ---- the parent's side ----------------------------------------------------------------------

std::string signal_name(int sig) {
  switch (sig) {
    case SIGSEGV:
      return "SIGSEGV";
    case SIGABRT:
      return "SIGABRT";
    case SIGBUS:
      return "SIGBUS";
    case SIGFPE:
      return "SIGFPE";
    case SIGILL:
      return "SIGILL";
    case SIGKILL:
      return "SIGKILL";
    case SIGTERM:
      return "SIGTERM";
    case SIGTRAP:
      return "SIGTRAP";
    case SIGPIPE:
      return "SIGPIPE";
    default:
      return "signal " + std::to_string(sig);
  }
}

// What happened to one worker.
struct WorkerRun {
  bool result = false;  // a result line arrived
  nlohmann::json json;  // its JSON
  bool timed_out = false;
  int signal = 0;        // the signal that ended it, or 0
  int exit_code = -1;    // its exit code when it exited
  std::string function;  // the last plugin call it announced: "attention_forward", ...
  bool query = false;    // ... whether it was a query
  std::string problem;   // ... and what it was asked
  bool in_call = false;  // whether that call had not returned
  int calls = 0;
  std::string limit;   // the sandbox's word when it killed the worker over a limit
  std::string output;  // the tail of its standard output and error
  double seconds = 0;
};

constexpr std::size_t kOutputTail = 16 * 1024;

class Pipe {
 public:
  Pipe() {
    if (::pipe2(fd_, O_CLOEXEC) != 0)
      throw std::runtime_error(std::string("cannot create a pipe: ") + std::strerror(errno));
  }
  ~Pipe() {
    close_read();
    close_write();
  }
  int read_end() const { return fd_[0]; }
  int write_end() const { return fd_[1]; }
  void close_read() { close(fd_[0]); }
  void close_write() { close(fd_[1]); }

 private:
  static void close(int& fd) {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
  int fd_[2] = {-1, -1};
};

void handle_line(WorkerRun& run, const std::string& line) {
  if (line.rfind("call ", 0) == 0) {
    // "call <function> <query|run> <problem>"
    std::istringstream in(line.substr(5));
    std::string mode;
    in >> run.function >> mode;
    run.query = mode == "query";
    std::getline(in >> std::ws, run.problem);
    run.in_call = true;
    ++run.calls;
  } else if (line == "done") {
    run.in_call = false;
  } else if (line.rfind("limit ", 0) == 0) {
    // "limit <memory|processes> <what happened>" from the sandbox (sandbox.cpp)
    const auto space = line.find(' ', 6);
    run.limit = space == std::string::npos ? line.substr(6) : line.substr(space + 1);
  } else if (line.rfind("result ", 0) == 0) {
    run.json = nlohmann::json::parse(line.substr(7), nullptr, false);
    run.result = !run.json.is_discarded();
  }
}

// Runs `maskcheck plugin-worker <args>` under its sandbox and watches it (see the file comment).
WorkerRun run_worker(std::vector<std::string> args, double timeout_s, std::uint64_t memory) {
  const auto start = std::chrono::steady_clock::now();
  const std::string exe = self_executable().string();
  Pipe messages, output;
  args.insert(args.begin(),
              {exe, "plugin-worker", "--result-fd", std::to_string(messages.write_end()),
               "--sandbox-memory", std::to_string(memory > 0 ? memory : default_worker_memory())});
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t parent = ::getpid();
  std::cout.flush();
  std::cerr.flush();
  std::fflush(nullptr);

  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error(std::string("cannot fork: ") + std::strerror(errno));
  if (pid == 0) {
    // Only async-signal-safe calls until exec. Its own process group (a timeout kills whatever
    // the plugin started too), and it dies with its parent.
    ::setpgid(0, 0);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(126);
    const int null = ::open("/dev/null", O_RDONLY);
    if (null >= 0) ::dup2(null, 0);
    ::dup2(output.write_end(), 1);
    ::dup2(output.write_end(), 2);
    ::fcntl(messages.write_end(), F_SETFD, 0);  // the one descriptor exec keeps open
    ::execv(exe.c_str(), argv.data());
    static const char msg[] = "maskcheck: cannot start the plugin worker\n";
    (void)!::write(2, msg, sizeof msg - 1);
    ::_exit(127);
  }
  ::setpgid(pid, pid);  // as the child does, so that a kill of the group cannot miss it
  messages.close_write();
  output.close_write();

  WorkerRun run;
  std::string pending;
  const auto timeout = std::chrono::duration<double>(timeout_s);
  auto last_message = std::chrono::steady_clock::now();
  bool messages_open = true, output_open = true, exited = false;
  std::chrono::steady_clock::time_point drain_until, kill_at;
  char buf[8192];
  while (true) {
    pollfd fds[2] = {{messages_open ? messages.read_end() : -1, POLLIN, 0},
                     {output_open ? output.read_end() : -1, POLLIN, 0}};
    const int ready = ::poll(fds, 2, exited ? 0 : 50);
    if (ready < 0 && errno != EINTR)
      throw std::runtime_error(std::string("poll: ") + std::strerror(errno));
    if (messages_open && (fds[0].revents & (POLLIN | POLLHUP | POLLERR))) {
      const ssize_t n = ::read(messages.read_end(), buf, sizeof buf);
      if (n > 0) {
        last_message = std::chrono::steady_clock::now();
        pending.append(buf, static_cast<std::size_t>(n));
        for (std::size_t eol; (eol = pending.find('\n')) != std::string::npos;) {
          handle_line(run, pending.substr(0, eol));
          pending.erase(0, eol + 1);
        }
      } else if (n == 0 || errno != EINTR) {
        messages_open = false;
      }
    }
    if (output_open && (fds[1].revents & (POLLIN | POLLHUP | POLLERR))) {
      const ssize_t n = ::read(output.read_end(), buf, sizeof buf);
      if (n > 0) {
        run.output.append(buf, static_cast<std::size_t>(n));
        if (run.output.size() > 2 * kOutputTail)
          run.output.erase(0, run.output.size() - kOutputTail);
      } else if (n == 0 || errno != EINTR) {
        output_open = false;
      }
    }
    if (exited) {
      // Gone: read what is left in the pipes, briefly (descendants may hold them open).
      if (ready <= 0 || std::chrono::steady_clock::now() > drain_until) break;
      continue;
    }
    // Ended? WNOWAIT leaves it a zombie, so its process group id stays reserved until the
    // kill below has reached whatever the plugin left running in the group.
    siginfo_t info{};
    const bool ended =
        ::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
        info.si_pid == pid;
    const auto now = std::chrono::steady_clock::now();
    if (!ended && !run.timed_out && now - last_message > timeout) {
      // The sandbox kills the worker and everything it started, then exits; SIGKILL to the
      // group if it has not within 5 s.
      run.timed_out = true;
      ::kill(pid, SIGTERM);
      kill_at = now + std::chrono::seconds(5);
    }
    if (!ended && run.timed_out && now > kill_at) {
      ::kill(-pid, SIGKILL);
      ::kill(pid, SIGKILL);
    }
    if (ended) {
      exited = true;
      drain_until = std::chrono::steady_clock::now() + std::chrono::seconds(1);
    }
  }
  ::kill(-pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!run.timed_out) {
    if (WIFSIGNALED(status)) run.signal = WTERMSIG(status);
    if (WIFEXITED(status)) run.exit_code = WEXITSTATUS(status);
  }
  if (run.output.size() > kOutputTail) run.output.erase(0, run.output.size() - kOutputTail);
  run.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return run;
}

// The last lines of the worker's output, indented, for a message (every line kept, at most
// kOutputTail bytes, with max_lines = SIZE_MAX).
std::string output_tail(const std::string& output, std::size_t max_lines = 30) {
  std::string s = output;
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  if (s.empty()) return {};
  std::size_t pos = s.size(), lines = 0;
  while (pos > 0 && lines < max_lines) {
    pos = s.rfind('\n', pos - 1);
    if (pos == std::string::npos) {
      pos = 0;
      break;
    }
    ++lines;
  }
  std::string tail = s.substr(pos == 0 ? 0 : pos + 1);
  std::string out = "\n  worker output (last lines):";
  std::istringstream in(tail);
  for (std::string line; std::getline(in, line);) out += "\n    " + line;
  return out;
}

// How a worker ended without a result, in words.
std::string ending(const WorkerRun& run, double timeout_s) {
  std::ostringstream os;
  if (run.timed_out)
    os << "the worker was silent for " << timeout_s << " s";
  else if (run.signal)
    os << "the worker died of " << signal_name(run.signal) << " (" << ::strsignal(run.signal)
       << ")";
  else
    os << "the worker exited with status " << run.exit_code << " without a result";
  return os.str();
}

// ... and where, for a property's failure.
std::string failure_of(const WorkerRun& run, const std::string& impl, double timeout_s) {
  std::ostringstream os;
  if (!run.limit.empty())
    os << "over its limit: " << run.limit << "; the sandbox killed the worker and all it started";
  else
    os << (run.timed_out ? "timed out: " : "crashed: ") << ending(run, timeout_s);
  if (run.calls == 0)
    os << " before its first call into " << impl;
  else
    os << (run.in_call ? " inside " : " after ") << impl << " " << run.function
       << (run.query ? " (a query, " : " (") << "call " << run.calls << ") on " << run.problem;
  if (run.timed_out) os << "; killed it with SIGKILL";
  return os.str();
}

double effective_timeout(double t) {
  return t > 0 ? t : kDefaultTimeout;
}

// ---- every call in a process of its own (the worker's --isolate-calls) ----------------------

// Results and errors cross from the call's process to the worker as bytes.
class Blob {
 public:
  std::string bytes;
  void put(std::uint64_t x) { bytes.append(reinterpret_cast<const char*>(&x), sizeof x); }
  void put(double x) { bytes.append(reinterpret_cast<const char*>(&x), sizeof x); }
  void put(const std::string& x) {
    put(static_cast<std::uint64_t>(x.size()));
    bytes += x;
  }
  void put(const std::vector<double>& x) {
    put(static_cast<std::uint64_t>(x.size()));
    bytes.append(reinterpret_cast<const char*>(x.data()), x.size() * sizeof(double));
  }
};
class BlobReader {
 public:
  explicit BlobReader(const std::string& b) : b_(b) {}
  template <class T>
  T get() {
    T x{};
    take(&x, sizeof x);
    return x;
  }
  std::string str() {
    std::string x(get<std::uint64_t>(), '\0');
    take(x.data(), x.size());
    return x;
  }
  std::vector<double> doubles() {
    std::vector<double> x(get<std::uint64_t>());
    take(x.data(), x.size() * sizeof(double));
    return x;
  }

 private:
  void take(void* dst, std::size_t n) {
    if (n == 0) return;  // dst may be an empty vector's NULL data(): no memcpy from or to NULL
    if (n > b_.size() - pos_) throw std::runtime_error("truncated result from a call's process");
    std::memcpy(dst, b_.data() + pos_, n);
    pos_ += n;
  }
  const std::string& b_;
  std::size_t pos_ = 0;
};

enum class Outcome : std::uint64_t { ok, unsupported, invalid_argument, error };

// Runs `body` in a forked child and returns what it returned, or rethrows what it threw (as
// Unsupported, InvalidArgument or std::runtime_error). A child that dies of a signal throws
// CrashedCall with the signal and the child's last output. The child's output also goes on to
// this process's standard error, so the parent of the worker sees it as before.
std::string in_child(const std::string& what, const std::function<std::string()>& body) {
  Pipe result, output;
  std::cout.flush();
  std::cerr.flush();
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error(std::string("cannot fork: ") + std::strerror(errno));
  if (pid == 0) {
    ::dup2(output.write_end(), 1);
    ::dup2(output.write_end(), 2);
    Blob b;
    try {
      const std::string r = body();
      b.put(static_cast<std::uint64_t>(Outcome::ok));
      b.bytes += r;
    } catch (const Unsupported& e) {
      b.put(static_cast<std::uint64_t>(Outcome::unsupported));
      b.put(std::string(e.what()));
    } catch (const InvalidArgument& e) {
      b.put(static_cast<std::uint64_t>(Outcome::invalid_argument));
      b.put(e.field());
      b.put(e.value());
      b.put(std::string(e.what()));
    } catch (const std::exception& e) {
      b.put(static_cast<std::uint64_t>(Outcome::error));
      b.put(std::string(e.what()));
    }
    std::fflush(nullptr);
    const char* p = b.bytes.data();
    std::size_t left = b.bytes.size();
    while (left > 0) {
      const ssize_t n = ::write(result.write_end(), p, left);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) ::_exit(3);
      p += n;
      left -= static_cast<std::size_t>(n);
    }
    ::_exit(0);  // no destructors: the worker's state belongs to the worker
  }
  result.close_write();
  output.close_write();
  std::string bytes, printed;
  bool result_open = true, output_open = true;
  char buf[8192];
  while (result_open || output_open) {
    pollfd fds[2] = {{result_open ? result.read_end() : -1, POLLIN, 0},
                     {output_open ? output.read_end() : -1, POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error(std::string("poll: ") + std::strerror(errno));
    }
    if (result_open && (fds[0].revents & (POLLIN | POLLHUP | POLLERR))) {
      const ssize_t n = ::read(result.read_end(), buf, sizeof buf);
      if (n > 0)
        bytes.append(buf, static_cast<std::size_t>(n));
      else if (n == 0 || errno != EINTR)
        result_open = false;
    }
    if (output_open && (fds[1].revents & (POLLIN | POLLHUP | POLLERR))) {
      const ssize_t n = ::read(output.read_end(), buf, sizeof buf);
      if (n > 0) {
        printed.append(buf, static_cast<std::size_t>(n));
        if (printed.size() > 2 * kOutputTail) printed.erase(0, printed.size() - kOutputTail);
        (void)!::write(2, buf, static_cast<std::size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        output_open = false;
      }
    }
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (printed.size() > kOutputTail) printed.erase(0, printed.size() - kOutputTail);
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    std::ostringstream os;
    os << "crashed: " << what << " died of " << signal_name(sig) << " (" << ::strsignal(sig)
       << ") in a process of its own" << output_tail(printed);
    throw CrashedCall(os.str(), signal_name(sig), printed);
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || bytes.empty())
    throw std::runtime_error(what + ": its process exited with status " +
                             std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : -1) +
                             " without a result" + output_tail(printed));
  BlobReader r(bytes);
  switch (static_cast<Outcome>(r.get<std::uint64_t>())) {
    case Outcome::ok:
      return bytes.substr(sizeof(std::uint64_t));
    case Outcome::unsupported:
      throw Unsupported(r.str());
    case Outcome::invalid_argument: {
      const std::string field = r.str(), value = r.str(), full = r.str();
      // InvalidArgument's what() is "invalid argument: F = V (REQUIREMENT)".
      const std::string head = "invalid argument: " + field + " = " + value + " (";
      const bool parts = full.rfind(head, 0) == 0 && full.size() > head.size();
      throw InvalidArgument(field, value,
                            parts ? full.substr(head.size(), full.size() - head.size() - 1) : full);
    }
    case Outcome::error:
      throw std::runtime_error(r.str());
  }
  throw std::runtime_error("unreadable result from a call's process");
}

std::string encode(const Support& s) {
  Blob b;
  b.put(static_cast<std::uint64_t>(s.ok));
  b.put(s.reason);
  return b.bytes;
}
Support decode_support(const std::string& bytes) {
  BlobReader r(bytes);
  Support s;
  s.ok = r.get<std::uint64_t>() != 0;
  s.reason = r.str();
  return s;
}
std::string encode(const AttentionResult& a) {
  Blob b;
  b.put(a.out);
  b.put(a.lse);
  return b.bytes;
}
AttentionResult decode_attention(const std::string& bytes) {
  BlobReader r(bytes);
  AttentionResult a;
  a.out = r.doubles();
  a.lse = r.doubles();
  return a;
}
std::string encode(const AttentionGradients& g) {
  Blob b;
  b.put(g.dq);
  b.put(g.dk);
  b.put(g.dv);
  return b.bytes;
}
AttentionGradients decode_gradients(const std::string& bytes) {
  BlobReader r(bytes);
  AttentionGradients g;
  g.dq = r.doubles();
  g.dk = r.doubles();
  g.dv = r.doubles();
  return g;
}

std::string encode(const LossResult& l) {
  Blob b;
  b.put(l.loss);
  b.put(l.losses);
  b.put(static_cast<std::uint64_t>(l.count));
  b.put(l.weight_sum);
  b.put(l.dlogits);
  return b.bytes;
}
LossResult decode_loss(const std::string& bytes) {
  BlobReader r(bytes);
  LossResult l;
  l.loss = r.get<double>();
  l.losses = r.doubles();
  l.count = static_cast<std::int64_t>(r.get<std::uint64_t>());
  l.weight_sum = r.get<double>();
  l.dlogits = r.doubles();
  return l;
}

// The plugin seen through a fork per call: queries and calls alike run in a child process, so
// that a call that kills its process fails its case (CrashedCall) instead of the worker.
class CallIsolation final : public ForwardingImplementation {
 public:
  using ForwardingImplementation::ForwardingImplementation;

  Support supports_softmax(const SoftmaxProblem& p, DType t) const override {
    return decode_support(in_child(name() + " softmax_forward (a query)",
                                   [&] { return encode(inner().supports_softmax(p, t)); }));
  }
  std::vector<double> softmax(const SoftmaxProblem& p, DType t,
                              std::span<const double> x) const override {
    const std::string r = in_child(name() + " softmax_forward", [&] {
      Blob b;
      b.put(inner().softmax(p, t, x));
      return b.bytes;
    });
    BlobReader in(r);
    return in.doubles();
  }
  Support attention_support(const AttentionProblem& p, DType t, bool want_lse) const override {
    return decode_support(in_child(name() + " attention_forward (a query)", [&] {
      return encode(inner().supports_attention(p, t, want_lse));
    }));
  }
  AttentionResult attention(const AttentionProblem& p, DType t, std::span<const double> q,
                            std::span<const double> k, std::span<const double> v,
                            bool want_lse) const override {
    return decode_attention(in_child(name() + " attention_forward", [&] {
      return encode(inner().attention(p, t, q, k, v, want_lse));
    }));
  }
  Support attention_backward_support(const AttentionProblem& p, DType t) const override {
    return decode_support(in_child(name() + " attention_backward (a query)", [&] {
      return encode(inner().supports_attention_backward(p, t));
    }));
  }
  AttentionGradients attention_backward(const AttentionProblem& p, DType t,
                                        std::span<const double> q, std::span<const double> k,
                                        std::span<const double> v,
                                        std::span<const double> dout) const override {
    return decode_gradients(in_child(name() + " attention_backward", [&] {
      return encode(inner().attention_backward(p, t, q, k, v, dout));
    }));
  }
  Support supports_attention_paged(const AttentionProblem& p, const PagedKv& kv, DType t,
                                   bool want_lse) const override {
    return decode_support(in_child(name() + " attention_forward, paged (a query)", [&] {
      return encode(inner().supports_attention_paged(p, kv, t, want_lse));
    }));
  }
  AttentionResult attention_paged(const AttentionProblem& p, const PagedKv& kv, DType t,
                                  std::span<const double> q, std::span<const double> k_cache,
                                  std::span<const double> v_cache, bool want_lse) const override {
    return decode_attention(in_child(name() + " attention_forward, paged", [&] {
      return encode(inner().attention_paged(p, kv, t, q, k_cache, v_cache, want_lse));
    }));
  }
  Support supports_attention_chunk(const AttentionProblem& p, DType t) const override {
    return decode_support(in_child(name() + " attention_forward, a key chunk (a query)",
                                   [&] { return encode(inner().supports_attention_chunk(p, t)); }));
  }
  AttentionResult attention_chunk(const AttentionProblem& p, DType t, std::span<const double> q,
                                  std::span<const double> k, std::span<const double> v,
                                  std::int64_t key_begin, std::int64_t key_end) const override {
    return decode_attention(in_child(name() + " attention_forward, a key chunk", [&] {
      return encode(inner().attention_chunk(p, t, q, k, v, key_begin, key_end));
    }));
  }
  Support supports_attention_varlen(const VarlenAttentionProblem& p, DType t,
                                    bool want_lse) const override {
    return decode_support(in_child(name() + " attention_varlen_forward (a query)", [&] {
      return encode(inner().supports_attention_varlen(p, t, want_lse));
    }));
  }
  AttentionResult attention_varlen(const VarlenAttentionProblem& p, DType t,
                                   std::span<const double> q, std::span<const double> k,
                                   std::span<const double> v, bool want_lse) const override {
    return decode_attention(in_child(name() + " attention_varlen_forward", [&] {
      return encode(inner().attention_varlen(p, t, q, k, v, want_lse));
    }));
  }
  Support supports_cross_entropy(const LossProblem& p, DType t) const override {
    return decode_support(in_child(name() + " cross_entropy (a query)",
                                   [&] { return encode(inner().supports_cross_entropy(p, t)); }));
  }
  LossResult cross_entropy(const LossProblem& p, DType t, std::span<const double> logits,
                           std::span<const std::int64_t> labels, std::span<const double> weights,
                           bool backward) const override {
    const std::string bytes = in_child(name() + " cross_entropy", [&] {
      return encode(inner().cross_entropy(p, t, logits, labels, weights, backward));
    });
    return decode_loss(bytes);
  }
  Support supports_cross_entropy_upstream(const LossProblem& p, DType t) const override {
    return decode_support(in_child(name() + " cross_entropy with grad_output (a query)", [&] {
      return encode(inner().supports_cross_entropy_upstream(p, t));
    }));
  }
  LossResult cross_entropy_upstream(const LossProblem& p, DType t, std::span<const double> logits,
                                    std::span<const std::int64_t> labels,
                                    std::span<const double> weights,
                                    std::span<const double> grad_output) const override {
    return decode_loss(in_child(name() + " cross_entropy with grad_output", [&] {
      return encode(inner().cross_entropy_upstream(p, t, logits, labels, weights, grad_output));
    }));
  }
};

// Stands in for a probed plugin in the parent. Its operations run in workers only.
class IsolatedPlugin final : public detail::PluginBase {
 public:
  using PluginBase::PluginBase;
};

}  // namespace

// ---- public entry points ----------------------------------------------------------------------

PluginInfo probe_plugin(const std::string& path, double timeout_s, std::uint64_t memory_limit) {
  timeout_s = effective_timeout(timeout_s);
  const WorkerRun run = run_worker({"--plugin", path}, timeout_s, memory_limit);
  if (run.result && run.json.contains("info")) return PluginInfo::from_json(run.json.at("info"));
  // Why it did not load, with everything the library printed while loading (a missing
  // dependency, its own diagnostics): the whole tail the parent kept, not only its last lines.
  const std::string printed = output_tail(run.output, std::numeric_limits<std::size_t>::max());
  if (run.result && run.json.contains("load_error"))
    throw LoadError(run.json.at("load_error").get<std::string>() + printed);
  throw LoadError("plugin " + path + ": " +
                  (run.timed_out ? "did not finish loading: " : "crashed while loading: ") +
                  ending(run, timeout_s) + printed);
}

std::shared_ptr<const Implementation> isolated_plugin(PluginInfo info) {
  return std::make_shared<IsolatedPlugin>(std::move(info));
}

PropertyOutcome run_property_isolated(const Implementation& impl, const Property& prop,
                                      const VerifyConfig& config) {
  const auto* proxy = dynamic_cast<const IsolatedPlugin*>(&impl);
  // Built-ins, and properties the plugin cannot run (skipped without calling it), stay here.
  if (!proxy || !impl.provides(prop.op) || impl.dtypes(prop.op).empty())
    return run_property(impl, prop, config);

  const double timeout_s = effective_timeout(config.plugin_timeout);
  std::vector<std::string> args{"--plugin",   proxy->info().path,
                                "--property", prop.name,
                                "--seed",     std::to_string(config.seed),
                                "--cases",    std::to_string(config.cases),
                                "--max-size", std::to_string(config.max_size)};
  args.insert(args.end(), {"--size", std::string(to_string(config.size))});
  if (config.shard)
    args.insert(args.end(), {"--shard", std::to_string(config.shard->index) + "/" +
                                            std::to_string(config.shard->count)});
  if (config.chunk) args.insert(args.end(), {"--chunk", std::to_string(*config.chunk)});
  if (!config.shrink) args.push_back("--no-shrink");
  if (config.strict) args.push_back("--strict");
  if (!config.dtypes.empty()) {
    std::string d;
    for (DType t : config.dtypes) d += (d.empty() ? "" : ",") + std::string(to_string(t));
    args.insert(args.end(), {"--dtype", d});
  }
  if (!config.counterexample_dir.empty()) {
    args.push_back("--counterexamples");
    args.push_back(config.counterexample_dir);
  }
  const WorkerRun run = run_worker(args, timeout_s, config.plugin_memory);

  // The outcome a worker reported, or nothing (its message, if it sent an unreadable one).
  auto outcome_of = [](const WorkerRun& r,
                       std::string& unreadable) -> std::optional<PropertyOutcome> {
    if (!r.result || !r.json.contains("outcome")) return std::nullopt;
    try {
      return outcome_from_json(r.json.at("outcome"));
    } catch (const std::exception& e) {
      unreadable = std::string("unreadable result from the worker: ") + e.what();
      return std::nullopt;
    }
  };
  std::string unreadable;
  std::optional<PropertyOutcome> got = outcome_of(run, unreadable);
  PropertyOutcome o;
  if (got) {
    o = *got;
  } else {
    const std::string why =
        run.result && run.json.contains("load_error")
            ? run.json.at("load_error").get<std::string>()
            : (unreadable.empty() ? failure_of(run, impl.name(), timeout_s) : unreadable);
    o.status = Status::failed;
    o.message = why + output_tail(run.output);
    o.seconds = run.seconds;
    // A crash (not the sandbox's kill, not a timeout): the same run again with every plugin call
    // in a process of its own, so that the case that kills the worker is shrunk and saved like
    // any other failure. CPU plugins only: a CUDA context does not survive fork().
    const bool crashed = run.signal != 0 && run.limit.empty() && !run.timed_out;
    if (crashed && proxy->info().device_type == kDLCPU) {
      std::vector<std::string> again = args;
      again.push_back("--isolate-calls");
      const WorkerRun rerun = run_worker(again, timeout_s, config.plugin_memory);
      std::string ignored;
      const std::optional<PropertyOutcome> shrunk = outcome_of(rerun, ignored);
      if (shrunk && shrunk->status == Status::failed) {
        PropertyOutcome s = *shrunk;
        s.message = o.message + "\n  shrunk with every plugin call in a process of its own:\n  " +
                    s.message;
        s.seconds += run.seconds;
        o = std::move(s);
      } else {
        o.message +=
            "\n  (running every plugin call in a process of its own did not reproduce the "
            "crash: " +
            (shrunk ? "the property " + std::string(to_string(shrunk->status))
                    : failure_of(rerun, impl.name(), timeout_s) + output_tail(rerun.output)) +
            "; it may depend on the calls before it)";
      }
    }
    o.message +=
        "\n  debug it in this process (under gdb, for instance): add --in-process to the "
        "replay command";
  }
  o.implementation = impl.name();
  o.property = prop.name;
  o.op = prop.op;
  o.seed = property_seed(config.seed, o.implementation, o.property);
  // The worker's replay lacks this run's plugin options: a failure's names its chunk.
  o.replay = replay_command(
      config, o.implementation, o.property,
      o.failed_chunks.empty() ? config.chunk : std::optional<int>(o.failed_chunks.front()));
  if (o.chunks.empty()) o.chunks = selected_chunks(config, o.implementation, o.property);
  return o;
}

namespace {
[[noreturn]] void finish(Channel& channel, const nlohmann::json& j, int code) {
  channel.result(j);
  std::cout.flush();
  std::fflush(nullptr);
  ::_exit(code);  // no static destructors: the plugin's would run here too
}
}  // namespace

void worker_main(const WorkerOptions& opt) {
  if (opt.sandbox_memory > 0) detail::enter_sandbox(opt.sandbox_memory, opt.result_fd);
  Channel channel(opt.result_fd);
  std::shared_ptr<const Implementation> impl;
  try {
    impl = load_plugin(opt.plugin, &channel);
  } catch (const std::exception& e) {
    finish(channel, {{"load_error", e.what()}}, 2);
  }
  if (opt.property.empty()) finish(channel, {{"info", plugin_info(*impl)->to_json()}}, 0);
  const Property* prop = find_property(opt.property);
  if (!prop) finish(channel, {{"load_error", "unknown property " + opt.property}}, 2);
  VerifyConfig config;
  config.seed = opt.seed;
  config.cases = opt.cases;
  config.max_size = opt.max_size;
  try {
    config.size = size_tier_from_string(opt.size);
    if (!opt.shard.empty()) config.shard = parse_shard(opt.shard);
  } catch (const std::exception& e) {
    finish(channel, {{"load_error", e.what()}}, 2);
  }
  if (opt.chunk >= 0) config.chunk = opt.chunk;
  config.shrink = opt.shrink;
  config.strict = opt.strict;
  config.dtypes = opt.dtypes;
  config.counterexample_dir = opt.counterexample_dir;
  config.plugins = {{impl->name(), opt.plugin}};
  if (opt.isolate_calls) {
    const CallIsolation isolated(*impl);
    finish(channel, {{"outcome", outcome_json(run_property(isolated, *prop, config))}}, 0);
  }
  finish(channel, {{"outcome", outcome_json(run_property(*impl, *prop, config))}}, 0);
}

}  // namespace maskcheck::plugin
