// Shared pieces of the mutant catalogue (suite/mutants/*.cpp). Every mutant is the reference
// implementation with one operation overridden to carry one bug; the catalogue part of each
// operation lives in its own file and appends its mutants in the order they are listed.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "maskcheck/suite/mutants.hpp"
#include "maskcheck/suite/reference_impl.hpp"

namespace maskcheck::mutants {

// The reference with a name ("mutant:<id>") and a description of its mechanism.
class Named : public ReferenceImplementation {
 public:
  Named(std::string id, std::string how) : id_(std::move(id)), how_(std::move(how)) {}
  std::string name() const override { return "mutant:" + id_; }
  std::string description() const override { return how_; }

 private:
  std::string id_, how_;
};

// Runs f(tag, xs, ys) with x converted to the storage type S of `t` (tag is an S, xs and ys
// spans of S) and returns ys as doubles: the shell of every softmax mutant.
template <class F>
std::vector<double> softmax_in_storage(DType t, std::span<const double> x, F&& f) {
  return dispatch_dtype(t, [&](auto tag) {
    using S = decltype(tag);
    const auto xs = to_storage_vec<S>(x);
    std::vector<S> y(xs.size());
    f(tag, std::span<const S>(xs), std::span<S>(y));
    return to_double_vec(y);
  });
}

// A catalogue entry for mutant class T constructed from (id, how, args...).
template <class T, class... Args>
Mutant entry(Op op, std::string bug, std::string id, std::string how, Args&&... args) {
  return {std::make_shared<T>(std::move(id), std::move(how), std::forward<Args>(args)...),
          std::move(bug), op};
}

// A mutant whose bug only rare draws show: long rows, a zero scale (see Mutant::min_cases).
inline Mutant rare_draws(Mutant m) {
  m.min_cases = 100;
  return m;
}

// A mutant whose bug lives in an entry of its own (see Mutant::entry).
inline Mutant in_entry(Mutant::Entry e, Mutant m) {
  m.entry = e;
  return m;
}

void add_mask_mutants(std::vector<Mutant>& out);
void add_softmax_mutants(std::vector<Mutant>& out);
void add_attention_mutants(std::vector<Mutant>& out);
void add_attention_numerics_mutants(std::vector<Mutant>& out);
void add_attention_backward_mutants(std::vector<Mutant>& out);
void add_attention_modifier_mutants(std::vector<Mutant>& out);
void add_attention_paged_mutants(std::vector<Mutant>& out);
void add_loss_mutants(std::vector<Mutant>& out);
void add_labels_mutants(std::vector<Mutant>& out);
void add_mlm_mutants(std::vector<Mutant>& out);

}  // namespace maskcheck::mutants
