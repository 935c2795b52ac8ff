// Reference mask construction and conversions. Plain loops over the one predicate; no cleverness.
//
// Encodings of a [.., Lq, Lk] mask (values stored in the mask's dtype):
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
#include <span>
#include <string_view>
#include <vector>

#include "maskcheck/reference/dtype.hpp"
#include "maskcheck/reference/problems.hpp"

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

namespace ref {

// keep: [B, Lq, Lk], 1 where visible(b, q, k).
std::vector<std::uint8_t> build_keep_mask(const MaskSpec& spec);

// Encodes a keep-mask in `e` at dtype `t`, and decodes any encoding back to a keep-mask.
std::vector<double> encode_mask(std::span<const std::uint8_t> keep, MaskEncoding e, DType t);
std::vector<std::uint8_t> decode_mask(std::span<const double> values, MaskEncoding e, DType t);
std::vector<double> convert_mask(std::span<const double> values, MaskEncoding from, MaskEncoding to,
                                 DType t);

// Padding helpers over [B, L] token layouts.
// keep[b, t] = 1 for the lengths[b] valid positions (right: [0, len), left: [L - len, L)).
std::vector<std::uint8_t> keep_from_lengths(std::span<const std::int32_t> lengths, std::int64_t L,
                                            PaddingSide side);
// The inverse; throws InvalidArgument when a row is not a padding mask of that side.
std::vector<std::int32_t> lengths_from_keep(std::span<const std::uint8_t> keep, std::int64_t B,
                                            std::int64_t L, PaddingSide side);
// Index of the last valid position per sequence, -1 for an empty sequence.
std::vector<std::int64_t> last_valid_index(std::span<const std::int32_t> lengths, std::int64_t L,
                                           PaddingSide side);
// keep = ids != pad_id. Only correct when the pad id never occurs as a real token (pad == eos
// breaks it; labels are therefore never built from this).
std::vector<std::uint8_t> keep_from_ids(std::span<const std::int64_t> ids, std::int64_t pad_id);

// Ragged sequences -> padded [B, max_len] (pad_value elsewhere) and their lengths.
struct Padded {
  std::vector<std::int64_t> values;
  std::vector<std::int32_t> lengths;
  std::int64_t L = 0;
};
Padded pad_sequences(const std::vector<std::vector<std::int64_t>>& seqs, std::int64_t pad_value,
                     PaddingSide side);

// padded [B, L, F] <-> packed [total, F] with cu_seqlens [B + 1] (varlen layout, no padding).
struct Packed {
  std::vector<double> values;
  std::vector<std::int32_t> cu_seqlens;
};
Packed pack(std::span<const double> padded, std::span<const std::int32_t> lengths, std::int64_t L,
            std::int64_t F, PaddingSide side);
std::vector<double> unpack(std::span<const double> packed, std::span<const std::int32_t> cu_seqlens,
                           std::int64_t L, std::int64_t F, PaddingSide side, double fill);

}  // namespace ref
}  // namespace maskcheck
