// Fuzz target: a case file, as `maskcheck eval` reads it. The safetensors reader (header, offsets,
// dtypes, metadata), then the case decoder (problem JSON, options, tensor shapes), the front
// door (validate_call) and the budget (cost_of), the path every byte of a hostile file takes
// before an implementation runs.
#include "fuzz_common.hpp"
#include "maskcheck/suite/call.hpp"
#include "maskcheck/suite/limits.hpp"
#include "maskcheck/suite/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace mc = maskcheck;
  mc::fuzz::expect_clean([&] {
    const auto file = mc::safetensors::parse(mc::fuzz::bytes(data, size), "fuzz.safetensors");
    // eval refuses to decode what would not fit its budget; so does the target.
    mc::check_budget({mc::decoded_bytes(file), 0}, mc::Budget{std::uint64_t{1} << 28, 1e9},
                     "fuzz.safetensors");
    const mc::CallInputs in = mc::decode_case(file, "fuzz.safetensors");
    mc::validate_call(in);
    mc::check_budget(mc::cost_of(in), mc::Budget{std::uint64_t{1} << 28, 1e9}, "fuzz.safetensors");
    // A decoded case encodes and decodes to itself.
    const auto again =
        mc::safetensors::parse(mc::safetensors::serialize(mc::encode_case(in)), "re-encoded");
    (void)mc::decode_case(again, "re-encoded");
  });
  return 0;
}
