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
// Consistency (check_consistent): two runs of one implementation on equivalent problems (a
// document alone and in its batch, varlen and padded, ...). Each run may be off the exact result
// by what check_close allows it, so the two may differ by twice that: 2 max(2 max|naive - want|
// + eps, atol + rtol |want|, the element's rounding bound), given the Conditioning of the
// computation (conditioning(): the same terms check_close uses). Without one, the dtype floor.
//
// A failed check reports how many elements mismatch, how many of those are NaN or infinite
// where the other side is not (or a different infinity), the largest finite error and the range
// of the per-element bounds applied to the mismatching elements; then the first 5 mismatches with
// their named coordinates, e.g. "(b=1, h=0, q=7, d=3) got 0.51 want 0.49 (allowed +-0.01)", the
// other side named for what it is ("want" for the reference, "batched run" or "unpadded run" in a
// consistency check); it stops collecting at 10.
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

// What check_close allows one run of a computation: the FlashAttention bound over the tensor
// and, optionally, each element's rounding bound.
struct Conditioning {
  double fa_bound = 0;           // 2 max|naive - want| + eps
  std::vector<double> rounding;  // per element, or empty
};
Conditioning conditioning(std::span<const double> want, std::span<const double> naive, DType t,
                          std::span<const double> rounding = {});

struct CheckResult {
  bool ok = true;
  std::string what;  // tensor name
  Shape shape;
  double max_abs_err = 0;  // over elements where both are finite
  double max_rel_err = 0;
  double naive_abs_err = 0;         // max|naive - want| (check_close only)
  double bound = 0;                 // 2 * naive_abs_err + eps (check_close only)
  bool rounding_bound = false;      // check_close was given per-element rounding bounds
  std::int64_t mismatches = 0;      // counted up to kStopAt
  std::int64_t all_mismatches = 0;  // every mismatching element
  std::int64_t nan_mismatches = 0;  // ... of which NaN on one side only
  std::int64_t inf_mismatches = 0;  // ... of which infinite on one side only (or opposite signs)
  double min_allowed = 0, max_allowed = 0;  // the bounds applied to the mismatching elements
  std::string want_name = "want";           // the other side: "want", "batched run", ...
  std::vector<Mismatch> first;              // up to kStopAt
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

// Consistency of two runs of one implementation on equivalent problems; `want_name` names the
// run compared against ("batched run"). With a Conditioning of the computation, see above;
// without, the plain dtype floor.
CheckResult check_consistent(std::string_view what, const Shape& shape, std::span<const double> got,
                             std::span<const double> want, DType t,
                             std::string_view want_name = "want",
                             const Conditioning* cond = nullptr);

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
