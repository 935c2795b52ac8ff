#include "maskcheck/suite/tolerance.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <map>
#include <sstream>

#include "maskcheck/reference/common.hpp"

namespace maskcheck {
namespace {

std::map<std::string, ErrorRecord>& ledger() {
  static std::map<std::string, ErrorRecord> l;
  return l;
}

void record(const std::string& what, double abs_err, double rel_err, double ratio) {
  auto& r = ledger()[what];
  r.what = what;
  r.max_abs_err = std::max(r.max_abs_err, abs_err);
  r.max_rel_err = std::max(r.max_rel_err, rel_err);
  r.max_ratio_to_bound = std::max(r.max_ratio_to_bound, ratio);
}

void require_same_size(const Shape& shape, std::size_t got, std::size_t want) {
  require_size("got", got, shape.numel());
  require_size("want", want, shape.numel());
}

void add_mismatch(CheckResult& r, std::int64_t i, double got, double want, double allowed = 0) {
  r.ok = false;
  if (r.all_mismatches == 0 || allowed < r.min_allowed) r.min_allowed = allowed;
  r.max_allowed = std::max(r.max_allowed, allowed);
  ++r.all_mismatches;
  if (std::isnan(got) != std::isnan(want))
    ++r.nan_mismatches;
  else if ((std::isinf(got) || std::isinf(want)) && got != want)
    ++r.inf_mismatches;
  if (r.mismatches < CheckResult::kStopAt) {
    r.first.push_back({i, got, want, allowed});
    ++r.mismatches;
  }
}

std::string fmt(double x) {
  std::ostringstream os;
  os.precision(9);
  os << x;
  return os.str();
}

// Shared element loop of the approximate checks; `allowed(i, want)` is the per-element bound.
template <class Allowed>
CheckResult approximate(std::string_view what, const Shape& shape, std::span<const double> got,
                        std::span<const double> want, Allowed allowed) {
  CheckResult r;
  r.what = std::string(what);
  r.shape = shape;
  double ratio = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double g = got[i], w = want[i];
    if (std::isnan(w) || std::isinf(w) || std::isnan(g) || std::isinf(g)) {
      const bool same = (std::isnan(g) && std::isnan(w)) || g == w;
      if (!same)
        add_mismatch(r, static_cast<std::int64_t>(i), g, w, std::isfinite(w) ? allowed(i, w) : 0);
      continue;
    }
    const double err = std::fabs(g - w);
    const double lim = allowed(i, w);
    r.max_abs_err = std::max(r.max_abs_err, err);
    if (w != 0) r.max_rel_err = std::max(r.max_rel_err, err / std::fabs(w));
    if (lim > 0) ratio = std::max(ratio, err / lim);
    if (err > lim) add_mismatch(r, static_cast<std::int64_t>(i), g, w, lim);
  }
  record(r.what, r.max_abs_err, r.max_rel_err, ratio);
  return r;
}

}  // namespace

Tolerance default_tolerance(DType t) {
  switch (t) {
    case DType::f64:
      return {1e-12, 1e-10, 1e-12};
    case DType::f32:
      return {1e-5, 1e-5, 1e-6};
    case DType::f16:
      return {5e-3, 5e-3, 1e-3};
    case DType::bf16:
      return {3e-2, 2e-2, 1e-2};
  }
  return {};
}

std::int64_t Shape::numel() const {
  std::int64_t n = 1;
  for (auto d : dims) n *= d;
  return n;
}

std::string Shape::coords(std::int64_t flat) const {
  std::vector<std::int64_t> idx(dims.size());
  for (std::size_t a = dims.size(); a-- > 0;) {
    const std::int64_t d = std::max<std::int64_t>(dims[a], 1);
    idx[a] = flat % d;
    flat /= d;
  }
  std::string s = "(";
  for (std::size_t a = 0; a < idx.size(); ++a) {
    if (a) s += ", ";
    s += (a < names.size() ? names[a] : "i" + std::to_string(a)) + "=" + std::to_string(idx[a]);
  }
  return s + ")";
}

std::string CheckResult::report() const {
  if (ok) return {};
  std::ostringstream os;
  os << what << ": " << all_mismatches << " mismatching element" << (all_mismatches == 1 ? "" : "s")
     << " of " << shape.numel();
  std::vector<std::string> parts;
  if (nan_mismatches > 0) parts.push_back(std::to_string(nan_mismatches) + " NaN");
  if (inf_mismatches > 0) parts.push_back(std::to_string(inf_mismatches) + " inf");
  if (max_abs_err > 0 || nan_mismatches + inf_mismatches < all_mismatches)
    parts.push_back("max |err| " + fmt(max_abs_err) + " over finite pairs");
  if (max_allowed > 0) {
    std::string bounds = min_allowed == max_allowed
                             ? "allowed +-" + fmt(max_allowed)
                             : "allowed +-" + fmt(min_allowed) + " to +-" + fmt(max_allowed);
    if (bound > 0 || naive_abs_err > 0)
      bounds += " (2*naive " + fmt(naive_abs_err) + " + eps = " + fmt(bound) + ", the dtype floor" +
                (rounding_bound ? ", or the element's first-order rounding bound" : "") + ")";
    parts.push_back(bounds);
  }
  if (!parts.empty()) {
    os << " (";
    for (std::size_t i = 0; i < parts.size(); ++i) os << (i ? "; " : "") << parts[i];
    os << ")";
  }
  os << "\n";
  for (std::size_t i = 0; i < first.size() && i < static_cast<std::size_t>(kShow); ++i)
    os << "  " << what << shape.coords(first[i].index) << " got " << fmt(first[i].got) << " "
       << want_name << " " << fmt(first[i].want)
       << (first[i].allowed > 0 ? " (allowed +-" + fmt(first[i].allowed) + ")" : "") << "\n";
  return os.str();
}

