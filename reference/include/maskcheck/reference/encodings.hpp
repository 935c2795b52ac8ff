// Mask encodings: the ways frameworks store a [.., Lq, Lk] mask (values in the mask's dtype):
//   keep          1 = attend, 0 = masked (HF attention_mask, SDPA boolean attn_mask)
//   masked_out    1 = masked, 0 = attend (nn.MultiheadAttention key_padding_mask, Apex uint8)
//   additive_inf  0 = attend, -inf = masked
//   additive_lowest / additive_1e4 / additive_1e9
//                 0 = attend, and lowest() of the dtype, -1e4 or -1e9 (rounded to the dtype:
//                 -1e9 is -inf in fp16) = masked
// Decoding an additive mask: an entry is masked when it is at most half the masking value
// (so sums of masks, which HF builds by adding padding and causal masks, still decode).
#pragma once

#include <cstdint>
#include <string_view>

#include "maskcheck/reference/dtype.hpp"

namespace maskcheck {

enum class MaskEncoding : std::uint8_t {
  keep,
  masked_out,
  additive_inf,
  additive_lowest,
  additive_1e4,
  additive_1e9
};
inline constexpr MaskEncoding kAllMaskEncodings[] = {
    MaskEncoding::keep,         MaskEncoding::masked_out,
    MaskEncoding::additive_inf, MaskEncoding::additive_lowest,
    MaskEncoding::additive_1e4, MaskEncoding::additive_1e9};

std::string_view to_string(MaskEncoding e);
MaskEncoding mask_encoding_from_string(std::string_view s);
bool is_additive(MaskEncoding e);
// The value a masked entry holds in `e` at dtype `t` (1 for masked_out, 0 for keep).
double masking_value(MaskEncoding e, DType t);

}  // namespace maskcheck
