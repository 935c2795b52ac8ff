// Mutants of the padding helpers.
#include "maskcheck/reference/reference.hpp"
#include "mutants_internal.hpp"

namespace maskcheck::mutants {
namespace {

// The last valid index taken as the length itself (attention_mask.sum(-1) used as an index,
// the -1 forgotten): pooling reads the first pad after a right-padded sequence, and a
// left-padded sequence is read at the wrong end.
class LastIndexIsLength : public Named {
 public:
  using Named::Named;
  std::vector<std::int64_t> last_valid_index(std::span<const std::int32_t> lengths, std::int64_t,
                                             PaddingSide) const override {
    return {lengths.begin(), lengths.end()};
  }
};

}  // namespace

void add_mask_mutants(std::vector<Mutant>& out) {
  out.push_back(entry<LastIndexIsLength>(
      Op::masks, "last valid index off by one", "last-index-off-by-one",
      "the last valid index of a sequence is its length (sum of the mask) instead of the "
      "position of its last valid token"));
}

}  // namespace maskcheck::mutants
