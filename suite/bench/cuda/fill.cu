// Device-side random fill: splitmix64 of (seed, index), one element per thread (grid-stride).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "fill.hpp"
#include "maskcheck/kernels/cuda.hpp"

namespace maskcheck::bench {

namespace {

__device__ __forceinline__ std::uint64_t splitmix(std::uint64_t seed, std::uint64_t i) {
  std::uint64_t z = seed + (i + 1) * 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// [0, 1) with 24 random bits (exact in fp32).
__device__ __forceinline__ float unit(std::uint64_t seed, std::uint64_t i) {
  return static_cast<float>(splitmix(seed, i) >> 40) * 0x1.0p-24f;
}

template <class T>
__device__ __forceinline__ T convert(float x);
template <>
__device__ __forceinline__ float convert<float>(float x) {
  return x;
}
template <>
__device__ __forceinline__ double convert<double>(float x) {
  return x;
}
template <>
__device__ __forceinline__ __half convert<__half>(float x) {
  return __float2half_rn(x);
}
template <>
__device__ __forceinline__ __nv_bfloat16 convert<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}

template <class T>
__global__ void fill_uniform_kernel(T* p, std::int64_t n, std::uint64_t seed, float lo,
                                    float span) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
    p[i] = convert<T>(lo + span * unit(seed, static_cast<std::uint64_t>(i)));
}

__global__ void fill_labels_kernel(std::int64_t* p, std::int64_t n, std::int64_t V,
                                   float ignore_frac, std::int64_t ignore_index,
                                   std::uint64_t seed) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::uint64_t r = splitmix(seed, static_cast<std::uint64_t>(i));
    const bool ignored = static_cast<float>(r >> 40) * 0x1.0p-24f < ignore_frac;
    p[i] = ignored
               ? ignore_index
               : static_cast<std::int64_t>((r & 0xFFFFFFFFFFull) % static_cast<std::uint64_t>(V));
  }
}

__global__ void fill_ids_kernel(std::int64_t* p, std::int64_t n, std::int64_t lo, std::int64_t span,
                                std::uint64_t seed) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
    p[i] = lo + static_cast<std::int64_t>(splitmix(seed, static_cast<std::uint64_t>(i)) %
                                          static_cast<std::uint64_t>(span));
}

constexpr int kThreads = 256;
unsigned blocks(std::int64_t n) {
  const std::int64_t b = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned>(b < 65536 ? (b > 0 ? b : 1) : 65536);
}

}  // namespace

void fill_uniform(void* p, DType t, std::int64_t n, std::uint64_t seed, double lo, double hi,
                  cudaStream_t stream) {
  if (n <= 0) return;
  const auto l = static_cast<float>(lo), s = static_cast<float>(hi - lo);
  switch (t) {
    case DType::f64:
      fill_uniform_kernel<<<blocks(n), kThreads, 0, stream>>>(static_cast<double*>(p), n, seed, l,
                                                              s);
      break;
    case DType::f32:
      fill_uniform_kernel<<<blocks(n), kThreads, 0, stream>>>(static_cast<float*>(p), n, seed, l,
                                                              s);
      break;
    case DType::f16:
      fill_uniform_kernel<<<blocks(n), kThreads, 0, stream>>>(static_cast<__half*>(p), n, seed, l,
                                                              s);
      break;
    case DType::bf16:
      fill_uniform_kernel<<<blocks(n), kThreads, 0, stream>>>(static_cast<__nv_bfloat16*>(p), n,
                                                              seed, l, s);
      break;
  }
  cuda::check(cudaGetLastError(), "fill_uniform");
}

void fill_labels(std::int64_t* p, std::int64_t n, std::int64_t V, double ignore_frac,
                 std::int64_t ignore_index, std::uint64_t seed, cudaStream_t stream) {
  if (n <= 0) return;
  fill_labels_kernel<<<blocks(n), kThreads, 0, stream>>>(p, n, V, static_cast<float>(ignore_frac),
                                                         ignore_index, seed);
  cuda::check(cudaGetLastError(), "fill_labels");
}

void fill_ids(std::int64_t* p, std::int64_t n, std::int64_t lo, std::int64_t hi, std::uint64_t seed,
              cudaStream_t stream) {
  if (n <= 0) return;
  fill_ids_kernel<<<blocks(n), kThreads, 0, stream>>>(p, n, lo, hi - lo, seed);
  cuda::check(cudaGetLastError(), "fill_ids");
}

}  // namespace maskcheck::bench
