#include "maskcheck/suite/registry.hpp"

#include <algorithm>

#include "maskcheck/reference/common.hpp"

namespace maskcheck {

std::string_view to_string(Op op) {
  switch (op) {
    case Op::masks:
      return "masks";
    case Op::softmax:
      return "softmax";
    case Op::attention:
      return "attention";
    case Op::cross_entropy:
      return "cross_entropy";
    case Op::lm_labels:
      return "lm_labels";
    case Op::mlm:
      return "mlm";
  }
  return "?";
}

Op op_from_string(std::string_view s) {
  for (Op op : kAllOps)
    if (to_string(op) == s) return op;
  throw_invalid("op", std::string(s),
                "must be one of masks, softmax, attention, cross_entropy, lm_labels, mlm");
}

Storage Storage::of(DType t) {
  return {t, t, t, t, t, t, t, t, t};
}

namespace {
// The tensors of an operation, by name, in Storage.
std::vector<std::pair<const char*, DType>> tensors_of(const Storage& s, Op op) {
  switch (op) {
    case Op::attention:
      return {{"q", s.q}, {"k", s.k}, {"v", s.v}, {"out", s.out}};
    case Op::softmax:
      return {{"x", s.x}, {"y", s.y}};
    case Op::cross_entropy:
      return {{"logits", s.logits}, {"dlogits", s.dlogits}};
    default:
      return {};
  }
}
}  // namespace

bool Storage::uniform(Op op, DType t) const {
  for (const auto& [name, d] : tensors_of(*this, op))
    if (d != t) return false;
  return true;
}

std::string Storage::describe(Op op, DType t) const {
  std::string s;
  for (const auto& [name, d] : tensors_of(*this, op))
    if (d != t) s += (s.empty() ? "" : ",") + std::string(name) + "=" + std::string(to_string(d));
  return s;
}

bool widens(DType wide, DType t) {
  if (wide == t || wide == DType::f64) return true;
  return wide == DType::f32 && (t == DType::f16 || t == DType::bf16);
}

void check_storage(const Storage& s, Op op, DType t, const std::string& who) {
  for (const auto& [name, d] : tensors_of(s, op))
    if (!widens(d, t))
      throw_invalid(who, std::string(name) + "=" + std::string(to_string(d)),
                    "a tensor of a " + std::string(to_string(t)) + " case must be stored in " +
                        std::string(to_string(t)) +
                        " or a dtype that holds every value of it (f64, f32): the case's dtype is "
                        "the narrowest storage of its operation");
  if (s.mask != DType::f32 && s.mask != DType::f16 && s.mask != t)
    throw_invalid(who, "mask=" + std::string(to_string(s.mask)),
                  "the additive mask is stored in f32 or f16");
}

std::vector<DType> Implementation::dtypes(Op) const {
  return {DType::f64, DType::f32, DType::f16, DType::bf16};
}

bool Implementation::provides(Op op) const {
  const auto o = ops();
  return std::find(o.begin(), o.end(), op) != o.end();
}

void Implementation::unsupported(Op op) const {
  throw Unsupported(name() + " does not provide " + std::string(to_string(op)));
}

namespace {
Support not_provided(const Implementation& impl, Op op) {
  return Support::no(impl.name() + " does not provide " + std::string(to_string(op)));
}
}  // namespace

Support Implementation::supports_masks(const MaskSpec&, MaskEncoding, DType) const {
  return not_provided(*this, Op::masks);
}
std::vector<double> Implementation::build_mask(const MaskSpec&, MaskEncoding, DType) const {
  unsupported(Op::masks);
}
std::vector<double> Implementation::convert_mask(std::span<const double>, MaskEncoding,
                                                 MaskEncoding, DType) const {
  unsupported(Op::masks);
}
std::vector<std::uint8_t> Implementation::keep_from_lengths(std::span<const std::int32_t>,
                                                            std::int64_t, PaddingSide) const {
  unsupported(Op::masks);
}
std::vector<std::int64_t> Implementation::last_valid_index(std::span<const std::int32_t>,
                                                           std::int64_t, PaddingSide) const {
  unsupported(Op::masks);
}
Support Implementation::supports_softmax(const SoftmaxProblem&, DType) const {
  return not_provided(*this, Op::softmax);
}
std::vector<double> Implementation::softmax(const SoftmaxProblem&, DType,
                                            std::span<const double>) const {
  unsupported(Op::softmax);
}
Support ScoreModifierSupport::admits(const ScoreModifiers& m, std::string_view who) const {
  const std::string w(who);
  if (m.softcap != 0 && !softcap) return Support::no(w + " does not apply logit soft-capping");
  if (!m.alibi_slopes.empty() && !alibi) return Support::no(w + " does not apply ALiBi");
  if (!m.sink_logits.empty() && !sink_logits)
    return Support::no(w + " does not take learned sink logits");
  return Support::yes();
}

Support Implementation::supports_attention(const AttentionProblem& p, DType t,
                                           bool want_lse) const {
  if (!provides(Op::attention)) return attention_support(p, t, want_lse);
  if (Support s = score_modifiers().admits(p.mods, name()); !s) return s;
  return attention_support(p, t, want_lse);
}
Support Implementation::supports_attention_backward(const AttentionProblem& p, DType t) const {
  if (p.mods.any())
    return Support::no("attention backward with score modifiers (" + p.mods.describe() +
                       ") is not part of the contract yet");
  return attention_backward_support(p, t);
}
Support Implementation::attention_support(const AttentionProblem&, DType, bool) const {
  return not_provided(*this, Op::attention);
}
AttentionResult Implementation::attention(const AttentionProblem&, DType, std::span<const double>,
                                          std::span<const double>, std::span<const double>,
                                          bool) const {
  unsupported(Op::attention);
}
Support Implementation::attention_backward_support(const AttentionProblem&, DType) const {
  return Support::no(name() + " does not provide attention backward");
}
AttentionGradients Implementation::attention_backward(const AttentionProblem&, DType,
                                                      std::span<const double>,
                                                      std::span<const double>,
                                                      std::span<const double>,
                                                      std::span<const double>) const {
  throw Unsupported(name() + " does not provide attention backward");
}
Support Implementation::supports_attention_varlen(const VarlenAttentionProblem&, DType,
                                                  bool) const {
  return Support::no(name() + " does not provide the packed (varlen) attention layout");
}
AttentionResult Implementation::attention_varlen(const VarlenAttentionProblem&, DType,
                                                 std::span<const double>, std::span<const double>,
                                                 std::span<const double>, bool) const {
  unsupported(Op::attention);
}
Support Implementation::supports_attention_chunk(const AttentionProblem&, DType) const {
  if (!provides(Op::attention)) return not_provided(*this, Op::attention);
  return Support::no(name() + " does not compute split-KV chunks");
}
AttentionResult Implementation::attention_chunk(const AttentionProblem&, DType,
                                                std::span<const double>, std::span<const double>,
                                                std::span<const double>, std::int64_t,
                                                std::int64_t) const {
  throw Unsupported(name() + " does not compute split-KV chunks");
}
Support Implementation::supports_attention_paged(const AttentionProblem&, const PagedKv&, DType,
                                                 bool) const {
  if (!provides(Op::attention)) return not_provided(*this, Op::attention);
  return Support::no(name() + " does not read a paged KV cache");
}
AttentionResult Implementation::attention_paged(const AttentionProblem&, const PagedKv&, DType,
                                                std::span<const double>, std::span<const double>,
                                                std::span<const double>, bool) const {
  throw Unsupported(name() + " does not read a paged KV cache");
}
Support Implementation::supports_cross_entropy(const LossProblem&, DType) const {
  return not_provided(*this, Op::cross_entropy);
}
LossResult Implementation::cross_entropy(const LossProblem&, DType, std::span<const double>,
                                         std::span<const std::int64_t>, std::span<const double>,
                                         bool) const {
  unsupported(Op::cross_entropy);
}
Support Implementation::supports_cross_entropy_upstream(const LossProblem&, DType) const {
  if (!provides(Op::cross_entropy)) return not_provided(*this, Op::cross_entropy);
  return Support::no(name() +
                     " takes no upstream gradient for cross-entropy (its backward assumes "
                     "ones)");
}
LossResult Implementation::cross_entropy_upstream(const LossProblem&, DType,
                                                  std::span<const double>,
                                                  std::span<const std::int64_t>,
                                                  std::span<const double>,
                                                  std::span<const double>) const {
  throw Unsupported(name() + " takes no upstream gradient for cross-entropy");
}
Support Implementation::supports_lm_labels(const LmLabelsProblem&) const {
  return not_provided(*this, Op::lm_labels);
}
std::vector<std::int64_t> Implementation::lm_labels(const LmLabelsProblem&,
                                                    std::span<const std::int64_t>,
                                                    std::span<const std::uint8_t>,
                                                    std::span<const std::int32_t>) const {
  unsupported(Op::lm_labels);
}
Support Implementation::supports_mlm(const MlmProblem&) const {
  return not_provided(*this, Op::mlm);
}
MlmResult Implementation::mlm(const MlmProblem&, std::span<const std::int64_t>,
                              std::span<const std::uint8_t>, std::span<const std::uint8_t>,
                              std::span<const std::uint8_t>) const {
  unsupported(Op::mlm);
}

void Registry::add(std::shared_ptr<const Implementation> impl) {
  if (find(impl->name()))
    throw_invalid("implementation", impl->name(), "names must be unique in a registry");
  impls_.push_back(std::move(impl));
}

std::shared_ptr<const Implementation> Registry::find(std::string_view name) const {
  for (const auto& i : impls_)
    if (i->name() == name) return i;
  return nullptr;
}

std::vector<std::shared_ptr<const Implementation>> Registry::select(std::string_view names) const {
  if (names.empty()) return impls_;
  std::vector<std::shared_ptr<const Implementation>> out;
  std::size_t pos = 0;
  while (pos <= names.size()) {
    const std::size_t comma = std::min(names.find(',', pos), names.size());
    const std::string_view n = names.substr(pos, comma - pos);
    auto add = [&out](const std::shared_ptr<const Implementation>& impl) {
      if (std::find(out.begin(), out.end(), impl) == out.end()) out.push_back(impl);
    };
    if (n == "own" || n == "third-party") {
      for (const auto& i : impls_)
        if (i->third_party() == (n == "third-party")) add(i);
    } else if (!n.empty() && n.back() == '*') {
      for (const auto& i : impls_)
        if (std::string_view(i->name()).substr(0, n.size() - 1) == n.substr(0, n.size() - 1))
          add(i);
    } else if (!n.empty()) {
      auto impl = find(n);
      if (!impl) {
        std::string known;
        for (const auto& i : impls_) known += (known.empty() ? "" : ", ") + i->name();
        throw_invalid("--impl", std::string(n), "unknown implementation; known: " + known);
      }
      add(impl);
    }
    pos = comma + 1;
  }
  return out;
}

}  // namespace maskcheck
