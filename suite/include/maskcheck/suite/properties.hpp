// The property catalogue. Each property is written once, as a specification, and instantiated
// for every implementation that provides its operation: the runner calls `check` inside
// rapidcheck, which draws a case (through the generators, limited to the implementation's
// dtypes), asks the implementation whether it supports it (an unsupported case is tagged
// "skipped: <reason>" and counted), runs it and compares through the tolerance module.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "maskcheck/suite/generators.hpp"
#include "maskcheck/suite/registry.hpp"
#include "maskcheck/suite/tolerance.hpp"

namespace maskcheck {

struct Property {
  std::string name;  // "<op>.<specification>", e.g. "attention.maskedKeysCannotLeak"
  Op op;
  std::string summary;  // the specification in one sentence
  std::function<void(const Implementation&, const CaseLimits&)> check;
};

const std::vector<Property>& property_catalogue();
const Property* find_property(std::string_view name);

// Helpers for property bodies.
// Tags the case as skipped when unsupported; returns whether it is supported.
bool supported(const Support& s);
// Tags the case with coverage labels (mask features, dtype).
void tag_case(const MaskSpec& m, DType t);
void tag_case(std::initializer_list<std::string> tags);
// Fails the case with the check's report.
void expect(const CheckResult& r);
// Fails the case with a message unless cond.
void expect(bool cond, const std::string& message);

// Garbage written where nothing may be read (padding, masked keys, ignored rows), printed by
// name in counterexamples ("garbage: +inf"), the same in every property.
enum class Garbage : std::uint8_t {
  nan,           // quiet NaN
  pos_inf,       // +inf
  neg_inf,       // -inf
  half_max,      // +max_finite(dtype) / 2
  neg_half_max,  // -max_finite(dtype) / 2
  random_1e3     // N(0, 1e3), rounded to the dtype
};
std::string_view to_string(Garbage g);
void showValue(Garbage g, std::ostream& os);
double garbage_value(Garbage g, DType t, DataRng& rng);
// One of `kinds`, shrinking toward the first; labelled "garbage" in counterexamples.
Garbage draw_garbage(std::initializer_list<Garbage> kinds);
// One of a few values, drawn uniformly (and shrinking toward the first), shown as `name` in a
// counterexample: the shifts, scales and constants of the invariance properties.
double draw_one_of(std::initializer_list<double> values, const char* name);

// Prefix-LM's split, shared by the masks and attention properties: `m` made a prefix-LM mask
// (causal, one segment per sequence, right padding or none, no window or chunk) with prefixes
// `prefix_lens`, beside its two halves: `causal`, the same without the prefix, and
// `bidirectional`, no causal clause and each sequence's keys cut to its prefix. A query row of
// `prefix` whose diagonal lies inside the prefix (in_prefix) equals its row of `bidirectional`,
// every other row its row of `causal`.
struct PrefixSplit {
  MaskSpec prefix, causal, bidirectional;
  bool in_prefix(std::int64_t b, std::int64_t q) const;
};
PrefixSplit prefix_split(MaskSpec m, std::vector<std::int32_t> prefix_lens);
// The prefix lengths a prefix property uses: the case's own, or one drawn per sequence.
std::vector<std::int32_t> draw_prefix_lens(const MaskSpec& m);

// Chunked self-attention beside documents of the chunk's length: `m` with queries padded like the
// keys, no documents, and chunks of `chunk` keys (`chunked`), and the same with documents cut
// every `chunk` keys of each sequence instead (`documents`): the two masks are equal. Empty when
// Lq != Lk (chunks then follow the diagonal, documents the query's own position).
struct ChunkSplit {
  MaskSpec chunked, documents;
};
std::optional<ChunkSplit> chunk_split(MaskSpec m, std::int64_t chunk);
// The chunk length a chunk property uses: the case's own, or a drawn one.
std::int64_t draw_chunk(const MaskSpec& m);

// Attention sinks for a sinks property: `m` with sink tokens (its own, or 1, 4 or a drawn count)
// and a window whose left side is bounded (its own, or a drawn one), and no chunk (whose first
// key may lie past the sinks).
MaskSpec with_sinks(MaskSpec m);
// [B, Lk]: whether key k of sequence b is one of the first `S` keys of its segment (its
// document, or the sequence's valid keys), from the layout alone.
std::vector<std::uint8_t> segment_first_keys(const MaskSpec& m, std::int64_t S);

// Shapes with named axes.
Shape mask_shape(const MaskSpec& m);                   // (b, q, k)
Shape softmax_shape(const SoftmaxProblem& p);          // (b, h, q, k)
Shape attention_out_shape(const AttentionProblem& p);  // (b, h, q, d)
Shape attention_lse_shape(const AttentionProblem& p);  // (b, h, q)
Shape rows_shape(std::int64_t N);                      // (n)
Shape logits_shape(std::int64_t N, std::int64_t V);    // (n, v)
Shape tokens_shape(std::int64_t B, std::int64_t L);    // (b, t)

// Per-op catalogue parts (each in its own file).
void add_mask_properties(std::vector<Property>& out);
void add_softmax_properties(std::vector<Property>& out);
void add_attention_properties(std::vector<Property>& out);
void add_attention_modifier_properties(std::vector<Property>& out);
void add_attention_paged_properties(std::vector<Property>& out);
void add_attention_backward_properties(std::vector<Property>& out);
void add_loss_properties(std::vector<Property>& out);
void add_labels_properties(std::vector<Property>& out);
void add_mlm_properties(std::vector<Property>& out);

}  // namespace maskcheck
