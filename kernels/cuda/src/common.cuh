// Device-side vocabulary shared by the CUDA kernels: storage types, fp32 conversions, warp and
// block reductions, launch checking, and the one runtime-dtype -> type dispatch.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "maskcheck/kernels/cuda.hpp"

namespace maskcheck::cuda::detail {

template <class T>
__device__ __forceinline__ float to_float(T x);
template <>
__device__ __forceinline__ float to_float<float>(float x) {
  return x;
}
template <>
__device__ __forceinline__ float to_float<__half>(__half x) {
  return __half2float(x);
}
template <>
__device__ __forceinline__ float to_float<__nv_bfloat16>(__nv_bfloat16 x) {
  return __bfloat162float(x);
}

template <class T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ float from_float<float>(float x) {
  return x;
}
template <>
__device__ __forceinline__ __half from_float<__half>(float x) {
  return __float2half_rn(x);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}

__device__ __forceinline__ float warp_max(float x) {
  for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
  return x;
}
__device__ __forceinline__ float warp_sum(float x) {
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}
// __shfl_xor_sync of any trivially copyable value (e.g. a TileBounds), 32 bits at a time, so
// that no field can be left behind.
template <class T>
__device__ __forceinline__ T shfl_xor(const T& x, int lane_mask) {
  static_assert(std::is_trivially_copyable_v<T> && sizeof(T) % sizeof(unsigned) == 0);
  unsigned w[sizeof(T) / sizeof(unsigned)];
  memcpy(w, &x, sizeof(T));
#pragma unroll
  for (auto& u : w) u = __shfl_xor_sync(0xffffffffu, u, lane_mask);
  T y;
  memcpy(&y, w, sizeof(T));
  return y;
}

// Block-wide reductions in a fixed order (deterministic). `scratch` holds >= 32 floats; every
// thread of the block must call; all get the result.
template <class Op>
__device__ __forceinline__ float block_reduce(float x, float* scratch, Op op, float identity) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int warps = (blockDim.x + 31) / 32;
  for (int o = 16; o > 0; o >>= 1) x = op(x, __shfl_xor_sync(0xffffffffu, x, o));
  __syncthreads();  // scratch may still be read by a previous reduction
  if (lane == 0) scratch[warp] = x;
  __syncthreads();
  x = lane < warps ? scratch[lane] : identity;
  for (int o = 16; o > 0; o >>= 1) x = op(x, __shfl_xor_sync(0xffffffffu, x, o));
  return x;
}
struct MaxOp {
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};
struct SumOp {
  __device__ float operator()(float a, float b) const { return a + b; }
};

// Checks the launch just made (configuration errors surface here, faults at the next sync).
inline void check_launch(const char* kernel) {
  check(cudaGetLastError(), kernel);
}

inline unsigned grid_for(std::int64_t n, int threads, std::int64_t cap = 65535ll * 16) {
  std::int64_t g = (n + threads - 1) / threads;
  if (g < 1) g = 1;
  return static_cast<unsigned>(g < cap ? g : cap);
}

}  // namespace maskcheck::cuda::detail

namespace maskcheck::cuda {

// The single runtime-dtype -> storage-type dispatch of the CUDA kernels.
template <class F>
decltype(auto) dispatch_cuda_dtype(DType t, F&& f) {
  require_cuda_dtype(t);
  switch (t) {
    case DType::f16:
      return f(__half{});
    case DType::bf16:
      return f(__nv_bfloat16{});
    default:
      return f(float{});
  }
}

}  // namespace maskcheck::cuda

