#include "maskcheck/reports/stats.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <utility>
#include <vector>

namespace maskcheck::reports {
namespace {

// counts[u] = the number of arrangements of m x's and n y's, all values distinct, in which
// exactly u (x, y) pairs have y > x. Total: C(m + n, n); C(40, 20) < 2^53, so every count is an
// exact double.
std::vector<double> u_counts(std::size_t m, std::size_t n) {
  // c[i][j] for i <= m x's and j <= n y's; c[i][j].size() == i * j + 1.
  std::vector<std::vector<std::vector<double>>> c(m + 1, std::vector<std::vector<double>>(n + 1));
  for (std::size_t i = 0; i <= m; ++i)
    for (std::size_t j = 0; j <= n; ++j) {
      auto& cur = c[i][j];
      cur.assign(i * j + 1, 0.0);
      if (i == 0 || j == 0) {
        cur[0] = 1;
        continue;
      }
      // The largest of the i + j values is an x: it is above no y, U is unchanged.
      const auto& x_top = c[i - 1][j];
      for (std::size_t u = 0; u < x_top.size(); ++u) cur[u] += x_top[u];
      // It is a y: it is above all i x's, U grows by i.
      const auto& y_top = c[i][j - 1];
      for (std::size_t u = 0; u < y_top.size(); ++u) cur[u + i] += y_top[u];
    }
  return std::move(c[m][n]);
}

// counts[s] = the number of n-element subsets of `ranks2` (doubled midranks, integers) whose sum
// is s.
std::vector<double> rank_sum_counts(const std::vector<long>& ranks2, std::size_t n) {
  long total = 0;
  for (long r : ranks2) total += r;
  // cnt[k][s]: k-subsets of the items seen so far with sum s.
  std::vector<std::vector<double>> cnt(n + 1, std::vector<double>(total + 1, 0.0));
  cnt[0][0] = 1;
  std::size_t seen = 0;
  for (long r : ranks2) {
    ++seen;
    for (std::size_t k = std::min(seen, n); k >= 1; --k)
      for (long s = total; s >= r; --s) cnt[k][s] += cnt[k - 1][s - r];
  }
  return std::move(cnt[n]);
}

}  // namespace

double normal_sf(double z) {
  return 0.5 * std::erfc(z / std::sqrt(2.0));
}

double smallest_exact_p(std::size_t m, std::size_t n) {
  // 1 / C(m + n, n) as a running product, exact enough in double for any size.
  double p = 1;
  for (std::size_t k = 1; k <= n; ++k) p *= static_cast<double>(k) / static_cast<double>(m + k);
  return p;
}

RankTest mann_whitney_u(std::span<const double> x, std::span<const double> y) {
  if (x.empty() || y.empty()) throw std::invalid_argument("Mann-Whitney U test: a sample is empty");
  for (const auto s : {x, y})
    for (double v : s)
      if (std::isnan(v)) throw std::invalid_argument("Mann-Whitney U test: a sample holds NaN");

  RankTest t;
  t.m = x.size();
  t.n = y.size();
  const std::size_t total = t.m + t.n;

  // The pooled sample in order; doubled midranks keep every rank an integer: values tied over
  // the 1-based ranks a..b all get (a + b) / 2, doubled a + b.
  std::vector<std::pair<double, bool>> pooled;  // (value, belongs to y)
  pooled.reserve(total);
  for (double v : x) pooled.emplace_back(v, false);
  for (double v : y) pooled.emplace_back(v, true);
  std::sort(pooled.begin(), pooled.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<long> ranks2(total);
  long rank_sum_y2 = 0;  // twice the midrank sum of y
  double tie_term = 0;   // sum over tie groups of t^3 - t
  for (std::size_t i = 0; i < total;) {
    std::size_t j = i + 1;
    while (j < total && pooled[j].first == pooled[i].first) ++j;
    const long r2 = static_cast<long>(i + 1 + j);  // ranks i+1 .. j
    for (std::size_t k = i; k < j; ++k) {
      ranks2[k] = r2;
      if (pooled[k].second) rank_sum_y2 += r2;
    }
    const double group = static_cast<double>(j - i);
    tie_term += group * group * group - group;
    if (j - i > 1) t.ties = true;
    i = j;
  }
  const double m = static_cast<double>(t.m), n = static_cast<double>(t.n);
  t.u = static_cast<double>(rank_sum_y2) / 2 - n * (n + 1) / 2;

  if (t.m <= kExactMax && t.n <= kExactMax) {
    t.exact = true;
    double all = 0, ge = 0, le = 0;
    if (!t.ties) {
      const std::vector<double> c = u_counts(t.m, t.n);
      const auto u = static_cast<std::size_t>(std::lround(t.u));
      for (std::size_t k = 0; k < c.size(); ++k) {
        all += c[k];
        if (k >= u) ge += c[k];
        if (k <= u) le += c[k];
      }
    } else {
      const std::vector<double> c = rank_sum_counts(ranks2, t.n);
      for (std::size_t s = 0; s < c.size(); ++s) {
        all += c[s];
        if (static_cast<long>(s) >= rank_sum_y2) ge += c[s];
        if (static_cast<long>(s) <= rank_sum_y2) le += c[s];
      }
    }
    t.p_greater = ge / all;
    t.p_less = le / all;
    return t;
  }

  const double N = static_cast<double>(total);
  const double mean = m * n / 2;
  const double var = m * n / 12 * ((N + 1) - tie_term / (N * (N - 1)));
  if (!(var > 0)) return t;  // every value equal: no evidence either way, p = 1
  const double sd = std::sqrt(var);
  t.p_greater = std::clamp(normal_sf((t.u - mean - 0.5) / sd), 0.0, 1.0);
  t.p_less = std::clamp(normal_sf((mean - t.u - 0.5) / sd), 0.0, 1.0);
  return t;
}

}  // namespace maskcheck::reports
