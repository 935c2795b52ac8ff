// maskcheck CUDA kernels: the reference's operations on the GPU, with the same semantics.
// Host API over device pointers. Storage dtypes: f32 (float), f16 (__half), bf16
// (__nv_bfloat16), bit-compatible with maskcheck::half / maskcheck::bfloat16; accumulation in
// fp32. Every function validates its problem (InvalidArgument naming the field) before touching
// the device, launches on `stream` and throws CudaError on a CUDA failure.
//
// Masks are never materialized: kernels take the MaskView of a DeviceMask (the spec's arrays in
// device memory) and ask the one predicate (maskcheck/reference/predicate.hpp) for each query's
// visible key interval.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "maskcheck/reference/dtype.hpp"
#include "maskcheck/reference/encodings.hpp"
#include "maskcheck/reference/predicate.hpp"
#include "maskcheck/reference/problems.hpp"

namespace maskcheck::cuda {

class CudaError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Throws CudaError("<what>: <cuda error string>") unless e == cudaSuccess.
void check(cudaError_t e, const char* what);

// Whether a CUDA device is usable; otherwise why not (no driver, no device, ...).
bool device_available(std::string* why = nullptr);

struct DeviceInfo {
  std::string name;
  int cc_major = 0, cc_minor = 0;
  int sm_count = 0;
  std::size_t memory_bytes = 0;
  std::size_t l2_bytes = 0;
  int driver_version = 0, runtime_version = 0;
  int sm_clock_khz = 0, memory_clock_khz = 0, memory_bus_bits = 0;
};
DeviceInfo device_info(int device = 0);

// An owning device allocation.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(std::size_t bytes);
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept;
  ~DeviceBuffer();
  void* get() const { return ptr_; }
  template <class T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }
  std::size_t bytes() const { return bytes_; }
  void upload(const void* host, std::size_t bytes, cudaStream_t stream = nullptr);
  void download(void* host, std::size_t bytes, cudaStream_t stream = nullptr) const;

 private:
  void* ptr_ = nullptr;
  std::size_t bytes_ = 0;
};

// A MaskSpec's flattened arrays in device memory; view() is what kernels read.
class DeviceMask {
 public:
  explicit DeviceMask(const MaskSpec& spec, cudaStream_t stream = nullptr);
  const MaskView& view() const { return view_; }

 private:
  DeviceBuffer q_lens_, k_lens_, doc_ptr_, cu_q_, cu_k_, prefix_lens_;
  MaskView view_;
};

// The dtypes the CUDA kernels take (f32, f16, bf16); f64 throws InvalidArgument.
void require_cuda_dtype(DType t);

// ---- masks ----------------------------------------------------------------------------------
// out: [B, Lq, Lk]; uint8 for keep / masked_out, dtype t for additive encodings.
void build_mask(const MaskView& mask, MaskEncoding e, DType t, void* out, cudaStream_t stream);
// Element-wise conversion of n mask values between encodings (same storage rules as above).
void convert_mask(const void* in, MaskEncoding from, MaskEncoding to, DType t, std::int64_t n,
                  void* out, cudaStream_t stream);
// keep: [B, L] uint8.
void keep_from_lengths(const std::int32_t* lengths, std::int64_t B, std::int64_t L,
                       PaddingSide side, std::uint8_t* keep, cudaStream_t stream);
// last: [B] int64, -1 for an empty sequence.
void last_valid_index(const std::int32_t* lengths, std::int64_t B, std::int64_t L, PaddingSide side,
                      std::int64_t* last, cudaStream_t stream);

// ---- masked softmax -------------------------------------------------------------------------
// x, y: [B, H, Lq, Lk] in dtype t. Masked entries of x are never read; y is 0 there.
void masked_softmax(const SoftmaxProblem& p, const MaskView& mask, DType t, const void* x, void* y,
                    cudaStream_t stream);

