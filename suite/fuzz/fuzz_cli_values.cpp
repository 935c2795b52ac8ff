// Fuzz target: the value parsers of the command line (seeds, sizes, positive numbers,
// percentages, compare's --gate expression, the names of operations, dtypes and encodings).
// The first byte picks the parser, the rest is the text. A value either parses to something in
// range or is refused with a message naming the flag.
#include <cmath>

#include "fuzz_common.hpp"
#include "maskcheck/reference/encodings.hpp"
#include "maskcheck/reports/compare.hpp"
#include "maskcheck/suite/limits.hpp"
#include "maskcheck/suite/registry.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace mc = maskcheck;
  if (size == 0) return 0;
  const std::string text(mc::fuzz::bytes(data + 1, size - 1));
  auto check = [](bool ok, const char* what) {
    if (!ok) throw std::logic_error(what);
  };
  mc::fuzz::expect_clean([&] {
    switch (data[0] % 8) {
      case 0: {
        const std::uint64_t s = mc::parse_seed(text, "--seed");
        check(std::to_string(s) == text || text.find_first_not_of('0') != 0, "seed round trip");
        break;
      }
      case 1: {
        const std::uint64_t b = mc::parse_size(text, "--max-memory");
        check(b >= 1 && b <= (std::uint64_t{1} << 62), "size in range");
        break;
      }
      case 2: {
        const double v = mc::parse_positive(text, "--plugin-timeout");
        check(std::isfinite(v) && v > 0, "positive and finite");
        break;
      }
      case 3: {
        const double p = mc::reports::parse_percentage(text);
        check(std::isfinite(p) && p >= 0, "percentage");
        break;
      }
      case 4: {
        mc::reports::CompareOptions o;
        o.gate = text;
        mc::reports::validate(o);
        break;
      }
      case 5:
        (void)mc::op_from_string(text);
        break;
      case 6:
        (void)mc::dtype_from_string(text);
        break;
      default:
        (void)mc::mask_encoding_from_string(text);
        break;
    }
  });
  return 0;
}
