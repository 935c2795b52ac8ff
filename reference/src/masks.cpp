// Reference masks: materialize everything from the one predicate, convert by plain loops.
#include "maskcheck/reference/masks.hpp"

#include <cmath>
#include <limits>
#include <sstream>

#include "maskcheck/reference/predicate.hpp"

namespace maskcheck {

namespace ref {

std::vector<std::uint8_t> build_keep_mask(const MaskSpec& spec) {
  const FlatMask flat(spec);
  const MaskView m = flat.view();
  std::vector<std::uint8_t> keep(checked_numel("mask", {spec.B, spec.Lq, spec.Lk}));
  for (std::int64_t b = 0; b < spec.B; ++b)
    for (std::int64_t q = 0; q < spec.Lq; ++q)
      for (std::int64_t k = 0; k < spec.Lk; ++k)
        keep[(b * spec.Lq + q) * spec.Lk + k] = visible(m, b, q, k) ? 1 : 0;
  return keep;
}

std::vector<double> encode_mask(std::span<const std::uint8_t> keep, MaskEncoding e, DType t) {
  std::vector<double> out(keep.size());
  const double masked = masking_value(e, t);
  for (std::size_t i = 0; i < keep.size(); ++i) {
    switch (e) {
      case MaskEncoding::keep:
        out[i] = keep[i] ? 1.0 : 0.0;
        break;
      case MaskEncoding::masked_out:
        out[i] = keep[i] ? 0.0 : 1.0;
        break;
      default:
        out[i] = keep[i] ? 0.0 : masked;
    }
  }
  return out;
}

void validate_mask_values(std::span<const double> values, MaskEncoding e) {
  const bool flags = e == MaskEncoding::keep || e == MaskEncoding::masked_out;
  for (std::size_t i = 0; i < values.size(); ++i) {
    const double v = values[i];
    if (std::isnan(v))
      throw_invalid("mask[" + std::to_string(i) + "]", "nan", "a mask value must not be NaN");
    if (flags && v != 0.0 && v != 1.0) {
      std::ostringstream os;
      os << v;
      throw_invalid("mask[" + std::to_string(i) + "]", os.str(),
                    std::string("a ") + std::string(to_string(e)) + " mask holds 0 or 1");
    }
  }
}

std::vector<std::uint8_t> decode_mask(std::span<const double> values, MaskEncoding e, DType t) {
  validate_mask_values(values, e);
  std::vector<std::uint8_t> keep(values.size());
  const double threshold = masking_value(e, t) / 2;  // -inf / 2 == -inf
  for (std::size_t i = 0; i < values.size(); ++i) {
    const double v = values[i];
    switch (e) {
      case MaskEncoding::keep:
        keep[i] = v != 0.0;
        break;
      case MaskEncoding::masked_out:
        keep[i] = v == 0.0;
        break;
      default:
        keep[i] = v > threshold;
    }
  }
  return keep;
}

std::vector<double> convert_mask(std::span<const double> values, MaskEncoding from, MaskEncoding to,
                                 DType t) {
  const auto keep = decode_mask(values, from, t);
  return encode_mask(keep, to, t);
}

std::vector<std::uint8_t> keep_from_lengths(std::span<const std::int32_t> lengths, std::int64_t L,
                                            PaddingSide side) {
  require(L >= 0, "L", L, "must be >= 0");
  const auto B = static_cast<std::int64_t>(lengths.size());
  std::vector<std::uint8_t> keep(checked_numel("keep", {B, L}), 0);
  for (std::int64_t b = 0; b < B; ++b) {
    require(lengths[b] >= 0 && lengths[b] <= L, "lengths[" + std::to_string(b) + "]", lengths[b],
            "must be in [0, L=" + std::to_string(L) + "]");
    const std::int64_t t0 = valid_begin(side, L, lengths[b]);
    for (std::int64_t t = t0; t < t0 + lengths[b]; ++t) keep[b * L + t] = 1;
  }
  return keep;
}

std::vector<std::int32_t> lengths_from_keep(std::span<const std::uint8_t> keep, std::int64_t B,
                                            std::int64_t L, PaddingSide side) {
  require_size("keep", keep.size(), checked_numel("keep", {B, L}));
  std::vector<std::int32_t> lengths(B);
  for (std::int64_t b = 0; b < B; ++b) {
    std::int64_t len = 0;
    for (std::int64_t t = 0; t < L; ++t) len += keep[b * L + t] != 0;
    const std::int64_t t0 = valid_begin(side, L, len);
    for (std::int64_t t = 0; t < L; ++t) {
      const bool want = t >= t0 && t < t0 + len;
      if ((keep[b * L + t] != 0) != want)
        throw_invalid("keep[" + std::to_string(b) + "][" + std::to_string(t) + "]",
                      std::to_string(keep[b * L + t]),
                      "row is not a " + to_string(side) + "-padding mask");
    }
    lengths[b] = static_cast<std::int32_t>(len);
  }
  return lengths;
}

std::vector<std::int64_t> last_valid_index(std::span<const std::int32_t> lengths, std::int64_t L,
                                           PaddingSide side) {
  std::vector<std::int64_t> last(lengths.size());
  for (std::size_t b = 0; b < lengths.size(); ++b) {
    require(lengths[b] >= 0 && lengths[b] <= L, "lengths[" + std::to_string(b) + "]", lengths[b],
            "must be in [0, L=" + std::to_string(L) + "]");
    last[b] = lengths[b] == 0 ? -1 : valid_begin(side, L, lengths[b]) + lengths[b] - 1;
  }
  return last;
}

std::vector<std::uint8_t> keep_from_ids(std::span<const std::int64_t> ids, std::int64_t pad_id) {
  std::vector<std::uint8_t> keep(ids.size());
  for (std::size_t i = 0; i < ids.size(); ++i) keep[i] = ids[i] != pad_id;
  return keep;
}

Padded pad_sequences(const std::vector<std::vector<std::int64_t>>& seqs, std::int64_t pad_value,
                     PaddingSide side) {
  Padded p;
  for (const auto& s : seqs) p.L = std::max<std::int64_t>(p.L, static_cast<std::int64_t>(s.size()));
  require(p.L < (std::int64_t{1} << 31), "max sequence length", p.L, "must be < 2^31");
  const auto B = static_cast<std::int64_t>(seqs.size());
  p.values.assign(checked_numel("padded", {B, p.L}), pad_value);
  for (std::int64_t b = 0; b < B; ++b) {
    const auto len = static_cast<std::int64_t>(seqs[b].size());
    p.lengths.push_back(static_cast<std::int32_t>(len));
    const std::int64_t t0 = valid_begin(side, p.L, len);
    for (std::int64_t t = 0; t < len; ++t) p.values[b * p.L + t0 + t] = seqs[b][t];
  }
  return p;
}

Packed pack(std::span<const double> padded, std::span<const std::int32_t> lengths, std::int64_t L,
            std::int64_t F, PaddingSide side) {
  const auto B = static_cast<std::int64_t>(lengths.size());
  require(F >= 1, "F", F, "must be >= 1");
  require_size("padded", padded.size(), checked_numel("padded", {B, L, F}));
  Packed p;
  p.cu_seqlens.push_back(0);
  for (std::int64_t b = 0; b < B; ++b) {
    require(lengths[b] >= 0 && lengths[b] <= L, "lengths[" + std::to_string(b) + "]", lengths[b],
            "must be in [0, L=" + std::to_string(L) + "]");
    const std::int64_t t0 = valid_begin(side, L, lengths[b]);
    for (std::int64_t t = t0; t < t0 + lengths[b]; ++t)
      for (std::int64_t f = 0; f < F; ++f) p.values.push_back(padded[(b * L + t) * F + f]);
    p.cu_seqlens.push_back(p.cu_seqlens.back() + lengths[b]);
  }
  return p;
}

std::vector<double> unpack(std::span<const double> packed, std::span<const std::int32_t> cu_seqlens,
                           std::int64_t L, std::int64_t F, PaddingSide side, double fill) {
  require(!cu_seqlens.empty(), "cu_seqlens.size()", 0, "must be >= 1");
  require(cu_seqlens[0] == 0, "cu_seqlens[0]", cu_seqlens[0], "must be 0");
  require(F >= 1, "F", F, "must be >= 1");
  const auto B = static_cast<std::int64_t>(cu_seqlens.size()) - 1;
  for (std::int64_t b = 0; b < B; ++b) {
    const std::int64_t len = cu_seqlens[b + 1] - cu_seqlens[b];
    require(len >= 0 && len <= L, "cu_seqlens[" + std::to_string(b + 1) + "]", cu_seqlens[b + 1],
            "sequence length must be in [0, L=" + std::to_string(L) + "]");
  }
  require_size("packed", packed.size(), checked_numel("packed", {cu_seqlens.back(), F}));
  std::vector<double> padded(checked_numel("padded", {B, L, F}), fill);
  for (std::int64_t b = 0; b < B; ++b) {
    const std::int64_t len = cu_seqlens[b + 1] - cu_seqlens[b];
    const std::int64_t t0 = valid_begin(side, L, len);
    for (std::int64_t t = 0; t < len; ++t)
      for (std::int64_t f = 0; f < F; ++f)
        padded[(b * L + t0 + t) * F + f] = packed[(cu_seqlens[b] + t) * F + f];
  }
  return padded;
}

}  // namespace ref
}  // namespace maskcheck
