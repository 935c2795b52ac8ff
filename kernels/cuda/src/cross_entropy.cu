// Cross-entropy forward + backward with ignore_index, token weights, label smoothing and
// reduction, deterministic bits.
//   logits: [N, V] (f32, f16 or bf16), labels: [N] int64, weights: [N] fp32 or none,
//   losses: [N] fp32, dlogits: [N, V] or none, totals: one LossTotals, all in device memory.
//   lse_i = log sum_j exp(x_ij);  l_i = (1 - eps)(lse_i - x_iy) + eps (lse_i - mean_j x_ij)
//   losses_i = w_i l_i (0 for ignored rows); loss = sum (none, sum) or sum / weight_sum (mean,
//   0 when the weight sum is 0); dlogits_ij = (softmax_ij - (1 - eps)[j == y_i] - eps / V) *
//   w_i / norm, norm = weight_sum for mean and 1 otherwise; 0 for ignored rows and when norm
//   is 0. A row whose label is ignore_index, or outside [0, V) (an error reported through
//   totals->bad_label_row), is never read.
// Arithmetic: fp32 in the log2 domain: p = exp2f((x - max) * log2 e) / sum, so the error of a
// probability's exponent is relative to its distance from the row's max, not to |max|, and the
// smoothing's mean_j x_j - max is a sum of the distances x_j - max (exp2_scale.hpp, OnlineLogits).
// Complexity: O(N V); memory traffic = logits of contributing rows read once (twice for the
// part of a row that does not fit on chip) + dlogits written once; O(N) for the reductions.
// Kernels, in stream order:
//   1. prepass: per-block (count, weight sum, first bad row) over fixed chunks of the labels.
//   2. totals: one block combines them in a fixed order; writes count, weight_sum,
//      bad_label_row and the gradient's norm (needed before any gradient is written).
//   3. rows: block per row (32-512 threads caching 4 16-byte vectors each in registers, the
//      rest of the row in shared memory through cp.async; 1024 threads and a whole SM's
//      shared memory for V = 128k f16/bf16 on H100; whatever does not fit is read again from
//      L2, newest first). One sweep for an online (max, sum of exp, sum of x - max), a
//      fixed-order block reduction, then the gradient from the cache.
//   4. loss partials over fixed chunks of `losses`, and 5. one block adding them in a fixed
//      order into totals->loss (no float atomics anywhere).
#include <cmath>
#include <cstdint>

#include "common.cuh"
#include "maskcheck/kernels/exp2_scale.hpp"

