// The one tolerance module. Every comparison in the suite goes through it.
//
// Approximate agreement (check_close), for an implementation computing in dtype t against the
// fp64 reference `want` on the same (dtype-representable) inputs:
//   the FlashAttention rule  |got - want| <= 2 * max|naive - want| + eps(t)
//   where `naive` is the reference instantiated in the implementation's storage dtype (fp32
//   accumulation), i.e. what a straightforward framework implementation would produce, and
//   the plain dtype-aware floor |got - want| <= atol(t) + rtol(t) * |want|.
//   An element agrees when it meets either bound: the rule scales with the conditioning of the
//   problem (large logits, long rows), the floor keeps exactly-computable cases from failing on
//   eps alone. Infinities must match exactly; NaN never agrees with a number.
//   Optionally a third, per element: a first-order rounding bound (`rounding`), how far any
//   implementation that rounds each operation of the formula once may land from the exact value,
//   given the conditioning of these inputs (attention_rounding_bound). The rule's naive error is
//   one draw of the rounding lottery: on a small case with two nearly tied keys of score ~100, the
//   naive fp32 result happened to be off by 8e-6 and a correct FMA kernel by 2.5e-5 (twice the
//   rule's bound), about one CI run in twenty. The bound is the worst case where a few terms
//   dominate and probabilistic where many do; on well-conditioned inputs it stays within 2.5x of
//   the floor, and every bug whose error exceeds the rounding of the formula still fails.
// Exact agreement (check_exact): every element bit for bit (as double bits), NaN included.
//
// A failed check reports the first 5 mismatches with their named coordinates, e.g.
// "(b=1, h=0, q=7, d=3) got 0.51 want 0.49", and stops collecting at 10.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "maskcheck/reference/dtype.hpp"

namespace maskcheck {

struct Tolerance {
  double atol = 0;
  double rtol = 0;
  double eps = 0;
};
Tolerance default_tolerance(DType t);

// A row-major shape with named axes, for coordinates in messages.
struct Shape {
  std::vector<std::string> names;
  std::vector<std::int64_t> dims;
  std::int64_t numel() const;
  std::string coords(std::int64_t flat) const;  // "(b=1, h=0, q=7, d=3)"
};

struct Mismatch {
  std::int64_t index = 0;
  double got = 0;
  double want = 0;
  double allowed = 0;  // the element's bound (0 for exact checks)
};

struct CheckResult {
  bool ok = true;
  std::string what;  // tensor name
  Shape shape;
  double max_abs_err = 0;  // over elements where both are finite
  double max_rel_err = 0;
  double naive_abs_err = 0;     // max|naive - want| (check_close only)
  double bound = 0;             // 2 * naive_abs_err + eps (check_close only)
  bool rounding_bound = false;  // check_close was given per-element rounding bounds
  std::int64_t mismatches = 0;  // counted up to kStopAt
  std::vector<Mismatch> first;  // up to kStopAt
  static constexpr int kShow = 5;
  static constexpr int kStopAt = 10;
  std::string report() const;  // empty when ok
};

// rounding: empty, or one first-order rounding bound per element (see above).
CheckResult check_close(std::string_view what, const Shape& shape, std::span<const double> got,
                        std::span<const double> want, std::span<const double> naive,
                        const Tolerance& tol, std::span<const double> rounding = {});
inline CheckResult check_close(std::string_view what, const Shape& shape,
                               std::span<const double> got, std::span<const double> want,
                               std::span<const double> naive, DType t,
                               std::span<const double> rounding = {}) {
  return check_close(what, shape, got, want, naive, default_tolerance(t), rounding);
}

// Plain dtype-aware check without a naive baseline (consistency of two runs of one
// implementation on equivalent problems).
CheckResult check_consistent(std::string_view what, const Shape& shape, std::span<const double> got,
                             std::span<const double> want, DType t);

CheckResult check_exact(std::string_view what, const Shape& shape, std::span<const double> got,
                        std::span<const double> want);

// Integer tensors (labels, ids, masks) are compared exactly.
CheckResult check_exact(std::string_view what, const Shape& shape,
                        std::span<const std::int64_t> got, std::span<const std::int64_t> want);

// Largest errors seen by check_close/check_consistent since the last reset, per tensor name:
// the runner resets it before a property and records it in the results.
struct ErrorRecord {
  std::string what;
  double max_abs_err = 0;
  double max_rel_err = 0;
  double max_ratio_to_bound = 0;  // max over elements of |err| / allowed
};
void reset_error_ledger();
std::vector<ErrorRecord> error_ledger();
// Replaces the ledger with `records` (a snapshot taken with error_ledger()).
void restore_error_ledger(const std::vector<ErrorRecord>& records);

}  // namespace maskcheck
