// maskcheck CPU kernels: the reference's operations, optimized for x86 with Highway SIMD (runtime
// dispatch among SSE4 / AVX2 / AVX-512) and OpenMP threads, with the same semantics as the
// reference. Host pointers. Storage dtypes: f32 everywhere; bf16 (maskcheck::bfloat16) with fp32
// accumulation for softmax, attention and cross-entropy, as LibTorch supports on CPU; f16 only
// for mask values. Every function validates its problem first (InvalidArgument naming the
// field); none allocates in its hot loops.
//
// Masks are never materialized: kernels ask the one predicate (maskcheck/reference/predicate.hpp)
// for each query's visible key interval and derive tile skipping from it.
#pragma once

#include <cstdint>
#include <string>

#include "maskcheck/reference/dtype.hpp"
#include "maskcheck/reference/encodings.hpp"
#include "maskcheck/reference/predicate.hpp"
#include "maskcheck/reference/problems.hpp"

namespace maskcheck::cpu {

// OpenMP threads the kernels use (omp_get_max_threads; OMP_NUM_THREADS sets it) and the Highway
// target chosen for this CPU at run time (e.g. "AVX3", "AVX2").
int max_threads();
std::string simd_target();

// Throws InvalidArgument unless t is f32 or bf16 (the compute kernels' storage types).
void require_cpu_dtype(DType t);

// ---- masks ----------------------------------------------------------------------------------
// out: [B, Lq, Lk]; uint8 for keep / masked_out, dtype t (f32, f16, bf16) for additive ones.
void build_mask(const MaskView& mask, MaskEncoding e, DType t, void* out);
// Element-wise conversion of n values between encodings (same storage rules; NaN decodes as
// masked, the front door rejects it).
void convert_mask(const void* in, MaskEncoding from, MaskEncoding to, DType t, std::int64_t n,
                  void* out);
// keep: [B, L]; last: [B] (-1 for an empty sequence).
void keep_from_lengths(const std::int32_t* lengths, std::int64_t B, std::int64_t L,
                       PaddingSide side, std::uint8_t* keep);
void last_valid_index(const std::int32_t* lengths, std::int64_t B, std::int64_t L, PaddingSide side,
                      std::int64_t* last);

// ---- masked softmax -------------------------------------------------------------------------
// x, y: [B, H, Lq, Lk]. Masked entries of x are never read; y is +0.0 there.
void masked_softmax(const SoftmaxProblem& p, const MaskView& mask, DType t, const void* x, void* y);

// ---- attention forward ----------------------------------------------------------------------
// q: [B, H, Lq, D], k, v: [B, Hkv, Lk, D], out: [B, H, Lq, D]; lse: [B, H, Lq] or nullptr, with
// B, Lq and Lk those of the mask (an AttentionProblem passes p.shape() and a view of p.mask).
// Score modifiers (p.mods: soft-capping, ALiBi, sink logits) as in the reference.
// Padding memory may hold anything: it is never read.
void attention_forward(const AttentionShape& p, const MaskView& mask, DType t, const void* q,
                       const void* k, const void* v, void* out, float* lse);

// ---- split-KV chunks
// ------------------------------------------------------------------------------ attention_forward
// over the keys [key_begin, key_end) of the padded key axis only (each row's visible interval
// intersected with them; a row that sees none of them: 0 and lse -inf), as one chunk of a split-KV
// computation; no sink logits (a sink is a chunk of its own when merging).
void attention_forward_chunk(const AttentionShape& p, const MaskView& mask, DType t, const void* q,
                             const void* k, const void* v, std::int64_t key_begin,
                             std::int64_t key_end, void* out, float* lse);

// ---- attention over a paged KV cache ------------------------------------------------------------
// problems.hpp's PagedKv as plain pointers: block_table [B, max_pages] (host memory).
struct PagedKvView {
  const std::int32_t* block_table = nullptr;
  std::int64_t page_size = 1, num_pages = 0, max_pages = 0;
};
// attention_forward with k_cache, v_cache [num_pages, page_size, Hkv, D] in dtype t: each key
// tile is gathered from its pages while it is packed (the kernel packs K and V anyway), so the
// cost over the padded layout is one table lookup per key row. The caller validates the block
// table against the mask (PagedKv::validate); right padding only.
void attention_forward_paged(const AttentionShape& p, const MaskView& mask, const PagedKvView& kv,
                             DType t, const void* q, const void* k_cache, const void* v_cache,
                             void* out, float* lse);

// ---- attention backward ---------------------------------------------------------------------
// q, dout, dq: [B, H, Lq, D], k, v, dk, dv: [B, Hkv, Lk, D] in dtype t, B, Lq and Lk those of the
// mask: the gradients of attention_forward's output (reference/attention.hpp's
// attention_backward). Masked and padded inputs are never read; keys no query sees get dk = dv =
// +0.0, rows that see no key dq = +0.0. Bitwise the same across runs and thread counts.
void attention_backward(const AttentionShape& p, const MaskView& mask, DType t, const void* q,
                        const void* k, const void* v, const void* dout, void* dq, void* dk,
                        void* dv);

// ---- cross-entropy forward + backward ---------------------------------------------------------
// logits: [N, V]; labels: [N]; weights: [N] or nullptr (p.weighted); losses: [N] (w_i l_i, 0 for
// ignored rows); dlogits: [N, V] or nullptr (forward only). Ignored rows are never read; their
// gradient row is +0.0. Labels outside [0, V) other than ignore_index throw InvalidArgument
// before anything is written. Deterministic for a given thread count.
struct LossTotals {
  double loss = 0;        // reduced loss
  double weight_sum = 0;  // weight of contributing rows
  std::int64_t count = 0;
};
LossTotals cross_entropy(const LossProblem& p, DType t, const void* logits,
                         const std::int64_t* labels, const float* weights, float* losses,
                         void* dlogits);
// The same with an upstream gradient (needs dlogits): grad_output [N] for reduction none (row i's
// gradient times grad_output[i]; ignored rows never read theirs), [1] for mean and sum; nullptr
// is ones (the call above).
LossTotals cross_entropy(const LossProblem& p, DType t, const void* logits,
                         const std::int64_t* labels, const float* weights, float* losses,
                         void* dlogits, const float* grad_output);

// ---- causal-LM labels --------------------------------------------------------------------------
// ids, keep: [B, L]; prompt_lens: [B] or nullptr -> labels: [B, L] (see LmLabelsProblem).
void lm_labels(const LmLabelsProblem& p, const std::int64_t* ids, const std::uint8_t* keep,
               const std::int32_t* prompt_lens, std::int64_t* labels);

// ---- MLM masking ------------------------------------------------------------------------------
// ids, keep, special, continuation (nullptr unless whole_word): [B, L] -> ids_out, labels.
// Bit-identical to the reference for every seed.
void mlm_mask(const MlmProblem& p, const std::int64_t* ids, const std::uint8_t* keep,
              const std::uint8_t* special, const std::uint8_t* continuation, std::int64_t* ids_out,
              std::int64_t* labels);

}  // namespace maskcheck::cpu