namespace maskcheck::cuda {
namespace {

using detail::kVec16;

constexpr int kRegVecs = 4;  // 16-byte vectors each thread caches in registers
constexpr int kMaxThreads = 1024;
constexpr int kAsyncChunk = 4;  // shared-memory slots per cp.async group
constexpr int kReduceThreads = 256;
constexpr std::int64_t kChunkRows = 4096;  // rows per block of the O(N) reductions
constexpr std::int64_t kMaxReduceBlocks = 1024;
constexpr std::int64_t kNoBadRow = INT64_MAX;
constexpr float kLn2 = 0.6931471805599453f;
// softmax(x): the logits have no scale (keys are the logits, c = log2 e).
__device__ __forceinline__ Exp2Scale unscaled() {
  return Exp2Scale{};
}

// The workspace: per-block partials of the two O(N) reductions and the gradient's norm.
struct Workspace {
  std::int64_t* count = nullptr;  // [blocks]
  std::int64_t* bad = nullptr;    // [blocks]
  float* weight_sum = nullptr;    // [blocks]
  float* loss = nullptr;          // [blocks]
  float* norm = nullptr;          // [1]
};

std::int64_t reduce_blocks(std::int64_t n) {
  const std::int64_t b = (n + kChunkRows - 1) / kChunkRows;
  return b < 1 ? 1 : (b > kMaxReduceBlocks ? kMaxReduceBlocks : b);
}
std::size_t workspace_bytes(std::int64_t blocks) {
  const auto b = static_cast<std::size_t>(blocks);
  return (b * (8 + 8 + 4 + 4) + 4 + 255) / 256 * 256;
}
Workspace workspace_layout(void* base, std::int64_t blocks) {
  auto* p = static_cast<char*>(base);
  Workspace w;
  w.count = reinterpret_cast<std::int64_t*>(p);
  w.bad = reinterpret_cast<std::int64_t*>(p + 8 * blocks);
  w.weight_sum = reinterpret_cast<float*>(p + 16 * blocks);
  w.loss = reinterpret_cast<float*>(p + 20 * blocks);
  w.norm = reinterpret_cast<float*>(p + 24 * blocks);
  return w;
}

// Block reduction of any shuffleable type, fixed order (the float one is detail::block_reduce).
template <class V, class Op>
__device__ __forceinline__ V block_reduce_any(V x, V* scratch, Op op, V identity) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int warps = (blockDim.x + 31) / 32;
  for (int o = 16; o > 0; o >>= 1) x = op(x, __shfl_xor_sync(0xffffffffu, x, o));
  __syncthreads();
  if (lane == 0) scratch[warp] = x;
  __syncthreads();
  x = lane < warps ? scratch[lane] : identity;
  for (int o = 16; o > 0; o >>= 1) x = op(x, __shfl_xor_sync(0xffffffffu, x, o));
  return x;
}
struct SumI64 {
  __device__ std::int64_t operator()(std::int64_t a, std::int64_t b) const { return a + b; }
};
struct MinI64 {
  __device__ std::int64_t operator()(std::int64_t a, std::int64_t b) const { return a < b ? a : b; }
};

// 1. labels: [N]; weights: [N] or nullptr. Block b covers rows [b chunk, (b + 1) chunk).
__global__ void __launch_bounds__(kReduceThreads)
    ce_prepass_kernel(const std::int64_t N, const std::int64_t V, const std::int64_t ignore_index,
                      const std::int64_t* __restrict__ labels, const float* __restrict__ weights,
                      const std::int64_t chunk, const Workspace ws) {
  __shared__ std::int64_t s64[32];
  __shared__ float s32[32];
  const std::int64_t lo = std::int64_t{blockIdx.x} * chunk;
  const std::int64_t hi = lo + chunk < N ? lo + chunk : N;
  std::int64_t count = 0, bad = kNoBadRow;
  float wsum = 0.0f;
  for (std::int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x) {
    const std::int64_t y = labels[i];
    if (y >= 0 && y < V) {
      ++count;
      wsum += weights ? weights[i] : 1.0f;
    } else if (y != ignore_index && bad == kNoBadRow) {
      bad = i;  // this thread's rows ascend: the first is its smallest
    }
  }
  count = block_reduce_any(count, s64, SumI64{}, std::int64_t{0});
  bad = block_reduce_any(bad, s64, MinI64{}, kNoBadRow);
  wsum = detail::block_reduce(wsum, s32, detail::SumOp{}, 0.0f);
  if (threadIdx.x == 0) {
    ws.count[blockIdx.x] = count;
    ws.bad[blockIdx.x] = bad;
    ws.weight_sum[blockIdx.x] = wsum;
  }
}

// 2. One block: the prepass partials -> totals (count, weight_sum, bad_label_row) and the norm.
__global__ void __launch_bounds__(kReduceThreads)
    ce_totals_kernel(const int blocks, const Workspace ws, const bool mean,
                     LossTotals* __restrict__ totals) {
  __shared__ std::int64_t s64[32];
  __shared__ float s32[32];
  std::int64_t count = 0, bad = kNoBadRow;
  float wsum = 0.0f;
  for (int b = threadIdx.x; b < blocks; b += blockDim.x) {
    count += ws.count[b];
    bad = ws.bad[b] < bad ? ws.bad[b] : bad;
    wsum += ws.weight_sum[b];
  }
  count = block_reduce_any(count, s64, SumI64{}, std::int64_t{0});
  bad = block_reduce_any(bad, s64, MinI64{}, kNoBadRow);
  wsum = detail::block_reduce(wsum, s32, detail::SumOp{}, 0.0f);
  if (threadIdx.x == 0) {
    totals->loss = 0.0f;  // kernel 5 writes it
    totals->weight_sum = wsum;
    totals->count = count;
    totals->bad_label_row = bad == kNoBadRow ? -1 : bad;
    *ws.norm = mean ? wsum : 1.0f;
  }
}

template <class T>
struct RowArgs {
  std::int64_t N = 0, V = 1;
  float eps = 0.0f;
  const T* logits = nullptr;             // [N, V]
  const std::int64_t* labels = nullptr;  // [N]
  const float* weights = nullptr;        // [N] or nullptr
  float* losses = nullptr;               // [N]
  T* dlogits = nullptr;                  // [N, V] or nullptr
  const float* norm = nullptr;           // written by ce_totals_kernel
  const float* grad_output = nullptr;    // [N] (per_row) or [1], or nullptr: ones
  bool per_row = false;                  // reduction none: grad_output[i] for row i
  int smem_vecs = 0;
  bool out_aligned = true;  // dlogits - logits is a multiple of 16 bytes
};

// 3. Block per row i (grid-stride). Vector v of the row lives in register slot v / size of
// thread v % size while v < R, in cache[v - R] (same thread) while v < C, streamed beyond.
template <class T>
__global__ void __launch_bounds__(kMaxThreads) cross_entropy_rows_kernel(const RowArgs<T> a) {
  constexpr int kV = kVec16<T>;
  extern __shared__ uint4 cache[];
  __shared__ float scratch[32];
  const int rank = threadIdx.x, size = blockDim.x;
  const std::int64_t V = a.V;
  const std::int64_t R = std::int64_t{kRegVecs} * size;
  const std::int64_t C = R + a.smem_vecs;
  const float norm = *a.norm;

  for (std::int64_t i = blockIdx.x; i < a.N; i += gridDim.x) {
    const std::int64_t label = a.labels[i];
    T* gr = a.dlogits != nullptr ? a.dlogits + i * V : nullptr;
    if (label < 0 || label >= V) {  // ignore_index (outside [0, V) by validation) or a bad label
      if (rank == 0) a.losses[i] = 0.0f;
      if (gr != nullptr) detail::fill_zero(gr, V, rank, size);
      continue;
    }
    const T* xr = a.logits + i * V;
    const float w = a.weights != nullptr ? a.weights[i] : 1.0f;
    const float x_label = rank == 0 ? detail::to_float(xr[label]) : 0.0f;

    // row = scalar head | nv aligned vectors | scalar tail (< 32 scalars: one per thread)
    const detail::Split16 sp = detail::split16(xr, V);
    const std::int64_t nv = sp.vecs;
    const uint4* xv = reinterpret_cast<const uint4*>(xr + sp.head);
    const std::int64_t shared_end = nv < C ? nv : C;

    // Pass 1: issue every load (shared slots asynchronously in groups of kAsyncChunk, then
    // registers, then the scalar item), then accumulate, each shared group once it has landed.
    int groups = 0;
    {
      int in_group = 0;
      for (std::int64_t v = R + rank; v < shared_end; v += size) {
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
    for (int k = 0; k < kRegVecs; ++k) {
      const std::int64_t v = rank + std::int64_t{k} * size;
      reg[k] = v < nv ? detail::ld16(xv + v) : make_uint4(0, 0, 0, 0);
    }
    const bool has_scalar = rank < sp.head + sp.tail;
    const std::int64_t s_off = has_scalar ? sp.scalar_offset(rank, kV) : 0;
    const float xsc = has_scalar ? detail::to_float(xr[s_off]) : 0.0f;

    OnlineLogits st;
#pragma unroll
    for (int k = 0; k < kRegVecs; ++k) {
      if (rank + std::int64_t{k} * size < nv) {
        float f[kV];
        detail::unpack16<T>(reg[k], f);
        st.add(f);
      }
    }
    if (has_scalar) {
      const float f[1] = {xsc};
      st.add(f);
    }
    for (std::int64_t v = C + rank; v < nv; v += 2 * std::int64_t{size}) {
      const std::int64_t v1 = v + size;  // both loads in flight before either is used
      const uint4 u0 = detail::ld16(xv + v);
      const uint4 u1 = detail::ld16(xv + (v1 < nv ? v1 : v));
      float f[kV];
      detail::unpack16<T>(u0, f);
      st.add(f);
      if (v1 < nv) {
        detail::unpack16<T>(u1, f);
        st.add(f);
      }
    }
    {
      int done = 0, in_group = 0;
      for (std::int64_t v = R + rank; v < shared_end; v += size) {
        if (in_group == 0) detail::cp_async_wait_pending(groups - 1 - done);
        float f[kV];
        detail::unpack16<T>(cache[v - R], f);
        st.add(f);
        if (++in_group == kAsyncChunk) {
          in_group = 0;
          ++done;
        }
      }
    }

    // Combine in a fixed order: max, then the sums rescaled to it.
    const float m = detail::block_reduce(st.e.m, scratch, detail::MaxOp{}, -INFINITY);
    const float sum =
        detail::block_reduce(st.e.sum_at(m, unscaled()), scratch, detail::SumOp{}, 0.0f);
    const float dist = detail::block_reduce(st.distance_at(m), scratch, detail::SumOp{}, 0.0f);
    // lse = m + ln 2 log2(sum); lse - x = ln 2 (log2(sum) - (x - m) log2 e).
    if (rank == 0) {
      const float lg = log2f(sum);
      const float nll = kLn2 * (lg - unscaled().score_exponent(x_label, m));
      const float smooth = kLn2 * (lg - dist / static_cast<float>(V) * unscaled().c);
      a.losses[i] = w * ((1.0f - a.eps) * nll + a.eps * smooth);
    }
    if (gr == nullptr) continue;
    if (norm == 0.0f) {  // mean over zero weight: every gradient is 0
      detail::fill_zero(gr, V, rank, size);
      continue;
    }

    // Pass 2: dlogits = (2^((x - m) log2 e) / sum - target) * w * g / norm (g the upstream
    // gradient, read only here: never for ignored rows), from registers, shared memory, then the
    // streamed vectors newest first.
    const float inv = 1.0f / sum;
    const float up = a.grad_output != nullptr ? a.grad_output[a.per_row ? i : 0] : 1.0f;
    const float coef = w * up / norm;
    const float t_other = a.eps / static_cast<float>(V);
    const float t_label = (1.0f - a.eps) + t_other;
    auto grad = [&](float x, float target) {
      return (exp2f(unscaled().score_exponent(x, m)) * inv - target) * coef;
    };
    T* gs = gr + sp.head;
    uint4* gv = reinterpret_cast<uint4*>(gs);
    // Column of vector v's element k: sp.head + v * kV + k (V < 2^31: 32-bit arithmetic).
    const int label_rel = static_cast<int>(label - sp.head);
    auto emit = [&](std::int64_t v, const uint4& in) {
      float x[kV], f[kV];
      detail::unpack16<T>(in, x);
#pragma unroll
      for (int k = 0; k < kV; ++k) f[k] = grad(x[k], t_other);
      const int hit = label_rel - static_cast<int>(v) * kV;  // the label's slot, if in [0, kV)
      if (static_cast<unsigned>(hit) < static_cast<unsigned>(kV)) {
#pragma unroll
        for (int k = 0; k < kV; ++k)
          if (k == hit) f[k] = grad(x[k], t_label);
      }
      if (a.out_aligned) {
        detail::st16(gv + v, detail::pack16<T>(f));
      } else {
#pragma unroll
        for (int k = 0; k < kV; ++k) gs[v * kV + k] = detail::from_float<T>(f[k]);
      }
    };
#pragma unroll
    for (int k = 0; k < kRegVecs; ++k) {
      const std::int64_t v = rank + std::int64_t{k} * size;
      if (v < nv) emit(v, reg[k]);
    }
    if (has_scalar)
      gr[s_off] = detail::from_float<T>(grad(xsc, s_off == label ? t_label : t_other));
    for (std::int64_t v = R + rank; v < shared_end; v += size) emit(v, cache[v - R]);
    if (C + rank < nv) {
      const std::int64_t last = C + rank + (nv - 1 - C - rank) / size * size;
      for (std::int64_t v = last; v >= C; v -= size) emit(v, detail::ld16_last(xv + v));
    }
  }
}

// 4. losses: [N]; block b adds rows [b chunk, (b + 1) chunk) in a fixed order.
__global__ void __launch_bounds__(kReduceThreads)
    ce_loss_partials_kernel(const std::int64_t N, const std::int64_t chunk,
                            const float* __restrict__ losses, const Workspace ws) {
  __shared__ float s32[32];
  const std::int64_t lo = std::int64_t{blockIdx.x} * chunk;
  const std::int64_t hi = lo + chunk < N ? lo + chunk : N;
  float sum = 0.0f;
  for (std::int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x) sum += losses[i];
  sum = detail::block_reduce(sum, s32, detail::SumOp{}, 0.0f);
  if (threadIdx.x == 0) ws.loss[blockIdx.x] = sum;
}

// 5. One block: the loss partials -> totals->loss (divided by the weight sum for mean).
__global__ void __launch_bounds__(kReduceThreads)
    ce_loss_total_kernel(const int blocks, const Workspace ws, const bool mean,
                         LossTotals* __restrict__ totals) {
  __shared__ float s32[32];
  float sum = 0.0f;
  for (int b = threadIdx.x; b < blocks; b += blockDim.x) sum += ws.loss[b];
  sum = detail::block_reduce(sum, s32, detail::SumOp{}, 0.0f);
  if (threadIdx.x == 0) {
    const float wsum = totals->weight_sum;
    totals->loss = mean ? (wsum > 0.0f ? sum / wsum : 0.0f) : sum;
  }
}

template <class T>
void launch_rows(const LossProblem& p, const T* logits, const std::int64_t* labels,
                 const float* weights, float* losses, T* dlogits, const float* grad_output,
                 const float* norm, cudaStream_t stream) {
  RowArgs<T> a;
  a.N = p.N;
  a.V = p.V;
  a.eps = static_cast<float>(p.label_smoothing);
  a.logits = logits;
  a.labels = labels;
  a.weights = p.weighted ? weights : nullptr;
  a.losses = losses;
  a.dlogits = dlogits;
  a.norm = norm;
  a.grad_output = dlogits != nullptr ? grad_output : nullptr;
  a.per_row = p.reduction == Reduction::none;
  a.out_aligned =
      dlogits == nullptr ||
      (reinterpret_cast<std::uintptr_t>(logits) - reinterpret_cast<std::uintptr_t>(dlogits)) % 16 ==
          0;
  // The gradient re-reads the row: cache it on chip; the forward alone streams it once.
  const detail::RowPlan plan = detail::plan_block_rows(p.V / kVec16<T>, kRegVecs, 32,
                                                       dlogits != nullptr, detail::launch_limits());
  a.smem_vecs = plan.smem_vecs;
  auto* kernel = &cross_entropy_rows_kernel<T>;
  if (plan.smem_bytes() > 0) {  // past 48 KiB (with the static part) it needs the opt-in
    check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                               static_cast<int>(plan.smem_bytes())),
          "cross_entropy_rows_kernel: shared memory");
    check(cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout,
                               cudaSharedmemCarveoutMaxShared),
          "cross_entropy_rows_kernel: carveout");
  }
  constexpr std::int64_t kMaxGrid = 2147483647;
  kernel<<<static_cast<unsigned>(p.N < kMaxGrid ? p.N : kMaxGrid), plan.threads, plan.smem_bytes(),
           stream>>>(a);
  detail::check_launch("cross_entropy_rows_kernel");
}

}  // namespace