// ---- 16-byte vector access and block-per-row launch planning --------------------------------
// (softmax.cu, cross_entropy.cu). A row [p, p + n) is swept as a scalar head up to the first
// 16-byte boundary, whole aligned 16-byte vectors, and a scalar tail, so that no element outside
// the row is ever touched.
namespace maskcheck::cuda::detail {

// Elements of T in one 16-byte vector.
template <class T>
inline constexpr int kVec16 = static_cast<int>(16 / sizeof(T));

struct Split16 {
  std::int64_t head = 0;  // scalars before the first 16-byte boundary
  std::int64_t vecs = 0;  // whole 16-byte vectors from p + head
  std::int64_t tail = 0;  // scalars after them; head + tail < 2 * vec
  // Offset from p of scalar item i in [0, head + tail).
  __host__ __device__ std::int64_t scalar_offset(std::int64_t i, int vec) const {
    return i < head ? i : i + vecs * vec;
  }
};

// p must be aligned to sizeof(T); n >= 0.
template <class T>
__host__ __device__ __forceinline__ Split16 split16(const T* p, std::int64_t n) {
  constexpr int vec = kVec16<T>;
  const auto mis = static_cast<int>((reinterpret_cast<std::uintptr_t>(p) % 16) / sizeof(T));
  Split16 s;
  s.head = mis == 0 ? 0 : vec - mis;
  if (s.head > n) s.head = n;
  s.vecs = (n - s.head) / vec;
  s.tail = n - s.head - s.vecs * vec;
  return s;
}

// 16 bytes <-> kVec16<T> floats (element 0 at the lowest address; round to nearest even).
template <class T>
__device__ __forceinline__ void unpack16(const uint4& u, float (&f)[kVec16<T>]) {
  if constexpr (std::is_same_v<T, float>) {
    f[0] = __uint_as_float(u.x);
    f[1] = __uint_as_float(u.y);
    f[2] = __uint_as_float(u.z);
    f[3] = __uint_as_float(u.w);
  } else {
    const std::uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      float2 t;
      if constexpr (std::is_same_v<T, __half>) {
        t = __half22float2(*reinterpret_cast<const __half2*>(&w[i]));
      } else {
        t = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&w[i]));
      }
      f[2 * i] = t.x;
      f[2 * i + 1] = t.y;
    }
  }
}
template <class T>
__device__ __forceinline__ uint4 pack16(const float (&f)[kVec16<T>]) {
  if constexpr (std::is_same_v<T, float>) {
    return make_uint4(__float_as_uint(f[0]), __float_as_uint(f[1]), __float_as_uint(f[2]),
                      __float_as_uint(f[3]));
  } else {
    std::uint32_t w[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      if constexpr (std::is_same_v<T, __half>) {
        const __half2 h = __floats2half2_rn(f[2 * i], f[2 * i + 1]);
        w[i] = *reinterpret_cast<const std::uint32_t*>(&h);
      } else {
        const __nv_bfloat162 h = __floats2bfloat162_rn(f[2 * i], f[2 * i + 1]);
        w[i] = *reinterpret_cast<const std::uint32_t*>(&h);
      }
    }
    return make_uint4(w[0], w[1], w[2], w[3]);
  }
}

// Loads through the read-only path; a last-use load (evict first); a streaming store (evict
// first: outputs should not push inputs that are read again out of L2).
__device__ __forceinline__ uint4 ld16(const uint4* p) {
  return __ldg(p);
}
__device__ __forceinline__ uint4 ld16_last(const uint4* p) {
  return __ldcs(p);
}
__device__ __forceinline__ void st16(uint4* p, const uint4& v) {
  __stcs(p, v);
}

// Asynchronous 16-byte global -> shared copy (sm_80+); waiting for its group makes it visible
// to this thread (other threads need a barrier as well).
__device__ __forceinline__ void cp_async16(uint4* smem, const uint4* gmem) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  const auto s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(s), "l"(gmem) : "memory");
#else
  *smem = *gmem;
#endif
}
// Closes a group of this thread's copies; cp_async_wait_pending(n) waits until at most n of its
// groups are still in flight (at most 7 for n >= 7: stricter, still correct).
__device__ __forceinline__ void cp_async_commit() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void cp_async_wait_pending(int n) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
#define MC_CP_ASYNC_WAIT(k) asm volatile("cp.async.wait_group " #k ";\n" ::: "memory")
  switch (n < 0 ? 0 : n) {
    case 0:
      MC_CP_ASYNC_WAIT(0);
      break;
    case 1:
      MC_CP_ASYNC_WAIT(1);
      break;
    case 2:
      MC_CP_ASYNC_WAIT(2);
      break;
    case 3:
      MC_CP_ASYNC_WAIT(3);
      break;
    case 4:
      MC_CP_ASYNC_WAIT(4);
      break;
    case 5:
      MC_CP_ASYNC_WAIT(5);
      break;
    case 6:
      MC_CP_ASYNC_WAIT(6);
      break;
    default:
      MC_CP_ASYNC_WAIT(7);
      break;
  }
