// Progress of a long run (properties of `maskcheck verify`, benchmarks of `maskcheck_bench`):
// "property 12 of 141", elapsed time and an estimate of the time left.
//
// On a terminal the progress is one status line, rewritten in place (carriage return + erase)
// and erased before any other output; otherwise it is plain lines, at most one per `interval`
// seconds, that read well in a CI log. MASKCHECK_PROGRESS=tty|plain|off overrides the choice
// (off: nothing; the per-item result lines of the tools are unaffected).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdio>
#include <string>

namespace maskcheck {

class Progress {
 public:
  enum class Mode { off, plain, tty };

  // `noun`: what is counted, plural ("properties", "benchmarks"); `out`: where it goes.
  Progress(std::string noun, std::size_t total, std::FILE* out = stderr, double interval = 30);

  // Item `done` of `total` finished, `current` (optional) names it. Prints according to the mode.
  void update(std::size_t done, const std::string& current = {});
  // Erases the status line (terminal mode) so that other output starts on a clean line; call
  // before printing anything else to a stream that shares the terminal.
  void clear();
  // Erases the status line for good.
  void finish();

  Mode mode() const { return mode_; }
  // "12 of 141 properties, 34 s elapsed, ~5 min 12 s left" (no estimate before the first item).
  std::string text(std::size_t done) const;
  // The time part of text(): "34 s elapsed, ~5 min 12 s left".
  std::string timing(std::size_t done) const;
  double elapsed() const;

  // "5 min 12 s", "1 h 2 min", "12 s".
  static std::string duration(double seconds);
  // MASKCHECK_PROGRESS, else tty when `out` is a terminal, else plain.
  static Mode mode_for(std::FILE* out);

 private:
  std::string noun_;
  std::size_t total_;
  std::FILE* out_;
  double interval_;
  Mode mode_;
  bool shown_ = false;
  double last_plain_ = -1;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace maskcheck
