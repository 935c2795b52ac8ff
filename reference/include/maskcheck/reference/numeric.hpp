// Loads and stores between storage type S and accumulator type A, used by the templated reference.
// reference<S = double, A = double> is the ground truth; other instantiations are the "naive
// implementation in the same dtype" of the FlashAttention tolerance rule: intermediates that a
// framework would store (scores, probabilities, outputs) are rounded to S, arithmetic runs in A.
#pragma once

#include <cmath>

#include "maskcheck/reference/dtype.hpp"

namespace maskcheck::ref {

template <class A, class S>
inline A load(S x) {
  return static_cast<A>(to_double(x));
}

template <class S, class A>
inline S store(A x) {
  return to_storage<S>(static_cast<double>(x));
}

// Rounds an accumulator value through storage type S.
template <class S, class A>
inline A round_through(A x) {
  return load<A>(store<S>(x));
}

// An attention score as a framework stores it: rounded to S where it fits, kept in the
// accumulator where S would overflow. A score beyond fp16's 65504 (a scale of 1e3 over scores of
// 100) is an intermediate no correct kernel holds in fp16, so the reference must not turn it into
// inf - inf = NaN; what a kernel that does store it in fp16 gets is a failure of that kernel.
template <class S, class A>
inline A round_score(A x) {
  const A r = round_through<S, A>(x);
  return std::isinf(r) && !std::isinf(x) ? x : r;
}

}  // namespace maskcheck::ref
