#include "maskcheck/reference/dtype.hpp"

#include "maskcheck/reference/common.hpp"

namespace maskcheck {

std::string_view to_string(DType t) {
  switch (t) {
    case DType::f64:
      return "f64";
    case DType::f32:
      return "f32";
    case DType::f16:
      return "f16";
    case DType::bf16:
      return "bf16";
  }
  return "?";
}

DType dtype_from_string(std::string_view s) {
  if (s == "f64" || s == "float64" || s == "double") return DType::f64;
  if (s == "f32" || s == "float32" || s == "float") return DType::f32;
  if (s == "f16" || s == "float16" || s == "half") return DType::f16;
  if (s == "bf16" || s == "bfloat16") return DType::bf16;
  throw_invalid("dtype", std::string(s), "must be one of f64, f32, f16, bf16");
}

double round_to(DType t, double x) {
  return dispatch_dtype(t, [x](auto tag) { return to_double(to_storage<decltype(tag)>(x)); });
}

double max_finite(DType t) {
  switch (t) {
    case DType::f64:
      return std::numeric_limits<double>::max();
    case DType::f32:
      return std::numeric_limits<float>::max();
    case DType::f16:
      return 65504.0;
    case DType::bf16:
      return std::ldexp(2.0 - std::ldexp(1.0, -7), 127);
  }
  return 0;
}

double unit_roundoff(DType t) {
  switch (t) {
    case DType::f64:
      return std::ldexp(1.0, -53);
    case DType::f32:
      return std::ldexp(1.0, -24);
    case DType::f16:
      return std::ldexp(1.0, -11);
    case DType::bf16:
      return std::ldexp(1.0, -8);
  }
  return 0;
}

}  // namespace maskcheck
