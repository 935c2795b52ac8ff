// Test cases: a problem, a dtype (with the storage of each tensor when an implementation stores
// some wider: registry.hpp's Storage), and how to fill its tensors. Tensor contents are not drawn
// element by element through rapidcheck (that would shrink poorly and slowly); they are filled
// deterministically from (style, data_seed), so a printed case replays exactly.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

#include "maskcheck/reference/dtype.hpp"
#include "maskcheck/reference/masks.hpp"
#include "maskcheck/reference/problems.hpp"
#include "maskcheck/suite/registry.hpp"

namespace maskcheck {

// How tensor values are drawn. Ranges are per operation (see cases.cpp) and clipped to the
// dtype's finite range.
enum class DataStyle : std::uint8_t {
  normal,    // N(0, 1)
  integers,  // small integers: exact products and sums
  large,     // wide spread: peaked softmax, fp16 overflow range for logits
  huge,      // extreme magnitudes (|x| up to 1e4, or near the fp16 limit)
  tiny,      // |x| ~ 1e-3: nearly uniform softmax
  positive   // same sign, uniform in (0, 2]: sums that cannot cancel (accumulation drift shows)
};
std::string_view to_string(DataStyle s);
DataStyle data_style_from_string(std::string_view s);

// Deterministic generator for tensor contents (SplitMix64 stream).
class DataRng {
 public:
  explicit DataRng(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next();
  double uniform();  // [0, 1)
  double normal();
  std::int64_t below(std::int64_t n);  // [0, n)

 private:
  std::uint64_t state_;
};

// Draws n values in `style` for `op_scale` (the typical magnitude the operation expects),
// rounded to dtype t.
std::vector<double> draw_values(DataRng& rng, std::size_t n, DataStyle style, DType t,
                                double large_sigma, double huge_abs);

struct MaskCase {
  MaskSpec spec;
  MaskEncoding encoding = MaskEncoding::keep;
  DType dtype = DType::f32;
};

struct SoftmaxCase {
  SoftmaxProblem problem;
  DType dtype = DType::f32;
  std::optional<Storage> storage;  // mixed storage; empty: every tensor in dtype
  DataStyle style = DataStyle::normal;
  std::uint64_t data_seed = 0;
};
struct SoftmaxData {
  std::vector<double> x;
};
SoftmaxData make_data(const SoftmaxCase& c);

struct AttentionCase {
  AttentionProblem problem;
  DType dtype = DType::f32;
  std::optional<Storage> storage;  // mixed storage; empty: every tensor in dtype
  DataStyle style = DataStyle::normal;
  std::uint64_t data_seed = 0;
  bool want_lse = true;
};
struct AttentionData {
  std::vector<double> q, k, v;
};
AttentionData make_data(const AttentionCase& c);

struct LossCase {
  LossProblem problem;
  DType dtype = DType::f32;
  std::optional<Storage> storage;  // mixed storage; empty: every tensor in dtype
  DataStyle style = DataStyle::normal;
  std::uint64_t data_seed = 0;
  double ignored_fraction = 0.0;  // share of rows whose label is ignore_index (1.0: all ignored)
};
struct LossData {
  std::vector<double> logits;
  std::vector<std::int64_t> labels;
  std::vector<double> weights;  // empty unless weighted
};
LossData make_data(const LossCase& c);
// (make_data draws each input in its own storage dtype: storage_of(c), registry.hpp.)

struct LabelsCase {
  LmLabelsProblem problem;
  std::vector<std::int32_t> lengths;  // valid tokens per sequence
  PaddingSide padding = PaddingSide::right;
  std::vector<std::int32_t> prompt_lens;  // empty: no prompts
  std::int64_t V = 8;
  std::int64_t pad_id = 0;  // also the EOS id when eos_is_pad
  bool eos_is_pad = true;   // sequences end with an EOS token equal to the pad id
  std::uint64_t data_seed = 0;
};
struct LabelsData {
  std::vector<std::int64_t> ids;
  std::vector<std::uint8_t> keep;
};
LabelsData make_data(const LabelsCase& c);

struct MlmCase {
  MlmProblem problem;
  std::vector<std::int32_t> lengths;
  PaddingSide padding = PaddingSide::right;
  double special_fraction = 0.1;  // besides [CLS] first and [SEP] last
  double continuation_fraction = 0.3;
  std::uint64_t data_seed = 0;
};
struct MlmData {
  std::vector<std::int64_t> ids;
  std::vector<std::uint8_t> keep, special, continuation;
};
MlmData make_data(const MlmCase& c);

// One-line descriptions used in counterexamples and JSON.
std::string describe(const MaskSpec& m);
std::string describe(const MaskCase& c);
std::string describe(const SoftmaxCase& c);
std::string describe(const AttentionCase& c);
std::string describe(const LossCase& c);
std::string describe(const LabelsCase& c);
std::string describe(const MlmCase& c);

// rapidcheck prints counterexamples through these (found by argument-dependent lookup).
void showValue(const MaskSpec& m, std::ostream& os);
void showValue(const MaskCase& c, std::ostream& os);
void showValue(const SoftmaxCase& c, std::ostream& os);
void showValue(const AttentionCase& c, std::ostream& os);
void showValue(const LossCase& c, std::ostream& os);
void showValue(const LabelsCase& c, std::ostream& os);
void showValue(const MlmCase& c, std::ostream& os);

}  // namespace maskcheck
