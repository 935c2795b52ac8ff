// One call of one operation of an implementation: the problem, the options and the input
// tensors. It is what a counterexample file holds (one file per call the failing case made) and
// what `maskcheck eval` runs. In a .safetensors case file:
//
//   metadata  maskcheck.format   "maskcheck.case/1" (optional when writing a case by hand)
//             maskcheck.op       masks | softmax | attention | cross_entropy | lm_labels | mlm
//             maskcheck.call     the function within the op (default: build_mask for masks,
//                                attention for attention, else the op): build_mask,
//                                convert_mask, keep_from_lengths, last_valid_index, softmax,
//                                attention, attention_varlen, attention_paged,
//                                attention_chunk, attention_backward, cross_entropy,
//                                lm_labels, mlm
//             maskcheck.dtype    f64 | f32 | f16 | bf16 for floating calls (default: the dtype
//                                of the first floating input)
//             maskcheck.problem  JSON of the problem (problem_json.hpp; attention_paged adds
//                                "paged": {"page_size", "num_pages", "max_pages"}); padding
//                                helpers:
//                                {"L", "padding"}. Fields left out are taken from the tensor
//                                shapes (B, H, Lq, Lk, D, Hkv, N, V, L) or keep their defaults.
//             maskcheck.options  JSON: {"encoding"} build_mask, {"from", "to"} convert_mask,
//                                {"want_lse"} attention (default true), {"key_begin",
//                                "key_end"} attention_chunk (required: the chunk of keys),
//                                {"backward"} cross_entropy (default false); {} otherwise
//             maskcheck.storage  JSON, optional: the tensors stored wider than maskcheck.dtype
//                                (mixed storage, registry.hpp's Storage), e.g. {"q": "f32",
//                                "out": "f32"} in an f16 attention case; names q, k, v, out
//                                (attention), x, y (softmax), logits, dlogits (cross_entropy)
//   tensors   build_mask         the mask spec's arrays (below)
//             convert_mask       mask [any shape]
//             keep_from_lengths, last_valid_index   lengths I32 [B]
//             softmax            x [B, H, Lq, Lk] + the mask spec's arrays
//             attention          q [B, H, Lq, D], k, v [B, Hkv, Lk, D] + the mask spec's arrays
//             attention_varlen   q [Tq, H, D], k, v [Tk, Hkv, D], cu_seqlens_q, cu_seqlens_k [B+1]
//             attention_paged    q [B, H, Lq, D], k_cache, v_cache [num_pages, page_size, Hkv, D],
//                                block_table I32 [B, max_pages] + the mask spec's arrays
//             attention_chunk    as attention (one split-KV chunk of its keys)
//             attention_backward q, dout [B, H, Lq, D], k, v [B, Hkv, Lk, D] + the mask spec's
//                                arrays
//             cross_entropy      logits [N, V], labels I64 [N], weights [N] (when weighted)
//             lm_labels          ids I64 [B, L], keep U8 [B, L], prompt_lens I32 [B] (optional)
//             mlm                ids I64, keep, special, continuation U8 [B, L] (continuation:
//                                when whole_word)
//   The mask spec's arrays, when the spec has them: q_lens, k_lens I32 [B]; packed documents as
//   cu_seqlens_q (I32, the B lists concatenated) with cu_seqlens_q_offsets (I32 [B + 1]: list b
//   is cu_seqlens_q[offsets[b]:offsets[b+1]]), the same for k. They repeat the problem JSON's
//   arrays for PyTorch users; when both are given they must agree, either alone is enough.
//   Floating inputs are written in the case dtype, or in their own with maskcheck.storage (as F64
//   when a value is not exactly representable in it, so that a file always holds what the
//   implementation was given) and must be exactly representable in it when read. Integer inputs may
//   come in any integer dtype (BOOL too for 0/1 arrays) and are range-checked. Tensors named
//   "recorded.<name>" (what the implementation returned, in counterexample files) are carried along
//   and ignored by eval; any other unknown tensor is an error.
//
// Result tensors (result_tensors): build_mask, convert_mask: mask (case dtype); keep_from_lengths:
// keep U8 [B, L]; last_valid_index: last_valid_index I64 [B]; softmax: y; attention: out and
// lse F64 (when want_lse; always for attention_chunk); attention_backward: dq, dk, dv (case dtype);
// cross_entropy: loss F64 [], losses F64 [N], count I64 [], weight_sum F64 [], dlogits [N, V] (when
// backward); lm_labels: labels I64; mlm: ids, labels I64. Accumulator-precision values (lse, loss,
// losses, weight_sum) are F64: the registry boundary hands them over as doubles that need not fit
// the case dtype.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "maskcheck/suite/registry.hpp"
#include "maskcheck/suite/safetensors.hpp"

