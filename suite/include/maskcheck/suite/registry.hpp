// The implementation registry. Every implementation (the reference, the CPU and CUDA kernels,
// third-party adapters, plugins, the deliberately broken mutants) is one Implementation: a name,
// the operations it provides, a supports() answer with a reason for every problem it cannot take,
// and the operations themselves. Properties and benchmarks loop over a Registry.
//
// Data crosses this boundary as host vectors of double whose values are exactly representable
// in the problem's dtype; an implementation converts to its own storage and back.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "maskcheck/reference/dtype.hpp"
#include "maskcheck/reference/masks.hpp"
#include "maskcheck/reference/problems.hpp"

namespace maskcheck {

enum class Op : std::uint8_t { masks, softmax, attention, cross_entropy, lm_labels, mlm };
inline constexpr Op kAllOps[] = {Op::masks,         Op::softmax,   Op::attention,
                                 Op::cross_entropy, Op::lm_labels, Op::mlm};
std::string_view to_string(Op op);
Op op_from_string(std::string_view s);  // throws InvalidArgument

// An implementation's answer to "can you run this?". Unsupported answers carry the reason that
// the summary shows beside the skipped count.
struct Support {
  bool ok = true;
  std::string reason;
  static Support yes() { return {}; }
  static Support no(std::string why) { return {false, std::move(why)}; }
  explicit operator bool() const { return ok; }
};

// Which score modifiers (problems.hpp's ScoreModifiers) an implementation applies.
struct ScoreModifierSupport {
  bool softcap = false;
  bool alibi = false;
  bool sink_logits = false;
  static ScoreModifierSupport all() { return {true, true, true}; }
  bool any() const { return softcap || alibi || sink_logits; }
  // Whether every modifier of m is supported; otherwise no(reason) naming the first missing one.
  Support admits(const ScoreModifiers& m, std::string_view who) const;
  bool operator==(const ScoreModifierSupport&) const = default;
};

// Thrown by an operation the implementation does not provide.
class Unsupported : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct AttentionResult {
  std::vector<double> out;  // [B, H, Lq, D]
  std::vector<double> lse;  // [B, H, Lq] when requested
};

struct LossResult {
  double loss = 0;              // reduced loss
  std::vector<double> losses;   // [N] per-row w_i l_i (0 for ignored rows)
  std::int64_t count = 0;       // contributing rows
  double weight_sum = 0;        // their total weight
  std::vector<double> dlogits;  // [N, V] when backward was requested
};

// Gradients of attention's output (attention backward): dq [B, H, Lq, D], dk, dv [B, Hkv, Lk, D].
struct AttentionGradients {
  std::vector<double> dq, dk, dv;
};

struct MlmResult {
  std::vector<std::int64_t> ids;
  std::vector<std::int64_t> labels;
};

// Mixed storage precision: the dtype each tensor of an operation is stored in when a case has
// dtype t (plugin ABI 1.1's maskcheck_storage). A kernel may take Q in f32 beside K and V in f16:
// that is an f16 case whose q is stored wider. Every operand holds t or a dtype that represents
// every value of t exactly (widens(), so t stays the narrowest storage of the case), and the
// tolerance's naive baseline and floor are t's. Case values are drawn in each operand's own dtype,
// and the reference reads exactly the values the implementation was handed. The mask is the
// additive mask tensor of implementations that take one: 0 and -inf are exact in f16 and f32.
struct Storage {
  DType q = DType::f32, k = DType::f32, v = DType::f32, out = DType::f32;  // attention
  DType x = DType::f32, y = DType::f32;                                    // softmax
  DType logits = DType::f32, dlogits = DType::f32;                         // cross-entropy
  DType mask = DType::f32;  // an additive 0 / -inf mask tensor, where one is taken