// ---- attention forward ----------------------------------------------------------------------
// q: [B, H, Lq, D], k, v: [B, Hkv, Lk, D], out: [B, H, Lq, D] in dtype t; lse: [B, H, Lq] fp32
// or nullptr, with B, Lq and Lk those of the mask (an AttentionProblem passes p.shape() and the
// view of a DeviceMask of p.mask). Padding memory may hold anything (it is never read, or read as
// zeros).
void attention_forward(const AttentionShape& p, const MaskView& mask, DType t, const void* q,
                       const void* k, const void* v, void* out, float* lse, cudaStream_t stream);

// ---- attention backward ---------------------------------------------------------------------
// Given dout [B, H, Lq, D], the gradients of out = softmax(q k^T * scale + mask) v in the padded
// layout of attention_forward: dq [B, H, Lq, D], dk and dv [B, Hkv, Lk, D], all in dtype t (fp32
// arithmetic), dk and dv summed over each kv head's query heads. Keys no query sees get
// dk = dv = +0.0 and rows that see no key dq = +0.0; padding memory of q, k, v and dout may hold
// anything (it is never read). Deterministic: the same inputs give the same bits (no
// floating-point atomics). The forward is recomputed inside (its statistics are not an input).
// workspace: device memory of attention_backward_workspace_bytes(p, mask) bytes (row statistics
// and tile bounds); B, Lq, Lk of the mask.
std::size_t attention_backward_workspace_bytes(const AttentionShape& p, const MaskView& mask);
void attention_backward(const AttentionShape& p, const MaskView& mask, DType t, const void* q,
                        const void* k, const void* v, const void* dout, void* dq, void* dk,
                        void* dv, void* workspace, cudaStream_t stream);

// Packed (varlen) layout, no padding at all (see VarlenAttentionProblem): q, out [T_q, H, D],
// k, v [T_k, Hkv, D], lse [H, T_q] fp32 or nullptr; cu_q, cu_k: device copies of the problem's
// cu_seqlens [B + 1].
void attention_varlen(const VarlenAttentionProblem& p, const std::int32_t* cu_q,
                      const std::int32_t* cu_k, DType t, const void* q, const void* k,
                      const void* v, void* out, float* lse, cudaStream_t stream);

// ---- cross-entropy forward + backward ---------------------------------------------------------
// logits: [N, V] dtype t; labels: [N] int64; weights: [N] fp32 or nullptr; losses: [N] fp32
// (w_i l_i, 0 for ignored rows); dlogits: [N, V] dtype t or nullptr (forward only);
// totals: device LossTotals. Rows with the ignore label are never read. Deterministic: the same
// inputs give the same bits. Labels outside [0, V) other than ignore_index set totals->bad_label
// to the first offending row (checked by cross_entropy_checked).
struct LossTotals {
  float loss;                  // reduced loss
  float weight_sum;            // weight of contributing rows
  std::int64_t count;          // contributing rows
  std::int64_t bad_label_row;  // -1, or the first row with a label outside [0, V)
};
std::size_t cross_entropy_workspace_bytes(const LossProblem& p);
void cross_entropy(const LossProblem& p, DType t, const void* logits, const std::int64_t* labels,
                   const float* weights, float* losses, void* dlogits, LossTotals* totals,
                   void* workspace, cudaStream_t stream);
// The same with an upstream gradient (needs dlogits): grad_output [N] fp32 for reduction none
// (row i's gradient times grad_output[i]; ignored rows never read theirs), [1] for mean and sum;
// nullptr is ones (the call above).
void cross_entropy(const LossProblem& p, DType t, const void* logits, const std::int64_t* labels,
                   const float* weights, float* losses, void* dlogits, const float* grad_output,
                   LossTotals* totals, void* workspace, cudaStream_t stream);

// ---- MLM masking ------------------------------------------------------------------------------
// ids, keep, special, continuation (nullptr unless whole_word): [B, L]; ids_out, labels: [B, L].
// Bit-identical to the reference for the same seed (Philox4x32-10, same thresholds).
std::size_t mlm_workspace_bytes(const MlmProblem& p);
void mlm_mask(const MlmProblem& p, const std::int64_t* ids, const std::uint8_t* keep,
              const std::uint8_t* special, const std::uint8_t* continuation, std::int64_t* ids_out,
              std::int64_t* labels, void* workspace, cudaStream_t stream);

}  // namespace maskcheck::cuda
