// Reference mask construction and conversions. Plain loops over the one predicate; no cleverness.
// The encodings themselves (and their masking values) are defined in encodings.hpp.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "maskcheck/reference/dtype.hpp"
#include "maskcheck/reference/encodings.hpp"
#include "maskcheck/reference/problems.hpp"

namespace maskcheck {

namespace ref {

// keep: [B, Lq, Lk], 1 where visible(b, q, k).
std::vector<std::uint8_t> build_keep_mask(const MaskSpec& spec);

// Encodes a keep-mask in `e` at dtype `t`, and decodes any encoding back to a keep-mask.
// Decoding validates (validate_mask_values): keep and masked_out masks hold exactly 0 or 1 (a 2,
// a 0.5 or a -1 is refused: frameworks read them as true, truncate them to 0 or wrap them to 255,
// and a mask value that means different things to different readers is an input error); no
// encoding holds NaN. Additive masks hold any other value (see encodings.hpp).
std::vector<double> encode_mask(std::span<const std::uint8_t> keep, MaskEncoding e, DType t);
void validate_mask_values(std::span<const double> values, MaskEncoding e);
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
