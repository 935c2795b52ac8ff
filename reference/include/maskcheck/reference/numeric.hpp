// Loads and stores between storage type S and accumulator type A, used by the templated reference.
// reference<S = double, A = double> is the ground truth; other instantiations are the "naive
// implementation in the same dtype" of the FlashAttention tolerance rule: intermediates that a
// framework would store (scores, probabilities, outputs) are rounded to S, arithmetic runs in A.
#pragma once

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

}  // namespace maskcheck::ref
