// Budgets: what a case costs before it runs, and the sizes users give on the command line.
//
// A case file of 300 bytes can ask for terabytes (L = 2^31 - 1, or empty tensors with
// Lk = 2^28: the reference materializes a B x Lq x Lk mask). Before `maskcheck eval` runs a case
// it computes the memory and the work the call needs (the inputs as doubles, the outputs, the
// reference's materialized mask and accumulators) and refuses, with exit 2 and the figures, a
// case above --max-memory (default kDefaultMaxMemory) or --max-work (default kDefaultMaxWork).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "maskcheck/suite/call.hpp"

namespace maskcheck {

inline constexpr std::uint64_t kDefaultMaxMemory = std::uint64_t{4} << 30;  // 4 GiB
// Multiply-adds and exponentials of the naive reference; 1e12 is about 10 to 20 minutes on one
// core, far above any case maskcheck generates (the largest are about 1e8).
inline constexpr double kDefaultMaxWork = 1e12;

struct CallCost {
  double bytes = 0;  // peak memory of running the call once and checking it, in bytes
  double work = 0;   // element operations of the naive reference
};

// The cost of a validated call (validate_call passed).
CallCost cost_of(const CallInputs& in);
// Memory of decoding a case file: every tensor as doubles (8 bytes per element).
double decoded_bytes(const safetensors::File& f);

struct Budget {
  std::uint64_t max_memory = kDefaultMaxMemory;
  double max_work = kDefaultMaxWork;
};
// Throws InvalidArgument naming `source`, the figure and the flag to raise when `cost` exceeds
// the budget.
void check_budget(const CallCost& cost, const Budget& budget, const std::string& source);

// "4G", "512M", "1.5GiB", "64k", "4096": bytes. K, M, G, T are powers of 1024, with or without
// "iB"/"B"; no suffix means bytes. Throws InvalidArgument naming `flag` for anything else, for a
// non-finite, negative or zero size, and above 2^62.
std::uint64_t parse_size(std::string_view text, std::string_view flag);
// "1.50 GiB", "312 B".
std::string format_bytes(double bytes);

// An unsigned 64-bit seed written in decimal: digits only (no sign, no space, no empty string),
// at most 18446744073709551615. Throws InvalidArgument naming `flag` otherwise.
std::uint64_t parse_seed(std::string_view text, std::string_view flag);
// A finite number > 0 (seconds, for instance): no nan, inf, empty text or trailing characters.
double parse_positive(std::string_view text, std::string_view flag);

}  // namespace maskcheck
