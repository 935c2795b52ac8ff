#include "maskcheck/suite/io.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <thread>

#include "maskcheck/reference/common.hpp"
#include "maskcheck/suite/limits.hpp"

namespace maskcheck {
namespace {

namespace fs = std::filesystem;

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }
  int release() {
    const int fd = fd_;
    fd_ = -1;
    return fd;
  }

 private:
  int fd_;
};

std::string kind_of(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISLNK(mode)) return "a symbolic link";
  return "not a regular file";
}

[[noreturn]] void cannot(const std::string& verb, const std::string& path, const std::string& why) {
  throw std::runtime_error("cannot " + verb + " " + path + ": " + why);
}

// Writes all of `content` to `fd`; false with errno set on failure.
bool write_all(int fd, std::string_view content) {
  const char* p = content.data();
  std::size_t left = content.size();
  while (left > 0) {
    const ssize_t n = ::write(fd, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    left -= static_cast<std::size_t>(n);
  }
  return true;
}

// Creates the target's directory, removes stale temporary files, and writes `content` to a new
// temporary file (created exclusively: a link planted at its name is not followed). Returns its
// path.
std::string write_temp(const std::string& path, std::string_view content) {
  check_output_path(path, "output file");
  const fs::path target(path);
  if (target.has_parent_path()) {
    std::error_code ec;
    fs::create_directories(target.parent_path(), ec);
    if (ec) cannot("create directory", target.parent_path().string(), ec.message());
  }
  remove_stale_temp_files(path);
  const std::string tmp = temp_path_for(path);
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0666);
  if (fd < 0 && errno == EEXIST) {  // left by an earlier process with this pid
    ::unlink(tmp.c_str());
    fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0666);
  }
  if (fd < 0) cannot("write", tmp, std::strerror(errno));
  Fd f(fd);
  if (!write_all(fd, content) || ::fsync(fd) != 0) {
    const int e = errno;
    ::unlink(tmp.c_str());
    cannot("write", tmp, std::strerror(e));
  }
  if (::close(f.release()) != 0) {
    const int e = errno;
    ::unlink(tmp.c_str());
    cannot("write", tmp, std::strerror(e));
  }
  return tmp;
}

// The test hook of write_files_atomic: MASKCHECK_TEST_PAUSE_BETWEEN_RENAMES_MS=N sleeps N ms
// between two renames (the window a signal must not split). Not for users.
int pause_between_renames_ms() {
  const char* s = std::getenv("MASKCHECK_TEST_PAUSE_BETWEEN_RENAMES_MS");
  return s ? std::atoi(s) : 0;
}

// Replaces the values nan, -nan, inf, -inf, infinity (any case) that follow a ':' by null.
std::string null_non_finite(const std::string& in) {
  std::string out;
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size();) {
    out += in[i];
    if (in[i++] != ':') continue;
    std::size_t j = i;
    while (j < in.size() && (in[j] == ' ' || in[j] == '\t')) ++j;
    std::size_t w = j + (j < in.size() && in[j] == '-');
    std::size_t e = w;
    while (e < in.size() && std::isalpha(static_cast<unsigned char>(in[e]))) ++e;
    std::string word = in.substr(w, e - w);
    for (char& c : word) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (word == "nan" || word == "inf" || word == "infinity") {
      out += " null";
      i = e;
    }
  }
  return out;
}

// Parses with a depth limit: deeper values are dropped by the callback (nlohmann's parser itself
// is iterative), and the parse is refused, so that nothing recursive ever sees them.
nlohmann::json parse_limited(const std::string& text, const std::string& source) {
  using nlohmann::json;
  int deepest = 0;
  json::parser_callback_t limit = [&](int depth, json::parse_event_t, json&) {
    if (depth > kMaxJsonDepth) {
      deepest = std::max(deepest, depth);
      return false;
    }
    return true;
  };
  json j = json::parse(text, limit);
  if (deepest > 0)
    throw std::runtime_error(source + ": JSON nested more than " + std::to_string(kMaxJsonDepth) +
                             " levels deep; not a maskcheck result file");
  return j;
}

}  // namespace

