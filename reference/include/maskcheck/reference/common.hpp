// Shared vocabulary of the reference: the host/device macro, the error type every
// validation throws, and small checked-arithmetic helpers.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define MC_HD __host__ __device__
#else
#define MC_HD
#endif

namespace maskcheck {

// Thrown for every bad input: the message names the field, the value and what was expected,
// e.g. "invalid argument: k_lens[2] = 9 (must be in [0, Lk=8])".
class InvalidArgument : public std::invalid_argument {
 public:
  InvalidArgument(std::string field, std::string value, std::string_view requirement);
  const std::string& field() const noexcept { return field_; }
  const std::string& value() const noexcept { return value_; }

 private:
  std::string field_;
  std::string value_;
};

[[noreturn]] void throw_invalid(std::string field, std::string value, std::string_view requirement);
[[noreturn]] void throw_invalid(std::string field, long long value, std::string_view requirement);

// Requires `cond`; otherwise throws InvalidArgument(field, value, requirement).
inline void require(bool cond, std::string_view field, long long value,
                    std::string_view requirement) {
  if (!cond) throw_invalid(std::string(field), value, requirement);
}

// Element count of a shape with overflow and negativity checks (names the field on failure).
std::int64_t checked_numel(std::string_view what, std::initializer_list<std::int64_t> dims);

// Requires `got == expected` elements for a buffer, naming it on failure.
void require_size(std::string_view field, std::size_t got, std::int64_t expected);

}  // namespace maskcheck