namespace maskcheck {

enum class Call : std::uint8_t {
  build_mask,
  convert_mask,
  keep_from_lengths,
  last_valid_index,
  softmax,
  attention,
  attention_varlen,
  attention_paged,
  attention_chunk,
  attention_backward,
  cross_entropy,
  lm_labels,
  mlm
};
std::string_view to_string(Call c);
Call call_from_string(std::string_view s);  // throws InvalidArgument
Op op_of(Call c);

struct BuildMaskCall {
  MaskSpec spec;
  MaskEncoding encoding = MaskEncoding::keep;
  DType dtype = DType::f32;
};
struct ConvertMaskCall {
  std::vector<double> values;
  std::vector<std::int64_t> shape;  // of values as written ([n] when recorded)
  MaskEncoding from = MaskEncoding::keep;
  MaskEncoding to = MaskEncoding::keep;
  DType dtype = DType::f32;
};
struct PaddingCall {
  std::vector<std::int32_t> lengths;
  std::int64_t L = 0;
  PaddingSide side = PaddingSide::right;
};
struct KeepFromLengthsCall : PaddingCall {};
struct LastValidIndexCall : PaddingCall {};
struct SoftmaxCall {
  SoftmaxProblem problem;
  DType dtype = DType::f32;
  std::vector<double> x;
  std::optional<Storage> storage = std::nullopt;  // tensors stored wider than dtype
};
struct AttentionCall {
  AttentionProblem problem;
  DType dtype = DType::f32;
  std::vector<double> q, k, v;
  bool want_lse = true;
  std::optional<Storage> storage = std::nullopt;  // tensors stored wider than dtype
};
struct AttentionBackwardCall {
  AttentionProblem problem;
  DType dtype = DType::f32;
  std::vector<double> q, k, v, dout;
  std::optional<Storage> storage = std::nullopt;  // tensors stored wider than dtype
};
struct VarlenAttentionCall {
  VarlenAttentionProblem problem;
  DType dtype = DType::f32;
  std::vector<double> q, k, v;
  bool want_lse = true;
  std::optional<Storage> storage = std::nullopt;  // tensors stored wider than dtype
};
struct PagedAttentionCall {
  AttentionProblem problem;
  PagedKv kv;
  DType dtype = DType::f32;
  std::vector<double> q, k_cache, v_cache;
  bool want_lse = true;
  std::optional<Storage> storage = std::nullopt;  // tensors stored wider than dtype
};
// One split-KV chunk (Implementation::attention_chunk): attention over the keys
// [key_begin, key_end) of the padded key axis, its log-sum-exp always returned.
struct ChunkAttentionCall {
  AttentionProblem problem;
  DType dtype = DType::f32;
  std::vector<double> q, k, v;
  std::int64_t key_begin = 0, key_end = 0;
  std::optional<Storage> storage = std::nullopt;  // tensors stored wider than dtype
};
struct CrossEntropyCall {
  LossProblem problem;
  DType dtype = DType::f32;
  std::vector<double> logits;
  std::vector<std::int64_t> labels;
  std::vector<double> weights;
  bool backward = false;
  std::optional<Storage> storage = std::nullopt;  // tensors stored wider than dtype
  // The upstream gradient ([N] for reduction none, [1] otherwise; implies backward), or empty
  // for ones: a non-empty one calls cross_entropy_upstream.
  std::vector<double> grad_output{};
};
struct LmLabelsCall {
  LmLabelsProblem problem;
  std::vector<std::int64_t> ids;
  std::vector<std::uint8_t> keep;
  std::vector<std::int32_t> prompt_lens;
};
struct MlmCall {
  MlmProblem problem;
  std::vector<std::int64_t> ids;
  std::vector<std::uint8_t> keep, special, continuation;
};

// A visitor of several lambdas: std::visit(overloaded{[](const AttentionCall&) {...}, ...}, in).
template <class... F>
struct overloaded : F... {
  using F::operator()...;
};
template <class... F>
overloaded(F...) -> overloaded<F...>;  // clang 14 deduces no aggregate template arguments

using CallInputs = std::variant<BuildMaskCall, ConvertMaskCall, KeepFromLengthsCall,
                                LastValidIndexCall, SoftmaxCall, AttentionCall, VarlenAttentionCall,
                                PagedAttentionCall, ChunkAttentionCall, AttentionBackwardCall,
                                CrossEntropyCall, LmLabelsCall, MlmCall>;
Call call_of(const CallInputs& in);

// What the implementation returned: masks, softmax and convert_mask give doubles,
// keep_from_lengths bytes, last_valid_index and lm_labels integers.
using CallResult =
    std::variant<std::vector<double>, std::vector<std::uint8_t>, std::vector<std::int64_t>,
                 AttentionResult, AttentionGradients, LossResult, MlmResult>;

// The checks every implementation's front door makes (validate(), tensor sizes,
// validate_loss_inputs, validate_mlm_inputs, ...); throws InvalidArgument.
void validate_call(const CallInputs& in);
// The implementation's supports_*() answer for the call (provides() for the helpers).
Support supports_call(const Implementation& impl, const CallInputs& in);
// Calls the implementation; does not validate first.
CallResult run_call(const Implementation& impl, const CallInputs& in);

using Tensors = std::map<std::string, safetensors::Tensor>;

// A case file: the inputs as tensors, problem and options as metadata (see the top).
safetensors::File encode_case(const CallInputs& in);
// Reads a case file; `source` names it in errors. Throws InvalidArgument for anything missing,
// unknown, of the wrong dtype or shape, or inconsistent. Does not call validate_call.
CallInputs decode_case(const safetensors::File& f, const std::string& source);
// The result tensors of the call, each name with `prefix` in front. A result whose size does not
// match its shape is written flat, and noted in `notes`, as is a floating result not exactly
// representable in the case dtype (written as F64).
Tensors result_tensors(const CallInputs& in, const CallResult& r, std::string_view prefix = "",
                       std::vector<std::string>* notes = nullptr);

// Metadata keys of case and result files.
inline constexpr const char* kMetaFormat = "maskcheck.format";
inline constexpr const char* kMetaOp = "maskcheck.op";
inline constexpr const char* kMetaCall = "maskcheck.call";
inline constexpr const char* kMetaDtype = "maskcheck.dtype";
inline constexpr const char* kMetaProblem = "maskcheck.problem";
inline constexpr const char* kMetaOptions = "maskcheck.options";
inline constexpr const char* kMetaStorage = "maskcheck.storage";
inline constexpr std::string_view kCaseFormat = "maskcheck.case/1";
inline constexpr std::string_view kResultFormat = "maskcheck.result/1";
inline constexpr std::string_view kRecordedPrefix = "recorded.";

}  // namespace maskcheck
