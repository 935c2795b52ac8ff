#include "maskcheck/suite/progress.hpp"

#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <string_view>

namespace maskcheck {

Progress::Progress(std::string noun, std::size_t total, std::FILE* out, double interval)
    : noun_(std::move(noun)),
      total_(total),
      out_(out),
      interval_(interval),
      mode_(mode_for(out)),
      start_(std::chrono::steady_clock::now()) {}

Progress::Mode Progress::mode_for(std::FILE* out) {
  if (const char* s = std::getenv("MASKCHECK_PROGRESS"); s && *s) {
    const std::string_view v(s);
    if (v == "off") return Mode::off;
    if (v == "plain") return Mode::plain;
    if (v == "tty") return Mode::tty;
  }
  // A terminal that cannot move the cursor (TERM=dumb, as in some CI log viewers) gets lines.
  const char* term = std::getenv("TERM");
  const bool dumb = term && std::string_view(term) == "dumb";
  return out && ::isatty(::fileno(out)) && !dumb ? Mode::tty : Mode::plain;
}

double Progress::elapsed() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

std::string Progress::duration(double seconds) {
  const long s = std::lround(std::max(0.0, seconds));
  if (s < 60) return std::to_string(s) + " s";
  if (s < 3600)
    return std::to_string(s / 60) + " min" + (s % 60 ? " " + std::to_string(s % 60) + " s" : "");
  return std::to_string(s / 3600) + " h" +
         (s % 3600 / 60 ? " " + std::to_string(s % 3600 / 60) + " min" : "");
}

std::string Progress::timing(std::size_t done) const {
  const double t = elapsed();
  std::string s = duration(t) + " elapsed";
  if (done > 0 && done < total_)
    s += ", ~" + duration(t / static_cast<double>(done) * static_cast<double>(total_ - done)) +
         " left";
  return s;
}

std::string Progress::text(std::size_t done) const {
  return std::to_string(done) + " of " + std::to_string(total_) + " " + noun_ + ", " + timing(done);
}

void Progress::update(std::size_t done, const std::string& current) {
  if (mode_ == Mode::off || !out_) return;
  if (mode_ == Mode::tty) {
    std::string line = text(done);
    if (!current.empty()) line += " (" + current + ")";
    // Keep the status on one line of a narrow terminal: cut the tail, never wrap.
    if (line.size() > 160) line.resize(160);
    std::fprintf(out_, "\r\033[K%s", line.c_str());
    std::fflush(out_);
    shown_ = true;
    return;
  }
  const double t = elapsed();
  if (done < total_ && last_plain_ >= 0 && t - last_plain_ < interval_) return;
  last_plain_ = t;
  std::fprintf(out_, "progress: %s\n", text(done).c_str());
  std::fflush(out_);
}

void Progress::clear() {
  if (mode_ != Mode::tty || !shown_ || !out_) return;
  std::fprintf(out_, "\r\033[K");
  std::fflush(out_);
  shown_ = false;
}

void Progress::finish() {
  clear();
}

}  // namespace maskcheck
