// Checks before timing (llm.c: "All results match. Starting benchmarks."): host references on a
// deterministic subset of rows, compared through the suite's one tolerance module (check_close:
// the FlashAttention rule against the fp64 reference, with the naive same-dtype reference as the
// baseline, or the dtype's atol + rtol floor). Only rows with at least one visible key are
// compared: a fully masked row is a documented deviation of several peers (NaN, mean of V).
// Inputs are the raw storage of a dtype (as downloaded from a device), addressed by flat index.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "harness.hpp"
#include "maskcheck/reference/dtype.hpp"
#include "maskcheck/reference/problems.hpp"

namespace maskcheck::bench {

// Raw storage of `t` on the host.
struct HostTensor {
  DType t = DType::f32;
  std::vector<std::byte> bytes;
  std::int64_t numel() const;
  double at(std::int64_t i) const;  // element i as a double
};

// A copy of n elements of dtype t from a buffer on device d.
HostTensor to_host(Device d, const void* p, DType t, std::int64_t n);
template <class T>
std::vector<T> to_host_vector(Device d, const void* p, std::int64_t n) {
  std::vector<T> v(static_cast<std::size_t>(n));
  if (n > 0) device(d).download(v.data(), p, v.size() * sizeof(T));
  return v;
}

// n elements of dtype t in a buffer on device d as a check reads them: in place where the
// device's memory is the host's, else downloaded once. Reads after the device finished writing.
class Readback {
 public:
  Readback(Device d, const void* p, DType t, std::int64_t n);
  double at(std::int64_t i) const;  // element i as a double

 private:
  DType t_;
  const void* in_place_ = nullptr;
  HostTensor copy_;
};

// Sampled rows of a [B, H, Lq, *] tensor: a few (b, h) groups, and in each the first and last
// query with a visible key plus random ones (deterministic in the seed).
struct RowGroup {
  std::int64_t b = 0, h = 0;
  std::vector<std::int64_t> qs;
};
std::vector<RowGroup> sample_rows(const MaskSpec& m, std::int64_t H, std::uint64_t seed,
                                  int groups = 4, int rows_per_group = 16);

// Reference rows of an attention problem: want (fp64) and naive (the reference in the dtype's
// storage with fp32 accumulation), [rows][D] in the order of `groups`.
struct RowReference {
  std::vector<RowGroup> groups;
  std::int64_t width = 0;  // D for attention, Lk for softmax
  std::vector<double> want, naive;
  std::int64_t rows() const;
};
// q, k, v in the padded layout and dtype of `p`.
RowReference attention_rows(const AttentionProblem& p, const HostTensor& q, const HostTensor& k,
                            const HostTensor& v, std::uint64_t seed);
// x: [B, H, Lq, Lk].
RowReference softmax_rows(const SoftmaxProblem& p, const HostTensor& x, std::uint64_t seed);

// Compares an implementation's rows with the reference. `got(b, h, q, j)` returns element j of
// row (b, h, q) of the implementation's output, wherever its layout keeps it.
using RowAccessor =
    std::function<double(std::int64_t b, std::int64_t h, std::int64_t q, std::int64_t j)>;
CheckOutcome check_rows(std::string_view what, const RowReference& ref, DType t,
                        const RowAccessor& got);

// Cross-entropy: the fp64 loss over every row, and dlogits of sampled rows (contributing and
// ignored), compared in units of 1 / (V * norm) so that the dtype's tolerance is meaningful for
// probabilities of order 1 / V.
struct LossReference {
  double loss = 0;  // reduced loss in fp64
  double norm = 1;  // the mean's denominator (contributing rows; 1 for sum / none)
  std::vector<std::int64_t> rows;
  std::vector<bool> ignored;        // per sampled row: its label is ignore_index
  std::vector<double> want, naive;  // [rows][V], scaled by V * norm
};
LossReference cross_entropy_reference(const LossProblem& p, const HostTensor& logits,
                                      std::span<const std::int64_t> labels, std::uint64_t seed,
                                      int rows = 32);
// got_rows: dlogits of ref.rows, [rows][V], unscaled.
CheckOutcome check_cross_entropy(const LossProblem& p, const LossReference& ref, DType t,
                                 double got_loss, std::span<const double> got_rows);

}  // namespace maskcheck::bench