  // Every tensor in t (the additive mask in t as well).
  static Storage of(DType t);
  // Whether every tensor of `op` is stored in t (the mask aside).
  bool uniform(Op op, DType t) const;
  // "q=f32,out=f32": the tensors of `op` not stored in t, "" when uniform.
  std::string describe(Op op, DType t) const;
  bool operator==(const Storage&) const = default;
};
// The storage of a case or call with an optional `storage` and a `dtype`: its own, else every
// tensor in its dtype.
template <class Case>
Storage storage_of(const Case& c) {
  return c.storage.value_or(Storage::of(c.dtype));
}
// Whether every value of dtype t is exact in `wide`: f64 > f32 > f16, f32 > bf16 (f16 and bf16
// hold each other's values only in part).
bool widens(DType wide, DType t);
// Throws InvalidArgument (naming `who`) unless every tensor of `op` widens t.
void check_storage(const Storage& s, Op op, DType t, const std::string& who);

class Implementation {
 public:
  virtual ~Implementation() = default;
  virtual std::string name() const = 0;
  virtual std::string description() const = 0;
  virtual std::vector<Op> ops() const = 0;
  // Whether this is somebody else's implementation under test (a LibTorch adapter, a plugin)
  // rather than one of maskcheck's own (the reference, the CPU and CUDA kernels): the CI gate of
  // maskcheck's kernels runs its own; third-party verdicts are findings, compared to baselines.
  virtual bool third_party() const { return false; }
  // Storage dtypes an operation accepts (generators draw cases among these).
  virtual std::vector<DType> dtypes(Op op) const;
  bool provides(Op op) const;
  // The dtype of each tensor in a case of dtype t (mixed storage precision; see Storage). The
  // default stores every tensor in t.
  virtual Storage storage(DType t) const { return Storage::of(t); }

  // Masks: build a [B, Lq, Lk] mask in an encoding; convert between encodings; padding helpers.
  virtual Support supports_masks(const MaskSpec& spec, MaskEncoding e, DType t) const;
  virtual std::vector<double> build_mask(const MaskSpec& spec, MaskEncoding e, DType t) const;
  virtual std::vector<double> convert_mask(std::span<const double> values, MaskEncoding from,
                                           MaskEncoding to, DType t) const;
  virtual std::vector<std::uint8_t> keep_from_lengths(std::span<const std::int32_t> lengths,
                                                      std::int64_t L, PaddingSide side) const;
  virtual std::vector<std::int64_t> last_valid_index(std::span<const std::int32_t> lengths,
                                                     std::int64_t L, PaddingSide side) const;

  // Masked softmax: x, y: [B, H, Lq, Lk].
  virtual Support supports_softmax(const SoftmaxProblem& p, DType t) const;
  virtual std::vector<double> softmax(const SoftmaxProblem& p, DType t,
                                      std::span<const double> x) const;

  // Attention forward: q [B, H, Lq, D], k, v [B, Hkv, Lk, D].
  // Whether attention can return the log-sum-exp at all; without it, generators draw cases that
  // do not ask for it (instead of drawing cases the implementation then skips).
  virtual bool attention_lse() const { return true; }
  // The score modifiers (problems.hpp's ScoreModifiers) the implementation applies in attention
  // forward; the default: none. Generators draw modifiers only for implementations that apply
  // them, and supports_attention declines the others centrally, before asking the implementation,
  // so that no adapter silently drops a modifier it does not know.
  virtual ScoreModifierSupport score_modifiers() const { return {}; }
  // Whether attention forward can run p: the modifiers first, then attention_support().
  Support supports_attention(const AttentionProblem& p, DType t, bool want_lse) const;
  virtual AttentionResult attention(const AttentionProblem& p, DType t, std::span<const double> q,
                                    std::span<const double> k, std::span<const double> v,
                                    bool want_lse) const;

  // Attention backward: the gradients of out = softmax(q k^T * scale + mask) v with respect to
  // q, k and v, given dout [B, H, Lq, D] (reference/attention.hpp's attention_backward: keys no
  // query sees get dk = dv = 0 exactly, rows with no visible key dq = 0 exactly, masked and padded
  // inputs are never read; the log-sum-exp is not differentiated). Tensors in the case's dtype.
  // The default declines ("does not provide attention backward").
  // Whether attention backward can run p: never with score modifiers (not part of the backward's
  // contract yet), else attention_backward_support().
  Support supports_attention_backward(const AttentionProblem& p, DType t) const;
  virtual AttentionGradients attention_backward(const AttentionProblem& p, DType t,
                                                std::span<const double> q,
                                                std::span<const double> k,
                                                std::span<const double> v,
                                                std::span<const double> dout) const;

  // Attention in the packed (varlen) layout: q [T_q, H, D], k, v [T_k, Hkv, D], lse [H, T_q].
  virtual Support supports_attention_varlen(const VarlenAttentionProblem& p, DType t,
                                            bool want_lse) const;
  virtual AttentionResult attention_varlen(const VarlenAttentionProblem& p, DType t,
                                           std::span<const double> q, std::span<const double> k,
                                           std::span<const double> v, bool want_lse) const;