#undef MC_CP_ASYNC_WAIT
#else
  (void)n;
#endif
}

// Writes +0.0 to p[0, n), shared among `size` cooperating threads (this one is `rank`).
template <class T>
__device__ __forceinline__ void fill_zero(T* p, std::int64_t n, int rank, int size) {
  if (n <= 0) return;
  const Split16 sp = split16(p, n);
  uint4* pv = reinterpret_cast<uint4*>(p + sp.head);
  for (std::int64_t v = rank; v < sp.vecs; v += size) st16(pv + v, make_uint4(0, 0, 0, 0));
  for (std::int64_t i = rank; i < sp.head + sp.tail; i += size)
    p[sp.scalar_offset(i, kVec16<T>)] = from_float<T>(0.0f);
}

// The current device's limits that launch planning needs, queried once per device and thread.
struct LaunchLimits {
  int sm_count = 0;
  int smem_per_block_optin = 0;  // largest dynamic + static shared memory of one block
  int smem_per_sm = 0;
};
inline LaunchLimits launch_limits() {
  thread_local int cached_device = -1;
  thread_local LaunchLimits cached;
  int dev = 0;
  check(cudaGetDevice(&dev), "cudaGetDevice");
  if (dev != cached_device) {
    LaunchLimits l;
    check(cudaDeviceGetAttribute(&l.sm_count, cudaDevAttrMultiProcessorCount, dev), "sm count");
    check(cudaDeviceGetAttribute(&l.smem_per_block_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin,
                                 dev),
          "shared memory per block");
    check(cudaDeviceGetAttribute(&l.smem_per_sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, dev),
          "shared memory per SM");
    cached = l;
    cached_device = dev;
  }
  return cached;
}

// Block-per-row plan for rows of at most `vecs` 16-byte vectors, each thread caching
// `reg_vecs` vectors in registers and the block caching `smem_vecs` more in shared memory
// (rows longer than that stream the rest twice). Up to 512 threads while the row fits in
// registers plus half an SM's shared memory (two blocks per SM overlap each other's
// reductions), 1024 threads with up to a whole block's shared memory beyond that.
struct RowPlan {
  int threads = 0;
  int smem_vecs = 0;
  std::size_t smem_bytes() const { return static_cast<std::size_t>(smem_vecs) * 16; }
};
inline RowPlan plan_block_rows(std::int64_t vecs, int reg_vecs, int min_threads, bool cache,
                               const LaunchLimits& lim) {
  constexpr std::int64_t kReserve = 2048;  // per block: static shared memory and the system's 1 KiB
  const std::int64_t per_thread = (vecs + reg_vecs - 1) / reg_vecs;
  std::int64_t t = (per_thread + 31) / 32 * 32;
  t = t < min_threads ? min_threads : (t > 512 ? 512 : t);
  RowPlan plan{static_cast<int>(t), 0};
  const std::int64_t rest = vecs - reg_vecs * t;
  if (!cache || rest <= 0) return plan;
  if (rest * 16 <= lim.smem_per_sm / 2 - kReserve) {
    plan.smem_vecs = static_cast<int>(rest);
    return plan;
  }
  plan.threads = 1024;
  const std::int64_t rest1024 = vecs - std::int64_t{reg_vecs} * 1024;
  const std::int64_t most = (lim.smem_per_block_optin - kReserve) / 16;
  const std::int64_t s = rest1024 < most ? rest1024 : most;
  plan.smem_vecs = static_cast<int>(s > 0 ? s : 0);
  return plan;
}

}  // namespace maskcheck::cuda::detail
