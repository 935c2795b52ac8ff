#include "maskcheck/reference/encodings.hpp"

#include <limits>
#include <string>

#include "maskcheck/reference/common.hpp"

namespace maskcheck {

std::string_view to_string(MaskEncoding e) {
  switch (e) {
    case MaskEncoding::keep:
      return "keep";
    case MaskEncoding::masked_out:
      return "masked_out";
    case MaskEncoding::additive_inf:
      return "additive_inf";
    case MaskEncoding::additive_lowest:
      return "additive_lowest";
    case MaskEncoding::additive_1e4:
      return "additive_1e4";
    case MaskEncoding::additive_1e9:
      return "additive_1e9";
  }
  return "?";
}

MaskEncoding mask_encoding_from_string(std::string_view s) {
  for (MaskEncoding e : kAllMaskEncodings)
    if (to_string(e) == s) return e;
  throw_invalid("encoding", std::string(s),
                "must be keep, masked_out, additive_inf, additive_lowest, additive_1e4 or "
                "additive_1e9");
}

bool is_additive(MaskEncoding e) {
  return e != MaskEncoding::keep && e != MaskEncoding::masked_out;
}

double masking_value(MaskEncoding e, DType t) {
  switch (e) {
    case MaskEncoding::keep:
      return 0.0;
    case MaskEncoding::masked_out:
      return 1.0;
    case MaskEncoding::additive_inf:
      return -std::numeric_limits<double>::infinity();
    case MaskEncoding::additive_lowest:
      return lowest(t);
    case MaskEncoding::additive_1e4:
      return round_to(t, -1e4);
    case MaskEncoding::additive_1e9:
      return round_to(t, -1e9);
  }
  return 0.0;
}

}  // namespace maskcheck
