// The mutant catalogue: deliberately broken implementations, each the reference with one bug that
// real masking code has shipped with. They exist to prove that the property catalogue catches
// such bugs; `maskcheck verify --mutants` runs them and reports the kill rate. The mutants of each
// operation live in mutants_<op>.cpp.
#include "maskcheck/suite/mutants.hpp"

#include "mutants_internal.hpp"

namespace maskcheck {

const std::vector<Mutant>& mutant_catalogue() {
  static const std::vector<Mutant> catalogue = [] {
    std::vector<Mutant> v;
    mutants::add_mask_mutants(v);
    mutants::add_softmax_mutants(v);
    mutants::add_attention_mutants(v);
    mutants::add_attention_numerics_mutants(v);
    mutants::add_attention_modifier_mutants(v);
    mutants::add_attention_paged_mutants(v);
    mutants::add_attention_backward_mutants(v);
    mutants::add_loss_mutants(v);
    mutants::add_labels_mutants(v);
    mutants::add_mlm_mutants(v);
    return v;
  }();
  return catalogue;
}

Registry mutant_registry() {
  Registry r;
  for (const auto& m : mutant_catalogue()) r.add(m.impl);
  return r;
}

}  // namespace maskcheck