  // One chunk of a split-KV (flash-decoding) computation: attention restricted to the keys
  // [key_begin, key_end) of the padded key axis (each row's visible keys intersected with them),
  // without sink logits (a sink is one more chunk, with output 0 and log-sum-exp sink_h): out
  // [B, H, Lq, D] and lse [B, H, Lq] of the chunk alone; a row that sees none of its keys gets 0
  // and -inf. ref::merge_partials merges a split's chunks into the unsplit rows. Not provided
  // unless overridden (the Support says so).
  virtual Support supports_attention_chunk(const AttentionProblem& p, DType t) const;
  virtual AttentionResult attention_chunk(const AttentionProblem& p, DType t,
                                          std::span<const double> q, std::span<const double> k,
                                          std::span<const double> v, std::int64_t key_begin,
                                          std::int64_t key_end) const;

  // Attention over a paged KV cache (problems.hpp's PagedKv): q [B, H, Lq, D], k_cache, v_cache
  // [num_pages, page_size, Hkv, D]; the result is attention()'s on the gathered keys. Not
  // provided unless overridden (the Support says so).
  virtual Support supports_attention_paged(const AttentionProblem& p, const PagedKv& kv, DType t,
                                           bool want_lse) const;
  virtual AttentionResult attention_paged(const AttentionProblem& p, const PagedKv& kv, DType t,
                                          std::span<const double> q,
                                          std::span<const double> k_cache,
                                          std::span<const double> v_cache, bool want_lse) const;

  // Cross-entropy forward (+ backward when `backward`): logits [N, V], labels [N], weights [N].
  virtual Support supports_cross_entropy(const LossProblem& p, DType t) const;
  virtual LossResult cross_entropy(const LossProblem& p, DType t, std::span<const double> logits,
                                   std::span<const std::int64_t> labels,
                                   std::span<const double> weights, bool backward) const;
  // Cross-entropy forward + backward with an upstream gradient instead of ones: grad_output [N]
  // for reduction none (each row's loss gradient), [1] for mean and sum (the reduced loss's); see
  // reference/loss.hpp. Not provided unless overridden (the Support says so).
  virtual Support supports_cross_entropy_upstream(const LossProblem& p, DType t) const;
  virtual LossResult cross_entropy_upstream(const LossProblem& p, DType t,
                                            std::span<const double> logits,
                                            std::span<const std::int64_t> labels,
                                            std::span<const double> weights,
                                            std::span<const double> grad_output) const;

  // Causal-LM labels: ids, keep [B, L], prompt_lens [B] or empty.
  virtual Support supports_lm_labels(const LmLabelsProblem& p) const;
  virtual std::vector<std::int64_t> lm_labels(const LmLabelsProblem& p,
                                              std::span<const std::int64_t> ids,
                                              std::span<const std::uint8_t> keep,
                                              std::span<const std::int32_t> prompt_lens) const;

  // MLM masking: ids, keep, special, continuation [B, L].
  virtual Support supports_mlm(const MlmProblem& p) const;
  virtual MlmResult mlm(const MlmProblem& p, std::span<const std::int64_t> ids,
                        std::span<const std::uint8_t> keep, std::span<const std::uint8_t> special,
                        std::span<const std::uint8_t> continuation) const;

 protected:
  [[noreturn]] void unsupported(Op op) const;
  // The implementation's own answers behind supports_attention and supports_attention_backward
  // (called only for problems whose modifiers it applies).
  virtual Support attention_support(const AttentionProblem& p, DType t, bool want_lse) const;
  virtual Support attention_backward_support(const AttentionProblem& p, DType t) const;
};

class Registry {
 public:
  void add(std::shared_ptr<const Implementation> impl);  // names must be unique
  const std::vector<std::shared_ptr<const Implementation>>& all() const { return impls_; }
  std::shared_ptr<const Implementation> find(std::string_view name) const;  // nullptr if absent
  // Resolves a comma-separated selection (empty: all) of names, `own` (maskcheck's own
  // implementations), `third-party` (adapters and plugins) and prefixes ending in '*' ("torch:*",
  // which may match nothing); throws InvalidArgument on unknown names.
  std::vector<std::shared_ptr<const Implementation>> select(std::string_view names) const;

 private:
  std::vector<std::shared_ptr<const Implementation>> impls_;
};

}  // namespace maskcheck
