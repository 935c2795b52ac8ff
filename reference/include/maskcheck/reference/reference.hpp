// The reference: maskcheck's specification in code. Everything here is plain, materializes the
// full mask from the one predicate, loops naively and accumulates in the chosen type; the
// instantiation <double, double> is the ground truth every implementation is checked against.
#pragma once

#include "maskcheck/reference/attention.hpp"
#include "maskcheck/reference/common.hpp"
#include "maskcheck/reference/dtype.hpp"
#include "maskcheck/reference/loss.hpp"
#include "maskcheck/reference/masks.hpp"
#include "maskcheck/reference/mlm.hpp"
#include "maskcheck/reference/philox.hpp"
#include "maskcheck/reference/predicate.hpp"
#include "maskcheck/reference/problems.hpp"
#include "maskcheck/reference/softmax.hpp"