std::size_t cross_entropy_workspace_bytes(const LossProblem& p) {
  p.validate();
  return workspace_bytes(reduce_blocks(p.N));
}

// logits: [N, V] dtype t; labels: [N]; weights: [N] or nullptr; losses: [N]; dlogits: [N, V] or
// nullptr; totals: [1]; workspace: cross_entropy_workspace_bytes(p) bytes.
void cross_entropy(const LossProblem& p, DType t, const void* logits, const std::int64_t* labels,
                   const float* weights, float* losses, void* dlogits, LossTotals* totals,
                   void* workspace, cudaStream_t stream) {
  cross_entropy(p, t, logits, labels, weights, losses, dlogits, nullptr, totals, workspace, stream);
}

// The same with an upstream gradient: grad_output [N] (reduction none) or [1], or nullptr.
void cross_entropy(const LossProblem& p, DType t, const void* logits, const std::int64_t* labels,
                   const float* weights, float* losses, void* dlogits, const float* grad_output,
                   LossTotals* totals, void* workspace, cudaStream_t stream) {
  p.validate();
  require_cuda_dtype(t);
  if (totals == nullptr) throw_invalid("totals", "nullptr", "must point to a device LossTotals");
  if (workspace == nullptr)
    throw_invalid("workspace", "nullptr", "must hold cross_entropy_workspace_bytes(p) bytes");
  if (reinterpret_cast<std::uintptr_t>(workspace) % 16 != 0)
    throw_invalid("workspace", "misaligned pointer", "must be 16-byte aligned");
  if (p.N > 0) {
    if (logits == nullptr) throw_invalid("logits", "nullptr", "must point to N*V elements");
    if (labels == nullptr) throw_invalid("labels", "nullptr", "must point to N labels");
    if (losses == nullptr) throw_invalid("losses", "nullptr", "must point to N floats");
    if (p.weighted && weights == nullptr)
      throw_invalid("weights", "nullptr", "must point to N floats when weighted");
  }
  if (grad_output != nullptr && dlogits == nullptr)
    throw_invalid("grad_output", "a pointer", "needs dlogits (it is the backward's input)");
  const std::int64_t blocks = reduce_blocks(p.N);
  const std::int64_t chunk = p.N > 0 ? (p.N + blocks - 1) / blocks : 1;
  const Workspace ws = workspace_layout(workspace, blocks);
  const bool mean = p.reduction == Reduction::mean;
  const float* w = p.weighted ? weights : nullptr;

  ce_prepass_kernel<<<static_cast<unsigned>(blocks), kReduceThreads, 0, stream>>>(
      p.N, p.V, p.ignore_index, labels, w, chunk, ws);
  detail::check_launch("ce_prepass_kernel");
  ce_totals_kernel<<<1, kReduceThreads, 0, stream>>>(static_cast<int>(blocks), ws, mean, totals);
  detail::check_launch("ce_totals_kernel");
  if (p.N > 0) {
    dispatch_cuda_dtype(t, [&](auto tag) {
      using T = decltype(tag);
      launch_rows<T>(p, static_cast<const T*>(logits), labels, w, losses, static_cast<T*>(dlogits),
                     grad_output, ws.norm, stream);
    });
  }
  ce_loss_partials_kernel<<<static_cast<unsigned>(blocks), kReduceThreads, 0, stream>>>(p.N, chunk,
                                                                                        losses, ws);
  detail::check_launch("ce_loss_partials_kernel");
  ce_loss_total_kernel<<<1, kReduceThreads, 0, stream>>>(static_cast<int>(blocks), ws, mean,
                                                         totals);
  detail::check_launch("ce_loss_total_kernel");
}

}  // namespace maskcheck::cuda
