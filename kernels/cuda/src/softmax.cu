// Masked softmax over the last axis, the mask never materialized.
//   x, y: [B, H, Lq, Lk] (f32, f16 or bf16; y must not overlap x). Row (b, h, q) sees the keys
//   r = visible_keys(mask, b, q):
//   y[k] = exp(s_k - m) / sum_{j in r} exp(s_j - m), s = scale * x, m = max_{j in r} s_j, for k
//   in r; exactly +0.0 elsewhere and on rows with no visible key. Only x[r] is read.
// Arithmetic: fp32, in the log2 domain, on keys sign(scale) * x (exact): y = exp2f((key - m) * c)
// / sum with m the row's top key and c = |scale| log2 e, so that an exponent's error is relative to
// its distance from the top, not to |m * c| (exp2_scale.hpp).
// Complexity: O(B H Lq Lk) time; memory traffic = visible x read once (twice for the part of a
// row that does not fit on chip) + y written once.
// Versions (one kernel template, the row's group is a warp or a block):
//   1. warp per row (256-thread blocks, 8 rows at a time), the row cached in registers: 4
//      16-byte vectors per lane, so Lk <= 1024 for f16/bf16, 512 for f32.
//   2. block per row, 64-512 threads caching 4 vectors each in registers, the rest of the row in
//      dynamic shared memory filled by cp.async (two blocks per SM while the row fits in half an
//      SM's shared memory, then 1024 threads and a whole SM: 128k keys of f16/bf16 on H100).
//   3. the same kernel, rows longer than registers + shared memory: the rest of the row is read
//      once for the statistics and again, newest first (L2 hits), for the output.
// Each thread keeps an online (max, sum) over its elements; the group combines them in a fixed
// order (deterministic bits). 16-byte loads and stores; unaligned heads and tails (odd Lk, a
// range starting anywhere) go through scalar accesses, so nothing outside r is read.
#include <cmath>

#include "common.cuh"
#include "maskcheck/kernels/exp2_scale.hpp"

