// Fuzz target: the problem JSON of case files (maskcheck.problem), read into every problem type
// and validated. The first byte picks the type, the rest is the JSON text.
#include <nlohmann/json.hpp>

#include "fuzz_common.hpp"
#include "maskcheck/suite/io.hpp"
#include "maskcheck/suite/problem_json.hpp"

namespace {

template <class P>
void read(const nlohmann::json& j) {
  P p;
  maskcheck::read_json(j, p, "maskcheck.problem");
  p.validate();
  // What was read writes back and reads again to the same problem.
  P back;
  maskcheck::read_json(nlohmann::json(p), back, "round trip");
  if (nlohmann::json(back) != nlohmann::json(p)) throw std::logic_error("problem JSON round trip");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace mc = maskcheck;
  if (size == 0) return 0;
  const std::string text(mc::fuzz::bytes(data + 1, size - 1));
  mc::fuzz::expect_clean([&] {
    const nlohmann::json j = mc::parse_json_text(text, "maskcheck.problem");
    switch (data[0] % 7) {
      case 0:
        read<mc::MaskSpec>(j);
        break;
      case 1:
        read<mc::SoftmaxProblem>(j);
        break;
      case 2:
        read<mc::AttentionProblem>(j);
        break;
      case 3:
        read<mc::VarlenAttentionProblem>(j);
        break;
      case 4:
        read<mc::LossProblem>(j);
        break;
      case 5:
        read<mc::LmLabelsProblem>(j);
        break;
      default:
        read<mc::MlmProblem>(j);
        break;
    }
  });
  return 0;
}
