// rapidcheck generators for every problem type. Cases are valid by construction (no RC_PRE):
// lengths are drawn inside their ranges, cu_seqlens from sorted cut points, heads as a multiple
// of the kv heads. They are biased toward the edges where masking code breaks: lengths 0 and 1,
// Lq != Lk both ways, tile sizes +-1 (16, 32, 64, 128), fully masked rows, all-ignored batches,
// huge and tiny logits, head dims such as 59 and 111. Everything shrinks (gen::exec shrinks each
// drawn value), and a work cap keeps each case cheap enough for the naive fp64 reference.
#pragma once

#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include <rapidcheck.h>

#include "maskcheck/suite/cases.hpp"

namespace maskcheck {

struct CaseLimits {
  std::vector<DType> dtypes{DType::f64, DType::f32, DType::f16, DType::bf16};
  std::int64_t max_work = std::int64_t{1} << 21;  // B*H*Lq*Lk*D (attention), B*H*Lq*Lk, N*V
  std::int64_t max_len = 260;                     // longest random sequence
  bool attention_lse = true;                      // attention cases may ask for the LSE
  // Mixed storage (registry.hpp): the dtypes whose cases store some tensor wider; the others
  // store every tensor in the case's dtype.
  std::vector<std::pair<DType, Storage>> storage;
  std::optional<Storage> storage_for(DType t) const {
    for (const auto& [d, s] : storage)
      if (d == t) return s;
    return std::nullopt;
  }
};

rc::Gen<std::int64_t> gen_length(std::int64_t max_len);  // tile edges, 0, 1, random
rc::Gen<std::int32_t> gen_valid_length(std::int64_t L);  // in [0, L], edge-biased
rc::Gen<MaskSpec> gen_mask_spec(std::int64_t B, std::int64_t Lq, std::int64_t Lk);
rc::Gen<MaskCase> gen_mask_case(const CaseLimits& limits = {});
rc::Gen<SoftmaxCase> gen_softmax_case(const CaseLimits& limits = {});
rc::Gen<AttentionCase> gen_attention_case(const CaseLimits& limits = {});
rc::Gen<LossCase> gen_loss_case(const CaseLimits& limits = {});
rc::Gen<LabelsCase> gen_labels_case();
rc::Gen<MlmCase> gen_mlm_case();
// Large MLM problems with default-ish rates, for the statistical properties.
rc::Gen<MlmCase> gen_mlm_stat_case();

// Coverage tags of a case (RC_TAG'd by the properties, counted in the summary).
std::vector<std::string> coverage_tags(const MaskSpec& m);

}  // namespace maskcheck

namespace rc {
template <>
struct Arbitrary<maskcheck::MaskSpec> {
  static Gen<maskcheck::MaskSpec> arbitrary();
};
template <>
struct Arbitrary<maskcheck::MaskCase> {
  static Gen<maskcheck::MaskCase> arbitrary() { return maskcheck::gen_mask_case(); }
};
template <>
struct Arbitrary<maskcheck::SoftmaxCase> {
  static Gen<maskcheck::SoftmaxCase> arbitrary() { return maskcheck::gen_softmax_case(); }
};
template <>
struct Arbitrary<maskcheck::AttentionCase> {
  static Gen<maskcheck::AttentionCase> arbitrary() { return maskcheck::gen_attention_case(); }
};
template <>
struct Arbitrary<maskcheck::LossCase> {
  static Gen<maskcheck::LossCase> arbitrary() { return maskcheck::gen_loss_case(); }
};
template <>
struct Arbitrary<maskcheck::LabelsCase> {
  static Gen<maskcheck::LabelsCase> arbitrary() { return maskcheck::gen_labels_case(); }
};
template <>
struct Arbitrary<maskcheck::MlmCase> {
  static Gen<maskcheck::MlmCase> arbitrary() { return maskcheck::gen_mlm_case(); }
};
}  // namespace rc