std::string read_input_file(const std::string& path, std::uint64_t max_bytes) {
  if (path.empty()) throw std::runtime_error("cannot read an empty path");
  // O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused below).
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  if (fd < 0) cannot("read", path, std::strerror(errno));
  Fd f(fd);
  struct stat st {};
  if (::fstat(fd, &st) != 0) cannot("read", path, std::strerror(errno));
  if (!S_ISREG(st.st_mode)) cannot("read", path, kind_of(st.st_mode) + ", not a regular file");
  const auto size = static_cast<std::uint64_t>(st.st_size);
  if (size > max_bytes)
    cannot("read", path,
           "it is " + format_bytes(static_cast<double>(size)) + ", above the limit of " +
               format_bytes(static_cast<double>(max_bytes)));
  std::string out(static_cast<std::size_t>(size), '\0');
  std::size_t at = 0;
  while (true) {
    if (at == out.size()) {  // the file grew while read: read on, up to the limit
      if (out.size() > max_bytes)
        cannot("read", path,
               "it grew above the limit of " + format_bytes(static_cast<double>(max_bytes)));
      out.resize(out.size() + 65536);
    }
    const ssize_t n = ::read(fd, out.data() + at, out.size() - at);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) cannot("read", path, std::strerror(errno));
    if (n == 0) break;
    at += static_cast<std::size_t>(n);
  }
  if (at > max_bytes)
    cannot("read", path,
           "it grew above the limit of " + format_bytes(static_cast<double>(max_bytes)));
  out.resize(at);
  return out;
}

void check_output_path(const std::string& path, std::string_view flag, const std::string& input) {
  const std::string f(flag);
  if (path.empty())
    throw_invalid(f, "''", "must name a file; an empty path names no place to write");
  if (path.back() == '/') throw_invalid(f, path, "names a directory; give a file name");
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (S_ISLNK(st.st_mode))
      throw_invalid(f, path,
                    "is a symbolic link; maskcheck replaces a file by renaming a new one over "
                    "it, which would replace the link itself: name the file it points to");
    if (!S_ISREG(st.st_mode))
      throw_invalid(f, path,
                    "is " + kind_of(st.st_mode) +
                        "; maskcheck writes regular files only (it replaces the target by a "
                        "rename, which would replace this " +
                        (S_ISDIR(st.st_mode) ? "directory" : "special file") + ")");
  }
  if (!input.empty()) {
    std::error_code ec;
    if (fs::equivalent(path, input, ec))
      throw_invalid(f, path, "is the input file " + input + "; write the result elsewhere");
  }
}

std::string temp_path_for(const std::string& path) {
  return path + ".tmp." + std::to_string(::getpid());
}

void remove_stale_temp_files(const std::string& path) {
  const fs::path target(path);
  const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  const std::string prefix = target.filename().string() + ".tmp.";
  std::error_code ec;
  fs::directory_iterator it(dir, ec), end;
  for (; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) continue;
    const std::string digits = name.substr(prefix.size());
    if (digits.size() > 9 || digits.find_first_not_of("0123456789") != std::string::npos) continue;
    const long pid = std::strtol(digits.c_str(), nullptr, 10);
    if (pid <= 0 || pid == ::getpid()) continue;
    if (::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) {
      std::error_code rm;
      fs::remove(it->path(), rm);
    }
  }
}

void write_file_atomic(const std::string& path, std::string_view content) {
  write_files_atomic({{path, std::string(content)}});
}

void write_files_atomic(const std::vector<std::pair<std::string, std::string>>& files) {
  std::vector<std::string> temps;
  auto drop_temps = [&] {
    for (const auto& t : temps) ::unlink(t.c_str());
  };
  try {
    for (const auto& [path, content] : files) temps.push_back(write_temp(path, content));
  } catch (...) {
    drop_temps();
    throw;
  }
  // The renames run with the termination signals held back: they are delivered (and act) after
  // the last rename.
  sigset_t hold, old;
  sigemptyset(&hold);
  for (int s : {SIGINT, SIGTERM, SIGHUP, SIGQUIT}) sigaddset(&hold, s);
  ::pthread_sigmask(SIG_BLOCK, &hold, &old);
  const int pause_ms = files.size() > 1 ? pause_between_renames_ms() : 0;
  std::string failure;
  for (std::size_t i = 0; i < files.size(); ++i) {
    if (i > 0 && pause_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(pause_ms));
    if (std::rename(temps[i].c_str(), files[i].first.c_str()) != 0) {
      failure = "cannot replace " + files[i].first + ": " + std::strerror(errno);
      for (std::size_t j = i; j < temps.size(); ++j) ::unlink(temps[j].c_str());
      break;
    }
  }
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (!failure.empty()) throw std::runtime_error(failure);
}

void write_json_atomic(const std::string& path, const nlohmann::json& j) {
  write_file_atomic(path, j.dump(2) + "\n");
}

nlohmann::json parse_json_text(const std::string& text, const std::string& source) {
  try {
    return parse_limited(text, source);
  } catch (const nlohmann::json::exception& e) {
    // Google Benchmark writes non-finite counters as bare nan / inf, which JSON has no word
    // for; read them as null rather than refusing the whole file.
    try {
      return parse_limited(null_non_finite(text), source);
    } catch (const nlohmann::json::exception&) {
      throw std::runtime_error("cannot parse " + source + " as JSON: " + e.what());
    }
  }
}

nlohmann::json read_json_file(const std::string& path) {
  return parse_json_text(read_input_file(path, kMaxJsonFileBytes), path);
}

}  // namespace maskcheck
