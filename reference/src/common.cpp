#include "maskcheck/reference/common.hpp"

#include <limits>

namespace maskcheck {

InvalidArgument::InvalidArgument(std::string field, std::string value, std::string_view requirement)
    : std::invalid_argument("invalid argument: " + field + " = " + value + " (" +
                            std::string(requirement) + ")"),
      field_(std::move(field)),
      value_(std::move(value)) {}

void throw_invalid(std::string field, std::string value, std::string_view requirement) {
  throw InvalidArgument(std::move(field), std::move(value), requirement);
}

void throw_invalid(std::string field, long long value, std::string_view requirement) {
  throw InvalidArgument(std::move(field), std::to_string(value), requirement);
}

std::int64_t checked_numel(std::string_view what, std::initializer_list<std::int64_t> dims) {
  std::int64_t n = 1;
  int i = 0;
  for (std::int64_t d : dims) {
    if (d < 0) throw_invalid(std::string(what) + " dim " + std::to_string(i), d, "must be >= 0");
    if (d != 0 && n > std::numeric_limits<std::int64_t>::max() / d)
      throw_invalid(std::string(what), "overflow", "element count must fit in int64");
    n *= d;
    ++i;
  }
  return n;
}

void require_size(std::string_view field, std::size_t got, std::int64_t expected) {
  if (static_cast<std::int64_t>(got) != expected)
    throw_invalid(std::string(field) + ".size()", static_cast<long long>(got),
                  "must be " + std::to_string(expected));
}

}  // namespace maskcheck
