// What every fuzz target shares: the rule that decides a finding. maskcheck's readers must answer
// any input with a value or with one of its own errors (InvalidArgument, a std::runtime_error or
// std::invalid_argument naming the input). Any other exception (a JSON library type_error that
// escaped, std::length_error, std::bad_alloc), a crash, a hang or a sanitizer report is a bug: the
// exception is rethrown out of LLVMFuzzerTestOneInput, which libFuzzer reports as a crash.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

#include "maskcheck/reference/common.hpp"

namespace maskcheck::fuzz {

template <class F>
void expect_clean(F&& f) {
  try {
    f();
  } catch (const InvalidArgument&) {
  } catch (const std::invalid_argument&) {
  } catch (const std::runtime_error&) {
  }
}

inline std::string_view bytes(const std::uint8_t* data, std::size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

}  // namespace maskcheck::fuzz