namespace maskcheck::cuda {
namespace {

using detail::kVec16;

constexpr int kRegVecs = 4;      // 16-byte vectors each thread caches in registers
constexpr int kWarpBlock = 256;  // threads per block of the warp-per-row version
constexpr int kMaxThreads = 1024;
constexpr int kAsyncChunk = 4;  // shared-memory slots per cp.async group

// The threads that share a row: one warp (warp per row) or the whole block. Reductions are
// butterflies in a fixed order, so every thread gets the same bits.
template <bool kWarp>
struct Group {
  int rank = 0, size = 0;
  float* scratch = nullptr;  // block: >= 32 floats
  __device__ float max(float v) const {
    if constexpr (kWarp) {
      return detail::warp_max(v);
    } else {
      return detail::block_reduce(v, scratch, detail::MaxOp{}, -INFINITY);
    }
  }
  __device__ float sum(float v) const {
    if constexpr (kWarp) {
      return detail::warp_sum(v);
    } else {
      return detail::block_reduce(v, scratch, detail::SumOp{}, 0.0f);
    }
  }
};

template <class T, bool kWarp>
__global__ void __launch_bounds__(kWarp ? kWarpBlock : kMaxThreads)
    masked_softmax_kernel(const MaskView mask, const std::int64_t H, const Exp2Scale sc,
                          const T* __restrict__ x, T* __restrict__ y, const int smem_vecs,
                          const bool out_aligned) {
  constexpr int kV = kVec16<T>;
  extern __shared__ uint4 cache[];  // block version: smem_vecs vectors
  __shared__ float scratch[32];

  const std::int64_t Lq = mask.Lq, Lk = mask.Lk;
  const std::int64_t rows = mask.B * H * Lq;
  const bool small = rows <= 0x7fffffff;  // 32-bit row -> (b, q) division
  Group<kWarp> g;
  g.scratch = scratch;
  std::int64_t row, stride;
  if constexpr (kWarp) {
    const int warps = blockDim.x / 32;
    g.rank = threadIdx.x % 32;
    g.size = 32;
    row = std::int64_t{blockIdx.x} * warps + threadIdx.x / 32;
    stride = std::int64_t{gridDim.x} * warps;
  } else {
    g.rank = threadIdx.x;
    g.size = blockDim.x;
    row = blockIdx.x;
    stride = gridDim.x;
  }
  // Vector v of a row lives in register slot v / size of thread v % size while v < R, in
  // cache[v - R] (same thread) while v < C, and is streamed beyond.
  const std::int64_t R = std::int64_t{kRegVecs} * g.size;
  const std::int64_t C = R + (kWarp ? 0 : smem_vecs);

  for (; row < rows; row += stride) {
    std::int64_t q, b;
    if (small) {
      const auto r32 = static_cast<std::uint32_t>(row);
      q = r32 % static_cast<std::uint32_t>(Lq);
      b = r32 / static_cast<std::uint32_t>(H * Lq);
    } else {
      q = row % Lq;
      b = row / (H * Lq);
    }
    const KeyRange r = visible_keys(mask, b, q);
    T* yr = y + row * Lk;
    if (r.empty()) {
      detail::fill_zero(yr, Lk, g.rank, g.size);
      continue;
    }
    detail::fill_zero(yr, r.begin, g.rank, g.size);
    detail::fill_zero(yr + r.end, Lk - r.end, g.rank, g.size);

    // x: [row, r.begin, r.end) = scalar head | nv aligned vectors | scalar tail
    const T* xs = x + row * Lk + r.begin;
    T* ys = yr + r.begin;
    const detail::Split16 sp = detail::split16(xs, r.size());
    const std::int64_t nv = sp.vecs;
    const uint4* xv = reinterpret_cast<const uint4*>(xs + sp.head);
    const std::int64_t shared_end = nv < C ? nv : C;

    // Pass 1: issue every load (shared slots asynchronously in groups of kAsyncChunk, then
    // registers, then the scalar item: head and tail hold < 32 elements, one per thread), then
    // accumulate, each shared group as soon as it has landed.
    int groups = 0;
    if constexpr (!kWarp) {
      int in_group = 0;
      for (std::int64_t v = R + g.rank; v < shared_end; v += g.size) {
        detail::cp_async16(cache + (v - R), xv + v);
        if (++in_group == kAsyncChunk) {
          detail::cp_async_commit();
          ++groups;
          in_group = 0;
        }
      }
      if (in_group > 0) {
        detail::cp_async_commit();
        ++groups;
      }
    }
    uint4 reg[kRegVecs];
#pragma unroll
    for (int i = 0; i < kRegVecs; ++i) {
      const std::int64_t v = g.rank + std::int64_t{i} * g.size;
      reg[i] = v < nv ? detail::ld16(xv + v) : make_uint4(0, 0, 0, 0);
    }
    const bool has_scalar = g.rank < sp.head + sp.tail;
    const std::int64_t s_off = has_scalar ? sp.scalar_offset(g.rank, kV) : 0;
    const float xsc = has_scalar ? detail::to_float(xs[s_off]) : 0.0f;

    OnlineExp2 st;
#pragma unroll
    for (int i = 0; i < kRegVecs; ++i) {
      if (g.rank + std::int64_t{i} * g.size < nv) {
        float f[kV];
        detail::unpack16<T>(reg[i], f);
        st.add(f, sc);
      }
    }
    if (has_scalar) {
      const float f[1] = {xsc};
      st.add(f, sc);
    }
    for (std::int64_t v = C + g.rank; v < nv; v += 2 * std::int64_t{g.size}) {
      const std::int64_t v1 = v + g.size;  // both loads in flight before either is used
      const uint4 u0 = detail::ld16(xv + v);
      const uint4 u1 = detail::ld16(xv + (v1 < nv ? v1 : v));
      float f[kV];
      detail::unpack16<T>(u0, f);
      st.add(f, sc);
      if (v1 < nv) {
        detail::unpack16<T>(u1, f);
        st.add(f, sc);
      }
    }
    if constexpr (!kWarp) {
      int done = 0, in_group = 0;
      for (std::int64_t v = R + g.rank; v < shared_end; v += g.size) {
        if (in_group == 0) detail::cp_async_wait_pending(groups - 1 - done);
        float f[kV];
        detail::unpack16<T>(cache[v - R], f);
        st.add(f, sc);
        if (++in_group == kAsyncChunk) {
          in_group = 0;
          ++done;
        }
      }
    }

    // Combine: the group's top, then every thread's sum rescaled to it.
    const float m = g.max(st.m);
    const float sum = g.sum(st.sum_at(m, sc));
    const float inv = 1.0f / sum;

    // Pass 2: y = 2^((key - m) c) / sum, from registers, shared memory, then the streamed vectors
    // newest first.
    uint4* yv = reinterpret_cast<uint4*>(ys + sp.head);
    auto emit = [&](std::int64_t v, const uint4& in) {
      float f[kV];
      detail::unpack16<T>(in, f);
#pragma unroll
      for (int k = 0; k < kV; ++k) f[k] = exp2f(sc.score_exponent(f[k], m)) * inv;
      if (out_aligned) {
        detail::st16(yv + v, detail::pack16<T>(f));
      } else {
#pragma unroll
        for (int k = 0; k < kV; ++k) ys[sp.head + v * kV + k] = detail::from_float<T>(f[k]);
      }
    };
#pragma unroll
    for (int i = 0; i < kRegVecs; ++i) {
      const std::int64_t v = g.rank + std::int64_t{i} * g.size;
      if (v < nv) emit(v, reg[i]);
    }
    if (has_scalar) ys[s_off] = detail::from_float<T>(exp2f(sc.score_exponent(xsc, m)) * inv);
    if constexpr (!kWarp) {
      for (std::int64_t v = R + g.rank; v < shared_end; v += g.size) emit(v, cache[v - R]);
    }
    if (C + g.rank < nv) {
      const std::int64_t last = C + g.rank + (nv - 1 - C - g.rank) / g.size * g.size;
      for (std::int64_t v = last; v >= C; v -= g.size) emit(v, detail::ld16_last(xv + v));
    }
  }
}

template <class T>
void launch_masked_softmax(const SoftmaxProblem& p, const MaskView& mask, const T* x, T* y,
                           cudaStream_t stream) {
  const std::int64_t rows = p.mask.B * p.H * p.mask.Lq;
  const std::int64_t vecs = p.mask.Lk / kVec16<T>;  // most whole vectors of any visible range
  const Exp2Scale sc = exp2_scale(p.scale);
  const bool out_aligned =
      (reinterpret_cast<std::uintptr_t>(x) - reinterpret_cast<std::uintptr_t>(y)) % 16 == 0;
  constexpr std::int64_t kMaxGrid = 2147483647;
  if (vecs <= std::int64_t{kRegVecs} * 32) {
    constexpr int kRowsPerBlock = kWarpBlock / 32;
    const std::int64_t blocks = (rows + kRowsPerBlock - 1) / kRowsPerBlock;
    masked_softmax_kernel<T, true>
        <<<static_cast<unsigned>(blocks < kMaxGrid ? blocks : kMaxGrid), kWarpBlock, 0, stream>>>(
            mask, p.H, sc, x, y, 0, out_aligned);
    detail::check_launch("masked_softmax_kernel<warp>");
    return;
  }
  const detail::RowPlan plan =
      detail::plan_block_rows(vecs, kRegVecs, 64, /*cache=*/true, detail::launch_limits());
  auto* kernel = &masked_softmax_kernel<T, false>;
  if (plan.smem_bytes() > 0) {  // past 48 KiB (with the static part) it needs the opt-in
    check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                               static_cast<int>(plan.smem_bytes())),
          "masked_softmax_kernel: shared memory");
    check(cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout,
                               cudaSharedmemCarveoutMaxShared),
          "masked_softmax_kernel: carveout");
  }
  kernel<<<static_cast<unsigned>(rows < kMaxGrid ? rows : kMaxGrid), plan.threads,
           plan.smem_bytes(), stream>>>(mask, p.H, sc, x, y, plan.smem_vecs, out_aligned);
  detail::check_launch("masked_softmax_kernel<block>");
}

}  // namespace

// x, y: [B, H, Lq, Lk] in dtype t.
void masked_softmax(const SoftmaxProblem& p, const MaskView& mask, DType t, const void* x, void* y,
                    cudaStream_t stream) {
  p.validate();
  require_cuda_dtype(t);
  require(mask.B == p.mask.B, "mask.B", mask.B, "must equal the problem's B");
  require(mask.Lq == p.mask.Lq, "mask.Lq", mask.Lq, "must equal the problem's Lq");
  require(mask.Lk == p.mask.Lk, "mask.Lk", mask.Lk, "must equal the problem's Lk");
  if (p.numel() == 0) return;
  if (x == nullptr) throw_invalid("x", "nullptr", "must point to B*H*Lq*Lk elements");
  if (y == nullptr) throw_invalid("y", "nullptr", "must point to B*H*Lq*Lk elements");
  dispatch_cuda_dtype(t, [&](auto tag) {
    using T = decltype(tag);
    launch_masked_softmax<T>(p, mask, static_cast<const T*>(x), static_cast<T*>(y), stream);
  });
}

}  // namespace maskcheck::cuda
