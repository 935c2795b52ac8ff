// maskcheck bench: runs maskcheck_bench, the benchmark binary built next to this executable,
// and keeps its JSON only when the run finished.
#include "commands.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <iostream>
#include <regex>

#include <fmt/core.h>

#include "maskcheck/reference/common.hpp"
#include "maskcheck/suite/io.hpp"
#include "maskcheck/suite/process.hpp"

namespace mc = maskcheck;

namespace maskcheck::cli {

int cmd_bench(const BenchOptions& o) {
  namespace fs = std::filesystem;
  const fs::path bin = self_executable().parent_path() / "maskcheck_bench";
  if (!fs::exists(bin)) {
    std::cerr << "maskcheck: the benchmark binary " << bin.string()
              << " is missing: build the maskcheck_bench target (MASKCHECK_BUILD_BENCHMARKS=ON), "
                 "which puts it next to maskcheck\n";
    return kExitUsage;
  }
  if (!o.filter.empty()) {
    try {
      std::regex re(o.filter, std::regex::extended);
    } catch (const std::regex_error& e) {
      throw mc::InvalidArgument("--filter", o.filter,
                                std::string("not a regular expression: ") + e.what());
    }
  }
  std::vector<std::string> args{bin.string()};
  for (const auto& plugin : o.plugins) {
    std::error_code ec;
    if (!fs::is_regular_file(plugin, ec))
      throw mc::InvalidArgument("--plugin", plugin, "must be a plugin library (a regular file)");
    args.push_back("--plugin=" + fs::absolute(plugin, ec).string());
  }
  if (!o.filter.empty()) args.push_back("--benchmark_filter=" + o.filter);
  args.push_back("--benchmark_repetitions=" + std::to_string(o.repetitions));
  // The console shows the aggregates (median, mean, stddev, cv); the JSON keeps every repetition
  // too, for a significance test against a baseline.
  if (o.repetitions > 1) args.push_back("--benchmark_display_aggregates_only=true");
  if (!o.min_time.empty())
    args.push_back(
        fmt::format("--benchmark_min_time={}", mc::parse_positive(o.min_time, "--min-time")));
  // The JSON goes to a temporary file beside the target and is renamed into place only when the
  // run finished and wrote valid JSON: an interrupted run never replaces a good file.
  std::string tmp;
  if (!o.json.empty()) {
    const fs::path target(o.json);
    if (target.has_parent_path()) {
      std::error_code ec;
      fs::create_directories(target.parent_path(), ec);
      if (ec)
        throw std::runtime_error("cannot create directory " + target.parent_path().string() + ": " +
                                 ec.message());
    }
    mc::remove_stale_temp_files(o.json);
    tmp = mc::temp_path_for(o.json);
    args.push_back("--benchmark_out=" + tmp);
    args.push_back("--benchmark_out_format=json");
  }
  args.insert(args.end(), o.extra.begin(), o.extra.end());
  std::string line;
  for (const auto& a : args) line += (line.empty() ? "" : " ") + a;
  std::cout << "maskcheck bench: " << line << std::endl;

  int noted = 0;
  const int rc = run_foreground(bin, args, &noted);
  if (tmp.empty()) return rc;
  std::error_code ec;
  // 0: all results matched; 1: a maskcheck row mismatched, the results are still complete.
  const bool finished = (rc == 0 || rc == kExitFailed) && noted == 0;
  std::string why;
  bool matched_nothing = false;
  if (!finished) {
    why = noted != 0 ? "interrupted"
          : rc == kExitUsage
              ? "maskcheck_bench ran nothing (no benchmark matched the filter, it did not know "
                "an argument, or a --plugin library could not be loaded)"
              : "maskcheck_bench exited with " + std::to_string(rc);
  } else if (!fs::exists(tmp, ec) || fs::file_size(tmp, ec) == 0) {
    why = "maskcheck_bench wrote no results (no benchmark matched the filter?)";
    matched_nothing = rc == 0;
  } else {
    try {
      const nlohmann::json j = mc::read_json_file(tmp);
      if (!j.contains("benchmarks") || !j.contains("context"))
        why = "maskcheck_bench's output is not Google Benchmark JSON";
    } catch (const std::exception& e) {
      why = e.what();
    }
  }
  if (!why.empty()) {
    fs::remove(tmp, ec);
    std::cerr << "maskcheck: " << why << "; " << o.json << " left unchanged\n";
    // A filter that matches nothing is a usage error, like a bad regular expression.
    return matched_nothing ? kExitUsage : (rc != 0 ? rc : kExitFailed);
  }
  if (const int fd = ::open(tmp.c_str(), O_RDONLY); fd >= 0) {  // on disk before the rename
    ::fsync(fd);
    ::close(fd);
  }
  mc::check_output_path(o.json, "--json");  // still a plain path after the run
  fs::rename(tmp, o.json, ec);
  if (ec) {
    fs::remove(tmp, ec);
    throw std::runtime_error("cannot replace " + o.json + ": " + ec.message());
  }
  std::cout << "wrote " << o.json << "\n";
  return rc;
}

}  // namespace maskcheck::cli