CheckResult check_close(std::string_view what, const Shape& shape, std::span<const double> got,
                        std::span<const double> want, std::span<const double> naive,
                        const Tolerance& tol, std::span<const double> rounding) {
  require_same_size(shape, got.size(), want.size());
  require_size("naive", naive.size(), shape.numel());
  if (!rounding.empty()) require_size("rounding", rounding.size(), shape.numel());
  double naive_err = 0;
  for (std::size_t i = 0; i < want.size(); ++i)
    if (std::isfinite(want[i]) && std::isfinite(naive[i]))
      naive_err = std::max(naive_err, std::fabs(naive[i] - want[i]));
  const double fa_bound = 2 * naive_err + tol.eps;
  CheckResult r = approximate(what, shape, got, want, [&](std::size_t i, double w) {
    const double lim = std::max(fa_bound, tol.atol + tol.rtol * std::fabs(w));
    return rounding.empty() ? lim : std::max(lim, rounding[i]);
  });
  r.rounding_bound = !rounding.empty();
  r.naive_abs_err = naive_err;
  r.bound = fa_bound;
  return r;
}

Conditioning conditioning(std::span<const double> want, std::span<const double> naive, DType t,
                          std::span<const double> rounding) {
  require_size("naive", naive.size(), static_cast<std::int64_t>(want.size()));
  if (!rounding.empty())
    require_size("rounding", rounding.size(), static_cast<std::int64_t>(want.size()));
  double naive_err = 0;
  for (std::size_t i = 0; i < want.size(); ++i)
    if (std::isfinite(want[i]) && std::isfinite(naive[i]))
      naive_err = std::max(naive_err, std::fabs(naive[i] - want[i]));
  return {2 * naive_err + default_tolerance(t).eps, {rounding.begin(), rounding.end()}};
}

CheckResult check_consistent(std::string_view what, const Shape& shape, std::span<const double> got,
                             std::span<const double> want, DType t, std::string_view want_name,
                             const Conditioning* cond) {
  require_same_size(shape, got.size(), want.size());
  if (cond && !cond->rounding.empty())
    require_size("rounding", cond->rounding.size(), shape.numel());
  const Tolerance tol = default_tolerance(t);
  CheckResult r = approximate(what, shape, got, want, [&](std::size_t i, double w) {
    const double floor = tol.atol + tol.rtol * std::fabs(w);
    double lim = tol.eps + floor;
    if (cond) {
      const double one_run =
          std::max({cond->fa_bound, floor, cond->rounding.empty() ? 0.0 : cond->rounding[i]});
      lim = std::max(lim, 2 * one_run);
    }
    return lim;
  });
  r.want_name = std::string(want_name);
  return r;
}

CheckResult check_exact(std::string_view what, const Shape& shape, std::span<const double> got,
                        std::span<const double> want) {
  require_same_size(shape, got.size(), want.size());
  CheckResult r;
  r.what = std::string(what);
  r.shape = shape;
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (std::bit_cast<std::uint64_t>(got[i]) == std::bit_cast<std::uint64_t>(want[i])) continue;
    if (std::isfinite(got[i]) && std::isfinite(want[i]))
      r.max_abs_err = std::max(r.max_abs_err, std::fabs(got[i] - want[i]));
    add_mismatch(r, static_cast<std::int64_t>(i), got[i], want[i]);
  }
  return r;
}

CheckResult check_exact(std::string_view what, const Shape& shape,
                        std::span<const std::int64_t> got, std::span<const std::int64_t> want) {
  require_same_size(shape, got.size(), want.size());
  CheckResult r;
  r.what = std::string(what);
  r.shape = shape;
  for (std::size_t i = 0; i < got.size(); ++i)
    if (got[i] != want[i])
      add_mismatch(r, static_cast<std::int64_t>(i), static_cast<double>(got[i]),
                   static_cast<double>(want[i]));
  return r;
}

void reset_error_ledger() {
  ledger().clear();
}

std::vector<ErrorRecord> error_ledger() {
  std::vector<ErrorRecord> v;
  for (const auto& [k, r] : ledger()) v.push_back(r);
  return v;
}

void restore_error_ledger(const std::vector<ErrorRecord>& records) {
  ledger().clear();
  for (const auto& r : records) ledger()[r.what] = r;
}

}  // namespace maskcheck
