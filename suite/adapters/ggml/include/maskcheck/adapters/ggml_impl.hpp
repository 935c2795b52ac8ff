// ggml (the tensor library of llama.cpp) as a third-party implementation under test, and as a
// benchmark peer: the built-in registry holds these adapters when the build found ggml (the
// libggml-python wheel's CPU libraries and CMake package, installed by ci/setup.sh), and `maskcheck
// verify` tests ggml's masking the way llama.cpp calls it. Each adapter declares its storage
// through the mixed-precision interface the plugin ABI 1.1 speaks (Implementation::storage, ABI
// maskcheck_storage), and declines with a reason what ggml does not take.
//
//   ggml:soft_max_ext     ggml_soft_max_ext(x, mask, scale, 0): masked softmax with an additive
//                         0/-inf mask [Lk, Lq, 1, B]; x and y f32 (ggml's CPU soft_max takes f32
//                         scores only); the mask in f32 (f32 cases) or f16 (f16 cases)
//   ggml:flash_attn_ext   ggml_flash_attn_ext(q, k, v, mask, scale, 0, 0): K and V in the case's
//                         dtype (f16 as llama.cpp's KV cache, bf16, f32), q handed over as f32 but
//                         declared in the case's dtype (ggml rounds it to K's type), the mask in
//                         f16 (the only mask type it takes), the output f32 [D, H, Lq, B]
//   ggml:mul_mat_softmax  llama.cpp's path without flash attention: kq = mul_mat(k, q),
//                         soft_max_ext(kq, mask, scale, 0), mul_mat(v^T, kq), with V stored
//                         transposed ([Lk, D] per head) as llama.cpp's KV cache holds it then; q
//                         (rounded by mul_mat to K's type), K and V in the case's dtype, the mask
//                         f32, the output f32
// Masks reach ggml as one materialized additive tensor built from maskcheck's keep-mask (0 where
// the predicate allows, -inf elsewhere), shared by every head: every mask feature (padding on
// either side, causal in either alignment, windows, documents) is expressible. ggml has no
// log-sum-exp output and no packed (varlen) layout.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "maskcheck/suite/registry.hpp"

namespace maskcheck::ggml_adapters {

// "ggml 0.20.2 (commit 8c63e70, CPU: AVX2 F16C FMA)".
std::string ggml_version();

// The adapters: ggml:soft_max_ext, ggml:flash_attn_ext, ggml:mul_mat_softmax.
std::vector<std::shared_ptr<const Implementation>> make_ggml_implementations();

// ---- benchmark peers (maskcheck_bench): one ggml graph built once on the caller's buffers -------

enum class Kind : std::uint8_t { soft_max_ext, flash_attn_ext, mul_mat_softmax };

// A graph of one of the adapters' ops on the host buffers it was built with, its work buffer and
// threadpool allocated once; run() computes it and nothing else. Inputs are in the adapter's
// storage for the case's dtype (q as f32 values, k and v in t, ...), except that V of
// mul_mat_softmax is given as maskcheck holds it, [B, Hkv, Lk, D], and transposed once here.
// Outputs:
//   soft_max_ext     y [B, H, Lq, Lk] f32 at `out`
//   flash_attn_ext   [B, Lq, H, D] f32 at `out` (ggml's permuted result, as llama.cpp uses it)
//   mul_mat_softmax  [B, H, Lq, D] f32 at `out`
class Peer {
 public:
  // Throws std::invalid_argument with the adapter's reason when it does not take the problem.
  Peer(Kind kind, const AttentionProblem& p, DType t, const void* q, const void* k, const void* v,
       void* out, int threads);
  Peer(const SoftmaxProblem& p, DType t, const void* x, void* y, int threads);
  ~Peer();
  Peer(const Peer&) = delete;
  Peer& operator=(const Peer&) = delete;
  void run();
  std::string description() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace maskcheck::ggml_adapters
