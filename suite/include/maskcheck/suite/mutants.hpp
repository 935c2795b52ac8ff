// The mutant catalogue: deliberately broken copies of the reference, each carrying one realistic
// masking bug. The suite's power is measured by running the catalogue against them: every mutant
// must be caught (killed) by at least one property.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "maskcheck/suite/registry.hpp"

namespace maskcheck {

struct Mutant {
  std::shared_ptr<const Implementation> impl;  // named "mutant:<id>"
  std::string bug;                             // what is wrong, in one sentence
  Op op;                                       // the operation the bug lives in
};

const std::vector<Mutant>& mutant_catalogue();
Registry mutant_registry();

}  // namespace maskcheck
