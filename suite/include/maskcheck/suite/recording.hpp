// Counterexample files. When a property fails, the runner re-runs exactly its shrunk failing case
// (rapidcheck's Reproduce) with the implementation wrapped in a RecordingImplementation, which
// forwards every call and keeps a copy of each operation call: the inputs, and what the call
// returned or the exception it threw. save_counterexample writes one .safetensors case file per
// recorded call (call.hpp describes the format), loadable with safetensors.torch.load_file and
// replayable with `maskcheck eval`.
#pragma once

#include <cstddef>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "maskcheck/suite/call.hpp"
#include "maskcheck/suite/forwarding.hpp"
#include "maskcheck/suite/runner.hpp"

namespace maskcheck {

struct RecordedCall {
  CallInputs inputs;
  std::optional<CallResult> result;  // absent when the call threw
  std::string error;                 // what it threw
  std::string signal, output;        // a CrashedCall's signal and last output
};

// Thrown for a call that killed the process it ran in (a plugin's call run in a process of its
// own while a crash is shrunk, isolation.cpp): what() says how and where; counterexample files
// keep the signal ("SIGSEGV") and the last output of that process as maskcheck.signal and
// maskcheck.output.
class CrashedCall : public std::runtime_error {
 public:
  CrashedCall(const std::string& what, std::string signal_name, std::string last_output)
      : std::runtime_error(what), signal(std::move(signal_name)), output(std::move(last_output)) {}
  std::string signal, output;
};

// A property makes a handful of calls per case; past this many only the count is kept.
inline constexpr std::size_t kMaxRecordedCalls = 32;

class RecordingImplementation final : public ForwardingImplementation {
 public:
  explicit RecordingImplementation(const Implementation& inner,
                                   std::size_t max_calls = kMaxRecordedCalls)
      : ForwardingImplementation(inner), max_calls_(max_calls) {}

  // Forgets the calls so far: rapidcheck may evaluate the property on the way to the case.
  void begin_case();
  const std::vector<RecordedCall>& calls() const { return calls_; }
  std::size_t total_calls() const { return total_; }  // including those not kept

  std::vector<double> build_mask(const MaskSpec& spec, MaskEncoding e, DType t) const override;
  std::vector<double> convert_mask(std::span<const double> values, MaskEncoding from,
                                   MaskEncoding to, DType t) const override;
  std::vector<std::uint8_t> keep_from_lengths(std::span<const std::int32_t> lengths, std::int64_t L,
                                              PaddingSide side) const override;
  std::vector<std::int64_t> last_valid_index(std::span<const std::int32_t> lengths, std::int64_t L,
                                             PaddingSide side) const override;
  std::vector<double> softmax(const SoftmaxProblem& p, DType t,
                              std::span<const double> x) const override;
  AttentionResult attention(const AttentionProblem& p, DType t, std::span<const double> q,
                            std::span<const double> k, std::span<const double> v,
                            bool want_lse) const override;
  AttentionGradients attention_backward(const AttentionProblem& p, DType t,
                                        std::span<const double> q, std::span<const double> k,
                                        std::span<const double> v,
                                        std::span<const double> dout) const override;
  AttentionResult attention_paged(const AttentionProblem& p, const PagedKv& kv, DType t,
                                  std::span<const double> q, std::span<const double> k_cache,
                                  std::span<const double> v_cache, bool want_lse) const override;
  AttentionResult attention_chunk(const AttentionProblem& p, DType t, std::span<const double> q,
                                  std::span<const double> k, std::span<const double> v,
                                  std::int64_t key_begin, std::int64_t key_end) const override;
  AttentionResult attention_varlen(const VarlenAttentionProblem& p, DType t,
                                   std::span<const double> q, std::span<const double> k,
                                   std::span<const double> v, bool want_lse) const override;
  LossResult cross_entropy(const LossProblem& p, DType t, std::span<const double> logits,
                           std::span<const std::int64_t> labels, std::span<const double> weights,
                           bool backward) const override;
  LossResult cross_entropy_upstream(const LossProblem& p, DType t, std::span<const double> logits,
                                    std::span<const std::int64_t> labels,
                                    std::span<const double> weights,
                                    std::span<const double> grad_output) const override;
  std::vector<std::int64_t> lm_labels(const LmLabelsProblem& p, std::span<const std::int64_t> ids,
                                      std::span<const std::uint8_t> keep,
                                      std::span<const std::int32_t> prompt_lens) const override;
  MlmResult mlm(const MlmProblem& p, std::span<const std::int64_t> ids,
                std::span<const std::uint8_t> keep, std::span<const std::uint8_t> special,
                std::span<const std::uint8_t> continuation) const override;

 private:
  template <class R, class Run>
  R record(CallInputs in, Run&& run) const;

  std::size_t max_calls_;
  mutable std::vector<RecordedCall> calls_;
  mutable std::size_t total_ = 0;
};

// "<impl>__<property>__call<k>.safetensors", every character outside [A-Za-z0-9._-] as '_'.
std::string counterexample_file_name(std::string_view impl, std::string_view property,
                                     std::size_t k);

// Writes the recorded calls of o's failing case into `dir` (created if needed; earlier files of
// the same implementation and property are removed first) and lists them in
// o.counterexample_files. `reproduced` says whether the re-run failed again; `plugin` is the
// library of a plugin implementation, which each file's eval command names (--plugin). Never
// throws: a file that cannot be written is reported in o.message.
void save_counterexample(const std::string& dir, const RecordingImplementation& recorder,
                         bool reproduced, PropertyOutcome& o, const std::string& plugin = {});

// The directory this run saves its counterexamples in, so that concurrent runs sharing `dir`
// never replace or list each other's files: `dir` itself when no other live process holds it,
// else the first free `dir/run-<k>` (k = 1, 2, ...). The run holds an advisory lock (flock) on the
// directory it got until it exits; its worker processes inherit it. Creates the directories;
// throws std::runtime_error when it cannot.
std::string claim_counterexample_dir(const std::string& dir);

}  // namespace maskcheck
