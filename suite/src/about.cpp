#include "maskcheck/suite/about.hpp"

#include <sys/utsname.h>

#include <chrono>
#include <ctime>
#include <fstream>
#include <thread>

#include "maskcheck_build_info.hpp"  // generated: MASKCHECK_GIT_COMMIT, MASKCHECK_GIT_DIRTY

namespace maskcheck {

std::string utc_now_iso8601() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string git_commit() {
  return MASKCHECK_GIT_COMMIT;
}

namespace {

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      if (colon != std::string::npos) return line.substr(colon + 2);
    }
  return "unknown";
}

std::string compiler() {
#if defined(__clang__)
  return "clang " __clang_version__;
#elif defined(__GNUC__)
  return "gcc " __VERSION__;
#else
  return "unknown";
#endif
}

}  // namespace

nlohmann::json about_json() {
  utsname u{};
  uname(&u);
  return {{"maskcheck", MASKCHECK_VERSION},
          {"commit", MASKCHECK_GIT_COMMIT},
          {"dirty", MASKCHECK_GIT_DIRTY != 0},
          {"build_type", MASKCHECK_BUILD_TYPE},
          {"compiler", compiler()},
          {"cpu", cpu_model()},
          {"cores", std::thread::hardware_concurrency()},
          {"os", std::string(u.sysname) + " " + u.release + " " + u.machine},
          {"date", utc_now_iso8601()}};
}

}  // namespace maskcheck
