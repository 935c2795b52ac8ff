// Mutants of BERT-style MLM masking: the wrong tokens eligible, a wrong [MASK] / random / keep
// split, one random stream for the whole batch.
#include <algorithm>

#include "maskcheck/reference/reference.hpp"
#include "mutants_internal.hpp"

namespace maskcheck::mutants {
namespace {

// Special tokens never excluded: the special-tokens mask is not consulted.
class SelectsSpecialTokens : public Named {
 public:
  using Named::Named;
  MlmResult mlm(const MlmProblem& p, std::span<const std::int64_t> ids,
                std::span<const std::uint8_t> keep, std::span<const std::uint8_t> special,
                std::span<const std::uint8_t> continuation) const override {
    const std::vector<std::uint8_t> none(special.size(), 0);
    return ReferenceImplementation::mlm(p, ids, keep, none, continuation);
  }
};

// Padding never excluded: the attention mask is not consulted, so pads are eligible and
// positions count from the start of the padded row.
class SelectsPadding : public Named {
 public:
  using Named::Named;
  MlmResult mlm(const MlmProblem& p, std::span<const std::int64_t> ids,
                std::span<const std::uint8_t> keep, std::span<const std::uint8_t> special,
                std::span<const std::uint8_t> continuation) const override {
    const std::vector<std::uint8_t> all(keep.size(), 1);
    return ReferenceImplementation::mlm(p, ids, all, special, continuation);
  }
};

// The random replacement drawn with p_random among the tokens left after [MASK] (HF's
// bernoulli(0.1) where bernoulli(0.5) is needed): 80/2/18 instead of 80/10/10.
class WrongSplit : public Named {
 public:
  using Named::Named;
  MlmResult mlm(const MlmProblem& p, std::span<const std::int64_t> ids,
                std::span<const std::uint8_t> keep, std::span<const std::uint8_t> special,
                std::span<const std::uint8_t> continuation) const override {
    MlmResult r = ReferenceImplementation::mlm(p, ids, keep, special, continuation);
    const MlmThresholds th = mlm_thresholds(p);
    const std::uint64_t rest = (std::uint64_t{1} << 32) - th.mask;
    const auto random =
        th.mask + static_cast<std::uint64_t>(p.p_random * static_cast<double>(rest));
    for (std::int64_t b = 0; b < p.B; ++b) {
      const std::int64_t row = b * p.L;
      std::int64_t first = 0;
      while (first < p.L && !keep[row + first]) ++first;
      for (std::int64_t t = 0; t < p.L; ++t) {
        if (r.labels[row + t] == p.ignore_index) continue;
        const U32x4 d =
            mlm_draw(p.seed, static_cast<std::uint32_t>(b), static_cast<std::uint32_t>(t - first));
        r.ids[row + t] = d.y < th.mask  ? p.mask_id
                         : d.y < random ? uniform_token(d.z, p.V)
                                        : ids[row + t];
      }
    }
    return r;
  }
};

// One random stream for every sequence: each sequence is masked as if it were sequence 0, so
// identical sequences get identical masks.
class SharedStream : public Named {
 public:
  using Named::Named;
  MlmResult mlm(const MlmProblem& p, std::span<const std::int64_t> ids,
                std::span<const std::uint8_t> keep, std::span<const std::uint8_t> special,
                std::span<const std::uint8_t> continuation) const override {
    validate_mlm_inputs(p, ids, keep, special, continuation);
    MlmProblem one = p;
    one.B = 1;
    MlmResult r;
    const auto L = static_cast<std::size_t>(p.L);
    for (std::size_t b = 0; b < static_cast<std::size_t>(p.B); ++b) {
      const auto c = continuation.empty() ? continuation : continuation.subspan(b * L, L);
      const MlmResult s = ReferenceImplementation::mlm(
          one, ids.subspan(b * L, L), keep.subspan(b * L, L), special.subspan(b * L, L), c);
      r.ids.insert(r.ids.end(), s.ids.begin(), s.ids.end());
      r.labels.insert(r.labels.end(), s.labels.begin(), s.labels.end());
    }
    return r;
  }
};

}  // namespace

void add_mlm_mutants(std::vector<Mutant>& out) {
  const Op op = Op::mlm;
  out.push_back(entry<SelectsSpecialTokens>(op, "MLM selecting special tokens",
                                            "mlm-selects-special-tokens",
                                            "the special-tokens mask is ignored: [CLS], [SEP] and "
                                            "other special tokens can be selected"));
  out.push_back(entry<SelectsPadding>(op, "MLM selecting padding", "mlm-selects-padding",
                                      "the attention mask is ignored: padding tokens can be "
                                      "selected and positions count from the padded row's start"));
  out.push_back(entry<WrongSplit>(op, "wrong 80/10/10 split", "mlm-wrong-split",
                                  "the random replacement is drawn with p_random among the tokens "
                                  "not turned into [MASK] instead of p_random / (1 - p_mask)"));
  out.push_back(entry<SharedStream>(op, "one RNG stream shared by all sequences",
                                    "mlm-shared-rng-stream",
                                    "every sequence draws from sequence 0's Philox stream, so "
                                    "identical sequences get identical masks"));
}

}  // namespace maskcheck::mutants
