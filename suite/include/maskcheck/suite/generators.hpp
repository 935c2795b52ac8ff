// rapidcheck generators for every problem type. Cases are valid by construction (no RC_PRE):
// lengths are drawn inside their ranges, cu_seqlens from sorted cut points, heads as a multiple
// of the kv heads. They are biased toward the edges where masking code breaks: lengths 0 and 1,
// Lq != Lk both ways, kernel boundaries (multiples of the tile sizes 16..256 and one off either
// side, the powers of two 512 ... 4096 ... where split-KV and multi-block paths start), fully
// masked rows, all-ignored batches, huge and tiny logits, head dims such as 59 and 111.
// Everything shrinks (gen::exec shrinks each drawn value).
//
// Size tiers (maskcheck verify --size): every tier draws regular cases up to its max_len and a
// share of cheap long ones (decode-shaped attention: Lq 1-4, few heads, small D, long keys; long
// softmax and cross-entropy rows). A work cap keeps each case affordable for the naive fp64
// reference, and a memory budget bounds what one case of any property holds at once: shapes are
// cut (batch, heads, head dim, then queries) until the case's estimate fits, and tiers_test
// measures the real peak of every property against it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <rapidcheck.h>

#include "maskcheck/suite/cases.hpp"

namespace maskcheck {

enum class SizeTier : std::uint8_t { small, medium, large };
std::string_view to_string(SizeTier t);
SizeTier size_tier_from_string(std::string_view s);  // throws InvalidArgument naming --size

struct CaseLimits {
  std::vector<DType> dtypes{DType::f64, DType::f32, DType::f16, DType::bf16};
  SizeTier tier = SizeTier::small;
  std::int64_t max_work = std::int64_t{1} << 21;       // B*H*Lq*Lk*D (attention), B*H*Lq*Lk, N*V
  std::int64_t max_len = 260;                          // longest regular sequence (Lq, Lk)
  std::int64_t long_keys = 8192;                       // longest key axis of a long (decode) case
  std::int64_t long_row = 32768;                       // longest softmax / cross-entropy row
  int long_share = 4;                                  // 1 case in long_share is long (0: never)
  std::uint64_t max_bytes = std::uint64_t{256} << 20;  // memory budget of one case
  bool attention_lse = true;                           // attention cases may ask for the LSE
  ScoreModifierSupport score_modifiers;                // modifiers attention cases may have
  // Mixed storage (registry.hpp): the dtypes whose cases store some tensor wider; the others
  // store every tensor in the case's dtype.
  std::vector<std::pair<DType, Storage>> storage;
  std::optional<Storage> storage_for(DType t) const {
    for (const auto& [d, s] : storage)
      if (d == t) return s;
    return std::nullopt;
  }
};
// The limits of a tier (dtypes and attention_lse at their defaults).
CaseLimits tier_limits(SizeTier tier);
// One line per tier for --help and the README: lengths, work cap, memory budget.
std::string describe_tier(SizeTier tier);

// What one case of any property of the operation holds at once, in bytes: its tensors, the
// copies the properties make (poisoned inputs, a second run, the reference in fp64 and in the
// case's dtype) and the materialized B x Lq x Lk masks. An upper estimate (tiers_test checks it
// against the measured peak); the generators keep it within CaseLimits::max_bytes.
std::uint64_t mask_case_bytes(std::int64_t B, std::int64_t Lq, std::int64_t Lk);
std::uint64_t softmax_case_bytes(std::int64_t B, std::int64_t H, std::int64_t Lq, std::int64_t Lk);
std::uint64_t attention_case_bytes(std::int64_t B, std::int64_t H, std::int64_t Hkv,
                                   std::int64_t Lq, std::int64_t Lk, std::int64_t D);
std::uint64_t loss_case_bytes(std::int64_t N, std::int64_t V);

rc::Gen<std::int64_t> gen_length(std::int64_t max_len);  // 0, 1, 2, boundaries, random
// In [lo, hi], mostly at kernel boundaries (the long axis of long cases).
rc::Gen<std::int64_t> gen_long_length(std::int64_t lo, std::int64_t hi);
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
