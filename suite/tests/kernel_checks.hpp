// Helpers of the kernel tests (cpu_kernels_test, cuda_kernels_test): implementations from the
// builtin registry, deterministic inputs, an elementwise comparison and a padded causal mask.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "maskcheck/suite/builtin.hpp"
#include "maskcheck/suite/registry.hpp"

namespace kernel_checks {

namespace mc = maskcheck;

inline const mc::Implementation& impl(const char* name) {
  const auto p = mc::builtin_registry().find(name);
  if (!p) throw std::runtime_error(std::string("no implementation ") + name);
  return *p;
}

inline std::vector<double> uniform(std::size_t n, double lo, double hi, std::uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> d(static_cast<float>(lo), static_cast<float>(hi));
  std::vector<double> v(n);
  for (auto& x : v) x = d(gen);  // representable in f32
  return v;
}

// Every entry within atol + rtol |want|; entries the reference gives exactly 0 (masked) must be
// exactly +0.0.
inline void expect_close(const std::vector<double>& got, const std::vector<double>& want,
                         double atol, double rtol, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  int bad = 0;
  for (std::size_t i = 0; i < got.size() && bad < 5; ++i) {
    const bool exact_zero = want[i] == 0.0;
    const bool ok = exact_zero ? (got[i] == 0.0 && !std::signbit(got[i]))
                               : got[i] == want[i] ||  // -inf log-sum-exp
                                     std::abs(got[i] - want[i]) <= atol + rtol * std::abs(want[i]);
    if (!ok) {
      ++bad;
      ADD_FAILURE() << what << "[" << i << "] got " << got[i] << " want " << want[i];
    }
  }
}

inline mc::MaskSpec padded_causal(std::int64_t Lq, std::int64_t Lk) {
  mc::MaskSpec m;
  m.B = 2;
  m.Lq = Lq;
  m.Lk = Lk;
  m.q_lens = {static_cast<std::int32_t>(Lq), static_cast<std::int32_t>(Lq / 2 + 1)};
  m.k_lens = {static_cast<std::int32_t>(Lk), static_cast<std::int32_t>(Lk * 3 / 5)};
  m.causal = true;
  return m;
}

}  // namespace kernel_checks
