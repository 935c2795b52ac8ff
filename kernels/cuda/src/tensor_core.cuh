// The tensor-core vocabulary of the CUDA flash kernels (attention.cu's forward,
// attention_backward.cu's dK/dV and dQ kernels): asynchronous global -> shared copies, ldmatrix,
// mma.sync m16n8k16 with fp32 accumulation, the special-function 2^x, and the one zero-filling tile
// loader.
//
// Fragment layouts of mma.sync.m16n8k16 (g = lane / 4, t4 = lane % 4), which every kernel relies
// on:
//   A (16 x 16, row):  a0 = A[g][2 t4 .. +1], a1 = A[g + 8][2 t4 .. +1], a2 = A[g][8 + 2 t4 .. +1],
//                      a3 = A[g + 8][8 + 2 t4 .. +1];
//   B (16 x 8, col):   b0 = B[2 t4 .. +1][g], b1 = B[8 + 2 t4 .. +1][g];
//   C, D (16 x 8):     c0, c1 = C[g][2 t4 .. +1], c2, c3 = C[g + 8][2 t4 .. +1].
// So an accumulator tile of 16 x 16 (two n-blocks) is, packed to pairs of halves, the A operand of
// the next product (P V in the forward, P^T dO and dS K in the backward), and ldmatrix reads
// operands stored row-major in shared memory: x4 of rows [r0, r0 + 16) for A, x4 of an [n][k]
// tile for B (non-transposed: B = tile^T, e.g. K in Q K^T) and x4.trans of a [k][n] tile (B = tile,
// e.g. V in P V).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

#include "common.cuh"

namespace maskcheck::cuda::tc {

// Halves per shared-memory row of a tile of D_PAD columns: +16 bytes keeps ldmatrix
// conflict-free.
template <int D_PAD>
inline constexpr int kSmemStride = D_PAD + 8;

__device__ __forceinline__ unsigned smem_addr(const void* p) {
  return static_cast<unsigned>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool pred) {
  const int bytes = pred ? 16 : 0;  // 0: zero-fill the 16 bytes, read nothing
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src),
               "r"(bytes));
}
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::);
}
template <int N>
__device__ __forceinline__ void cp_async_wait() {  // at most N committed groups still pending
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void ldmatrix_x4(std::uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(std::uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}

// d += a (16x16, row) * b (16x8, col), fp32 accumulate.
template <class T>
__device__ __forceinline__ void mma16816(float (&d)[4], const std::uint32_t (&a)[4],
                                         std::uint32_t b0, std::uint32_t b1) {
  if constexpr (std::is_same_v<T, __half>) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
        "{%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
        "{%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
}

// 2^x on the special-function unit. P is rounded to 8 or 11 mantissa bits right after, so the
// approximation (rel. error ~2^-22) and flushing results below 2^-126 to 0 cost nothing visible.
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

template <class T>
__device__ __forceinline__ std::uint32_t pack2(float lo, float hi) {
  if constexpr (std::is_same_v<T, __half>) {
    const __half2 v = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<const std::uint32_t*>(&v);
  } else {
    const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<const std::uint32_t*>(&v);
  }
}

// Copies `rows` rows of a [*, D] operand starting at row `first` into a shared tile of D_PAD
// columns (row stride kSmemStride<D_PAD>); rows outside [valid_lo, valid_hi) (or with row_ok[r] ==
// 0) and columns >= D become zeros, so nothing outside the valid data is ever read. row_ok[r] is
// read only for rows inside [valid_lo, valid_hi).
// VEC: 16-byte cp.async chunks (D % 8 == 0 and aligned pointers), else element by element; a
// template parameter because both paths in one kernel cost the hot loop its registers.
template <class T, int D_PAD, bool VEC, int THREADS>
__device__ __forceinline__ void load_tile(T* __restrict__ tile, const T* __restrict__ base,
                                          std::int64_t row_stride, std::int64_t first, int rows,
                                          std::int64_t valid_lo, std::int64_t valid_hi,
                                          std::int64_t D, const int* row_ok) {
  constexpr int kStride = kSmemStride<D_PAD>;
  if constexpr (VEC) {  // 16-byte chunks through cp.async (zero-filled where invalid)
    constexpr int kChunks = D_PAD / 8;
    for (int c = threadIdx.x; c < rows * kChunks; c += THREADS) {
      const int r = c / kChunks, col = (c % kChunks) * 8;
      const std::int64_t g = first + r;
      const bool ok = g >= valid_lo && g < valid_hi && col < D && (row_ok == nullptr || row_ok[r]);
      const T* src = ok ? base + g * row_stride + col : base;
      cp_async16(tile + r * kStride + col, src, ok);
    }
  } else {
#pragma unroll 1  // unrolled, the element loop would hold the hot loop's registers
    for (int c = threadIdx.x; c < rows * D_PAD; c += THREADS) {
      const int r = c / D_PAD, col = c % D_PAD;
      const std::int64_t g = first + r;
      const bool ok = g >= valid_lo && g < valid_hi && col < D && (row_ok == nullptr || row_ok[r]);
      tile[r * kStride + col] = ok ? base[g * row_stride + col] : detail::from_float<T>(0.f);
    }
  }
}

}  // namespace maskcheck::cuda::tc
