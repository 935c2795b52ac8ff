// BERT-style MLM masking on the GPU, bit-identical to ref::mlm_mask (reference/src/mlm.cpp).
//   ids, keep, special, continuation (whole_word only): [B, L] -> ids_out, labels: [B, L]
// Token t of sequence b, first = its first keep position, i = t - first:
//   start(t)  = t, or with whole_word max(first, last position <= t that is not a continuation)
//   selected  = keep && !special && Philox(start(t) - first, b).x < select
//   selected: labels = ids, ids_out = mask_id / uniform token / ids by Philox(i, b).y, .z
//   else:     labels = ignore_index, ids_out = ids
// max_predictions > 0 then keeps, per sequence over the cap, the words of smallest
// (Philox(start).x, start) that still fit, greedily, as the reference does.
// Complexity: O(B L) work and one read + one write of every token without the cap (about 26 bytes
// a token: memory-bound); the cap adds O(L log L) per capped sequence.
//
// Versions, naive to fast:
//   v1 a thread per sequence, the reference's loops                  (B threads: far too few)
//   v2 a thread per token, first keep and word start by walking back  (O(L) per token)
//   v3 (this) a tile of 2048 consecutive tokens per block, 8 per thread: first keep and word
//      start are one segmented block scan over the tile (key = sequence, min keep position,
//      max non-continuation position); the carry from earlier tiles of the tile's first sequence
//      is looked up directly (a forward search for its first keep, a backward one for the word
//      the tile starts inside), so the common path is a single kernel with no workspace. With a
//      cap the first kernel also writes each token's word index; a second kernel, a block per
//      sequence, skips sequences under the cap and otherwise compacts the words, sorts them
//      (shared-memory bitonic sort of 2048-word chunks, then merge passes) and applies the greedy
//      rule, unselecting the tokens of dropped words.
#include <climits>

#include "common.cuh"

namespace maskcheck::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kItems = 8;                 // consecutive tokens per thread
constexpr int kTile = kThreads * kItems;  // tokens per block
constexpr int kSearchItems = 8;           // bytes per thread per step of the carry searches
constexpr int kNoKeep = INT_MAX;          // "no keep position yet" (min-combined)
constexpr int kCapThreads = 256;
constexpr int kCapItems = 8;      // tokens per thread per step of the compaction
constexpr int kSortChunk = 2048;  // words sorted in shared memory at once

struct MlmArgs {
  const std::int64_t* ids;
  const std::uint8_t* keep;
  const std::uint8_t* special;
  const std::uint8_t* continuation;  // nullptr unless whole_word
  std::int64_t* ids_out;
  std::int64_t* labels;
  std::int32_t* word;  // [B, L] start(t) - first of selected tokens, -1 elsewhere (cap only)
  std::int64_t n, L, V, mask_id, ignore_index;
  std::uint64_t seed;
  MlmThresholds th;
};

// ---- segmented scan over the tile ------------------------------------------------------------

// Running state of the scan: the sequence (row in the tile, -1 for the identity), the first keep
// position and the last non-continuation position seen in that sequence so far (positions within
// the sequence).
struct Scan {
  int row, fk, lnc;
};
__device__ __forceinline__ Scan scan_identity() {
  return Scan{-1, kNoKeep, -1};
}
// a then b (b later in the tile). Associative, with scan_identity() as identity on both sides.
__device__ __forceinline__ Scan combine(Scan a, Scan b) {
  if (b.row < 0) return a;
  if (b.row != a.row) return b;
  return Scan{b.row, min(a.fk, b.fk), max(a.lnc, b.lnc)};
}
__device__ __forceinline__ Scan shfl_up(Scan s, int d) {
  return Scan{__shfl_up_sync(0xffffffffu, s.row, d), __shfl_up_sync(0xffffffffu, s.fk, d),
              __shfl_up_sync(0xffffffffu, s.lnc, d)};
}

// First index in [lo, hi) of `row` holding a nonzero byte, or kNoKeep. Block-wide (every thread
// calls with the same arguments); coalesced byte loads, stops at the first step that finds one.
__device__ __forceinline__ int block_first_nonzero(const std::uint8_t* row, int lo, int hi,
                                                   int* s_result) {
  for (std::int64_t base = lo; base < hi; base += kThreads * kSearchItems) {
    __syncthreads();  // s_result may still be read by a previous step or search
    if (threadIdx.x == 0) *s_result = kNoKeep;
    __syncthreads();
    int best = kNoKeep;
#pragma unroll
    for (int u = kSearchItems - 1; u >= 0; --u) {
      const std::int64_t i = base + u * kThreads + threadIdx.x;
      if (i < hi && row[i] != 0) best = static_cast<int>(i);
    }
    if (best != kNoKeep) atomicMin(s_result, best);
    __syncthreads();
    const int r = *s_result;
    if (r != kNoKeep) return r;
  }
  return kNoKeep;
}

// Last index in [lo, hi) of `row` holding a zero byte, or -1. Block-wide, searching backwards.
__device__ __forceinline__ int block_last_zero(const std::uint8_t* row, int lo, int hi,
                                               int* s_result) {
  for (std::int64_t top = hi; top > lo; top -= kThreads * kSearchItems) {
    __syncthreads();
    if (threadIdx.x == 0) *s_result = -1;
    __syncthreads();
    int best = -1;
#pragma unroll
    for (int u = kSearchItems - 1; u >= 0; --u) {
      const std::int64_t i = top - 1 - (u * kThreads + threadIdx.x);
      if (i >= lo && row[i] == 0) best = static_cast<int>(i);
    }
    if (best >= 0) atomicMax(s_result, best);
    __syncthreads();
    const int r = *s_result;
    if (r >= 0) return r;
  }
  return -1;
}

// ---- vector loads and stores of a thread's 8 tokens ------------------------------------------

__device__ __forceinline__ void prefetch_l2(const void* p) {
  asm volatile("prefetch.global.L2 [%0];" ::"l"(p));
}
__device__ __forceinline__ std::uint64_t load_bytes(const std::uint8_t* p) {
  return *reinterpret_cast<const std::uint64_t*>(p);
}
__device__ __forceinline__ bool byte_of(std::uint64_t bytes, int e) {
  return ((bytes >> (8 * e)) & 0xffu) != 0;
}

// ---- the common path -------------------------------------------------------------------------

// A block per tile of kTile consecutive tokens of the flattened [B, L] input; thread k owns tokens
// [8k, 8k + 8) of the tile. kVec: every pointer allows 16-byte (ids) / 8-byte (flags) accesses.
template <bool kWholeWord, bool kCap, bool kVec>
__global__ void __launch_bounds__(kThreads, 4) mlm_select_kernel(MlmArgs a) {
  __shared__ Scan s_warp[kThreads / 32];
  __shared__ int s_search;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const std::int64_t g0 = static_cast<std::int64_t>(blockIdx.x) * kTile;
  const std::int64_t b0 = g0 / a.L;         // sequence of the tile's first token
  const std::int64_t pos0 = g0 - b0 * a.L;  // its position in that sequence
  const std::int64_t t0 = g0 + static_cast<std::int64_t>(threadIdx.x) * kItems;
  const bool full = t0 + kItems <= a.n;

  // This thread's tokens: sequence (row relative to b0) and position of the first one.
  const auto L32 = static_cast<std::uint32_t>(a.L);
  const std::uint32_t off = static_cast<std::uint32_t>(pos0) + threadIdx.x * kItems;
  const int row0 = static_cast<int>(off / L32);
  const int p0 = static_cast<int>(off - static_cast<std::uint32_t>(row0) * L32);

  // The ids are read only after the scan (holding 8 of them through it costs 16 registers and
  // an occupancy step); prefetching them into L2 now keeps DRAM busy meanwhile.
  std::uint64_t kp = 0, sp = 0, ct = 0;  // byte e = flag of token e
  if (kVec && full) {
    prefetch_l2(a.ids + t0);
    prefetch_l2(a.ids + t0 + 4);
    kp = load_bytes(a.keep + t0);
    sp = load_bytes(a.special + t0);
    if constexpr (kWholeWord) ct = load_bytes(a.continuation + t0);
  } else {
#pragma unroll
    for (int e = 0; e < kItems; ++e) {
      const std::int64_t t = t0 + e;
      if (t < a.n) {
        kp |= static_cast<std::uint64_t>(a.keep[t] != 0) << (8 * e);
        sp |= static_cast<std::uint64_t>(a.special[t] != 0) << (8 * e);
        if constexpr (kWholeWord)
          ct |= static_cast<std::uint64_t>(a.continuation[t] != 0) << (8 * e);
      } else if constexpr (kWholeWord) {
        ct |= std::uint64_t{1} << (8 * e);  // past the end: neutral (a continuation, no keep)
      }
    }
  }
  if constexpr (!kWholeWord) ct = ~std::uint64_t{0};  // every token "continues": lnc unused

  // Scan element of token e: its row, its position if kept, its position if not a continuation.
  auto element = [&](int e, int row, int pos) {
    return Scan{row, byte_of(kp, e) ? pos : kNoKeep, byte_of(ct, e) ? -1 : pos};
  };

  // Thread aggregate, and whether a token of the tile's first sequence is kept.
  Scan agg = scan_identity();
  bool keep_in_row0 = false;
  {
    int row = row0, pos = p0;
#pragma unroll
    for (int e = 0; e < kItems; ++e) {
      agg = combine(agg, element(e, row, pos));
      keep_in_row0 |= row == 0 && byte_of(kp, e);
      if (++pos == static_cast<int>(L32)) {
        pos = 0;
        ++row;
      }
    }
  }

  // Carry from the part of the first sequence before the tile: its first keep position and, when
  // the tile starts inside a word, the start of that word. Only needed when the tile holds a kept
  // token of that sequence; both searches stop at what they look for.
  Scan carry = scan_identity();
  if (pos0 > 0 && __syncthreads_or(keep_in_row0)) {
    const std::int64_t row_start = b0 * a.L;
    // Usually the sequence's first position is kept (right padding): no search, no barrier.
    const int fk = a.keep[row_start] != 0 ? 0
                                          : block_first_nonzero(a.keep + row_start, 1,
                                                                static_cast<int>(pos0), &s_search);
    if (fk != kNoKeep) {
      int lnc = -1;
      if constexpr (kWholeWord) {
        const std::uint8_t* cont = a.continuation + row_start;
        if (cont[pos0] != 0) lnc = block_last_zero(cont, fk + 1, static_cast<int>(pos0), &s_search);
      }
      carry = Scan{0, fk, lnc};
    }
  }

  // Block exclusive scan of the thread aggregates, started from the carry.
  Scan incl = agg;
#pragma unroll
  for (int d = 1; d < 32; d <<= 1) {
    const Scan up = shfl_up(incl, d);
    if (lane >= d) incl = combine(up, incl);
  }
  Scan excl = shfl_up(incl, 1);
  if (lane == 0) excl = scan_identity();
  if (lane == 31) s_warp[warp] = incl;
  __syncthreads();
  Scan run = carry;
  for (int w = 0; w < warp; ++w) run = combine(run, s_warp[w]);
  run = combine(run, excl);

  // Per token: select, draw, write (a pair of tokens at a time, to keep few registers live).
  const bool vec_store = kVec && full;
  std::int64_t id[2], out[2], lab[2];
  int word[2];
  {
    int row = row0, pos = p0;
#pragma unroll
    for (int e = 0; e < kItems; ++e) {
      run = combine(run, element(e, row, pos));
      bool selected = false;
      U32x4 d{0u, 0u, 0u, 0u};
      int ws = 0;
      if (byte_of(kp, e) && !byte_of(sp, e)) {
        const int first = run.fk;  // <= pos: this token is kept
        const auto seq = static_cast<std::uint32_t>(b0 + row);
        ws = kWholeWord ? max(first, run.lnc) : pos;
        d = mlm_draw(a.seed, seq, static_cast<std::uint32_t>(ws - first));
        selected = d.x < a.th.select;
        if (kWholeWord && selected && ws != pos)
          d = mlm_draw(a.seed, seq, static_cast<std::uint32_t>(pos - first));
        ws -= first;
      }
      const int h = e % 2;
      if (h == 0) {  // the pair's ids
        const std::int64_t t = t0 + e;
        if (vec_store) {
          const longlong2 x = *reinterpret_cast<const longlong2*>(a.ids + t);
          id[0] = x.x;
          id[1] = x.y;
        } else {
          id[0] = t < a.n ? a.ids[t] : 0;
          id[1] = t + 1 < a.n ? a.ids[t + 1] : 0;
        }
      }
      lab[h] = selected ? id[h] : a.ignore_index;
      out[h] = id[h];
      if (selected) {
        if (d.y < a.th.mask) {
          out[h] = a.mask_id;
        } else if (d.y < a.th.mask_or_random) {
          out[h] = uniform_token(d.z, a.V);
        }
      }
      word[h] = selected ? ws : -1;
      if (h == 1) {
        const std::int64_t t = t0 + e - 1;  // the pair's first token
        if (vec_store) {
          *reinterpret_cast<longlong2*>(a.ids_out + t) = make_longlong2(out[0], out[1]);
          *reinterpret_cast<longlong2*>(a.labels + t) = make_longlong2(lab[0], lab[1]);
          if constexpr (kCap) *reinterpret_cast<int2*>(a.word + t) = make_int2(word[0], word[1]);
        } else {
#pragma unroll
          for (int k = 0; k < 2; ++k) {
            if (t + k < a.n) {
              a.ids_out[t + k] = out[k];
              a.labels[t + k] = lab[k];
              if constexpr (kCap) a.word[t + k] = word[k];
            }
          }
        }
      }
      if (++pos == static_cast<int>(L32)) {
        pos = 0;
        ++row;
      }
    }
  }
}

// ---- the cap ---------------------------------------------------------------------------------

struct CapArgs {
  std::int64_t B, L;
  std::int64_t max_predictions;
  std::int64_t ignore_index;
  std::uint64_t seed;
  std::int64_t* ids_out;
  std::int64_t* labels;
  // Workspace, [B, L] each (a sequence uses its own row):
  const std::int32_t* word;  // written by mlm_select_kernel
  std::int32_t* sel;         // word index of the selected tokens, in token order
  std::int32_t* tail;        // by word index: position in `sel` of the word's last token
  std::uint64_t* keys[2];    // (draw(word).x << 32) | word, sorted ping-pong
  std::int32_t* sizes[2];    // selected tokens of the word, moved with the keys
  std::uint8_t* accepted;    // by word index
};

// Block-wide exclusive prefix sum of one int per thread; *total gets the sum. s_warps: 32 ints.
__device__ __forceinline__ int block_exclusive_sum(int v, int* total, int* s_warps) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  int incl = v;
#pragma unroll
  for (int d = 1; d < 32; d <<= 1) {
    const int up = __shfl_up_sync(0xffffffffu, incl, d);
    if (lane >= d) incl += up;
  }
  __syncthreads();  // s_warps may still be read by a previous call
  if (lane == 31) s_warps[warp] = incl;
  __syncthreads();
  int before = 0, sum = 0;
  for (int w = 0; w < kCapThreads / 32; ++w) {
    const int x = s_warps[w];
    before += w < warp ? x : 0;
    sum += x;
  }
  *total = sum;
  return before + incl - v;
}

__device__ __forceinline__ std::int64_t min64(std::int64_t a, std::int64_t b) {
  return a < b ? a : b;
}

// Number of keys in sorted k[lo, hi) smaller than key.
__device__ __forceinline__ int count_less(const std::uint64_t* k, int lo, int hi,
                                          std::uint64_t key) {
  int l = lo, h = hi;
  while (l < h) {
    const int m = l + (h - l) / 2;
    if (k[m] < key) {
      l = m + 1;
    } else {
      h = m;
    }
  }
  return l - lo;
}

// Sorts (keys, sizes)[0, W) by key (keys are distinct); returns the buffer that holds the result.
__device__ __forceinline__ int block_sort_words(const CapArgs& a, std::int64_t row, int W,
                                                std::uint64_t* s_keys, std::int32_t* s_sizes) {
  std::uint64_t* k0 = a.keys[0] + row;
  std::int32_t* z0 = a.sizes[0] + row;
  // 1. Chunks of kSortChunk, bitonic sort in shared memory (padded to a power of two).
  for (int c0 = 0; c0 < W; c0 += kSortChunk) {
    const int n = min(kSortChunk, W - c0);
    int np = 1;
    while (np < n) np <<= 1;
    __syncthreads();
    for (int i = threadIdx.x; i < np; i += kCapThreads) {
      s_keys[i] = i < n ? k0[c0 + i] : ~std::uint64_t{0};
      s_sizes[i] = i < n ? z0[c0 + i] : 0;
    }
    __syncthreads();
    for (int k = 2; k <= np; k <<= 1) {
      for (int j = k >> 1; j > 0; j >>= 1) {
        for (int i = threadIdx.x; i < np; i += kCapThreads) {
          const int ixj = i ^ j;
          if (ixj > i) {
            const bool up = (i & k) == 0;
            const std::uint64_t ki = s_keys[i], kj = s_keys[ixj];
            if ((ki > kj) == up) {
              s_keys[i] = kj;
              s_keys[ixj] = ki;
              const std::int32_t z = s_sizes[i];
              s_sizes[i] = s_sizes[ixj];
              s_sizes[ixj] = z;
            }
          }
        }
        __syncthreads();
      }
    }
    for (int i = threadIdx.x; i < n; i += kCapThreads) {
      k0[c0 + i] = s_keys[i];
      z0[c0 + i] = s_sizes[i];
    }
  }
  // 2. Merge sorted runs pairwise: an element's place is its index in its run plus the number
  // of smaller keys in the other run (keys are distinct, so places never collide).
  int src = 0;
  for (std::int64_t width = kSortChunk; width < W; width *= 2) {
    __syncthreads();
    const std::uint64_t* ks = (src == 0 ? a.keys[0] : a.keys[1]) + row;
    const std::int32_t* zs = (src == 0 ? a.sizes[0] : a.sizes[1]) + row;
    std::uint64_t* kd = (src == 0 ? a.keys[1] : a.keys[0]) + row;
    std::int32_t* zd = (src == 0 ? a.sizes[1] : a.sizes[0]) + row;
    for (std::int64_t i = threadIdx.x; i < W; i += kCapThreads) {
      const std::int64_t base = i / (2 * width) * (2 * width);
      const auto mid = static_cast<int>(min64(base + width, W));
      const auto end = static_cast<int>(min64(base + 2 * width, W));
      const std::uint64_t key = ks[i];
      const std::int64_t place =
          i < mid ? i + count_less(ks, mid, end, key)
                  : base + (i - mid) + count_less(ks, static_cast<int>(base), mid, key);
      kd[place] = key;
      zd[place] = zs[i];
    }
    src = 1 - src;
  }
  __syncthreads();
  return src;
}

// A block per sequence. Sequences with at most max_predictions selected tokens are left as the
// first kernel wrote them; the others drop the words the reference's greedy rule drops.
__global__ void __launch_bounds__(kCapThreads, 4) mlm_cap_kernel(CapArgs a) {
  __shared__ std::uint64_t s_keys[kSortChunk];
  __shared__ std::int32_t s_sizes[kSortChunk];
  __shared__ int s_warps[32];
  __shared__ int s_words, s_j, s_r, s_rest;
  const int lane = threadIdx.x % 32;
  const int L = static_cast<int>(a.L);
  for (std::int64_t b = blockIdx.x; b < a.B; b += gridDim.x) {
    const std::int64_t row = b * a.L;
    const std::int32_t* word = a.word + row;
    std::int32_t* sel = a.sel + row;
    std::int32_t* tail = a.tail + row;
    std::uint8_t* accepted = a.accepted + row;

    // 1. The word index of each selected token, in token order (ordered compaction).
    int count = 0;
    for (std::int64_t base = 0; base < L; base += kCapThreads * kCapItems) {
      const std::int64_t t0 = base + threadIdx.x * kCapItems;
      int w[kCapItems], mine = 0;
#pragma unroll
      for (int e = 0; e < kCapItems; ++e) {
        w[e] = t0 + e < L ? word[t0 + e] : -1;
        mine += w[e] >= 0;
      }
      int total;
      int at = count + block_exclusive_sum(mine, &total, s_warps);
#pragma unroll
      for (int e = 0; e < kCapItems; ++e)
        if (w[e] >= 0) sel[at++] = w[e];
      count += total;
    }
    if (count <= a.max_predictions) continue;  // uniform: every thread has the same count

    // 2. Words: runs of equal index in `sel`; a run's size is its length.
    if (threadIdx.x == 0) s_words = 0;
    __syncthreads();
    for (std::int64_t i = threadIdx.x; i < count; i += kCapThreads) {
      const int v = sel[i];
      if (i == count - 1 || sel[i + 1] != v) tail[v] = static_cast<std::int32_t>(i);
    }
    __syncthreads();
    for (std::int64_t i = threadIdx.x; i < count; i += kCapThreads) {
      const int v = sel[i];
      if (i == 0 || sel[i - 1] != v) {
        const int slot = atomicAdd(&s_words, 1);
        const U32x4 d =
            mlm_draw(a.seed, static_cast<std::uint32_t>(b), static_cast<std::uint32_t>(v));
        a.keys[0][row + slot] =
            static_cast<std::uint64_t>(d.x) << 32 | static_cast<std::uint32_t>(v);
        a.sizes[0][row + slot] = tail[v] - static_cast<std::int32_t>(i) + 1;
      }
    }
    __syncthreads();
    const int W = s_words;

    // 3. Rank the words by (x, index).
    const int src = block_sort_words(a, row, W, s_keys, s_sizes);
    const std::uint64_t* keys = (src == 0 ? a.keys[0] : a.keys[1]) + row;
    const std::int32_t* sizes = (src == 0 ? a.sizes[0] : a.sizes[1]) + row;

    // 4. Greedy. Phase 1: the words before the first one that overflows are all kept (their
    // running total stays <= max_predictions); that one, j, is dropped.
    if (threadIdx.x == 0) s_j = W;
    int done = 0;  // running total of the sizes before `base`
    for (std::int64_t base = 0; base < W; base += kCapThreads) {
      const std::int64_t i = base + threadIdx.x;
      const int z = i < W ? sizes[i] : 0;
      int total;
      const int before = done + block_exclusive_sum(z, &total, s_warps);
      if (i < W) {
        if (before + z <= a.max_predictions) {
          accepted[static_cast<std::uint32_t>(keys[i])] = 1;
        } else if (before <= a.max_predictions) {  // the first overflow (totals only grow)
          s_j = static_cast<int>(i);
          s_r = static_cast<int>(a.max_predictions - before);
        }
      }
      done += total;
      __syncthreads();
      if (s_j < W) break;  // uniform
    }
    const int j = s_j;
    // Phase 2 (one warp, in rank order): a word is kept iff it fits in what is left.
    if (threadIdx.x < 32) {
      int r = s_r;
      std::int64_t i0 = j;
      for (; i0 < W && r > 0; i0 += 32) {
        const std::int64_t i = i0 + lane;
        const bool valid = i < W;
        const int z = valid ? sizes[i] : INT_MAX;
        bool keep_it = false;
        int last = -1;  // lanes <= last are decided
        while (true) {
          unsigned m = __ballot_sync(0xffffffffu, valid && z <= r);
          m &= last >= 31 ? 0u : ~0u << (last + 1);
          if (m == 0) break;
          const int l = __ffs(m) - 1;
          r -= __shfl_sync(0xffffffffu, z, l);
          keep_it |= lane == l;
          last = l;
        }
        if (valid) accepted[static_cast<std::uint32_t>(keys[i])] = keep_it ? 1 : 0;
      }
      if (lane == 0)
        s_rest = static_cast<int>(min64(i0, W));  // words from here on: nothing left, all dropped
    }
    __syncthreads();
    for (std::int64_t i = s_rest + threadIdx.x; i < W; i += kCapThreads)
      accepted[static_cast<std::uint32_t>(keys[i])] = 0;
    __syncthreads();

    // 5. Unselect the tokens of dropped words (the original id is in labels).
    for (std::int64_t t = threadIdx.x; t < L; t += kCapThreads) {
      const int v = word[t];
      if (v >= 0 && !accepted[v]) {
        a.ids_out[row + t] = a.labels[row + t];
        a.labels[row + t] = a.ignore_index;
      }
    }
    __syncthreads();  // shared state is reset by the next sequence
  }
}

// ---- workspace -------------------------------------------------------------------------------

constexpr std::size_t kAlign = 256;
std::size_t align_up(std::size_t x) {
  return (x + kAlign - 1) / kAlign * kAlign;
}

struct Layout {
  std::size_t word, sel, tail, keys0, keys1, sizes0, sizes1, accepted, bytes;
};
Layout layout_for(std::int64_t n) {
  const auto un = static_cast<std::size_t>(n);
  Layout l{};
  std::size_t at = 0;
  auto take = [&](std::size_t bytes) {
    const std::size_t here = at;
    at = align_up(at + bytes);
    return here;
  };
  l.keys0 = take(un * 8);
  l.keys1 = take(un * 8);
  l.word = take(un * 4);
  l.sel = take(un * 4);
  l.tail = take(un * 4);
  l.sizes0 = take(un * 4);
  l.sizes1 = take(un * 4);
  l.accepted = take(un);
  l.bytes = at;
  return l;
}

bool aligned(const void* p, std::size_t bytes) {
  return reinterpret_cast<std::uintptr_t>(p) % bytes == 0;
}

template <bool kWholeWord, bool kCap>
void launch_select(const MlmArgs& a, bool vec, unsigned grid, cudaStream_t stream) {
  if (vec) {
    mlm_select_kernel<kWholeWord, kCap, true><<<grid, kThreads, 0, stream>>>(a);
  } else {
    mlm_select_kernel<kWholeWord, kCap, false><<<grid, kThreads, 0, stream>>>(a);
  }
}

}  // namespace

std::size_t mlm_workspace_bytes(const MlmProblem& p) {
  p.validate();
  if (p.max_predictions == 0) return 0;
  return layout_for(checked_numel("ids", {p.B, p.L})).bytes;
}

void mlm_mask(const MlmProblem& p, const std::int64_t* ids, const std::uint8_t* keep,
              const std::uint8_t* special, const std::uint8_t* continuation, std::int64_t* ids_out,
              std::int64_t* labels, void* workspace, cudaStream_t stream) {
  p.validate();
  const std::int64_t n = checked_numel("ids", {p.B, p.L});
  if (n == 0) return;
  auto need = [](const void* ptr, const char* field) {
    if (ptr == nullptr) throw_invalid(field, "nullptr", "must point to [B, L] elements");
  };
  need(ids, "ids");
  need(keep, "keep");
  need(special, "special");
  if (p.whole_word) need(continuation, "continuation");
  need(ids_out, "ids_out");
  need(labels, "labels");
  const bool cap = p.max_predictions > 0;
  if (cap && workspace == nullptr)
    throw_invalid("workspace", "nullptr", "must hold mlm_workspace_bytes(p) bytes");
  if (cap && !aligned(workspace, 16))
    throw_invalid("workspace", "misaligned pointer", "must be 16-byte aligned");
  if (!aligned(ids, 8) || !aligned(ids_out, 8) || !aligned(labels, 8))
    throw_invalid("ids / ids_out / labels", "misaligned pointer", "must be 8-byte aligned");

  const Layout lay = layout_for(n);
  char* ws = static_cast<char*>(workspace);
  MlmArgs a{};
  a.ids = ids;
  a.keep = keep;
  a.special = special;
  a.continuation = p.whole_word ? continuation : nullptr;
  a.ids_out = ids_out;
  a.labels = labels;
  a.word = cap ? reinterpret_cast<std::int32_t*>(ws + lay.word) : nullptr;
  a.n = n;
  a.L = p.L;
  a.V = p.V;
  a.mask_id = p.mask_id;
  a.ignore_index = p.ignore_index;
  a.seed = p.seed;
  a.th = mlm_thresholds(p);

  const bool vec = aligned(ids, 16) && aligned(ids_out, 16) && aligned(labels, 16) &&
                   aligned(keep, 8) && aligned(special, 8) &&
                   (!p.whole_word || aligned(continuation, 8));
  const std::int64_t tiles = (n + kTile - 1) / kTile;
  require(tiles < INT_MAX, "B * L", n, "must be below 2^31 * 2048 tokens");
  const auto grid = static_cast<unsigned>(tiles);
  if (p.whole_word) {
    if (cap) {
      launch_select<true, true>(a, vec, grid, stream);
    } else {
      launch_select<true, false>(a, vec, grid, stream);
    }
  } else {
    if (cap) {
      launch_select<false, true>(a, vec, grid, stream);
    } else {
      launch_select<false, false>(a, vec, grid, stream);
    }
  }
  detail::check_launch("mlm_mask");
  if (!cap) return;

  CapArgs c{};
  c.B = p.B;
  c.L = p.L;
  c.max_predictions = p.max_predictions;
  c.ignore_index = p.ignore_index;
  c.seed = p.seed;
  c.ids_out = ids_out;
  c.labels = labels;
  c.word = a.word;
  c.sel = reinterpret_cast<std::int32_t*>(ws + lay.sel);
  c.tail = reinterpret_cast<std::int32_t*>(ws + lay.tail);
  c.keys[0] = reinterpret_cast<std::uint64_t*>(ws + lay.keys0);
  c.keys[1] = reinterpret_cast<std::uint64_t*>(ws + lay.keys1);
  c.sizes[0] = reinterpret_cast<std::int32_t*>(ws + lay.sizes0);
  c.sizes[1] = reinterpret_cast<std::int32_t*>(ws + lay.sizes1);
  c.accepted = reinterpret_cast<std::uint8_t*>(ws + lay.accepted);
  const auto cap_grid = static_cast<unsigned>(std::min<std::int64_t>(p.B, 1 << 20));
  mlm_cap_kernel<<<cap_grid, kCapThreads, 0, stream>>>(c);
  detail::check_launch("mlm_mask (max_predictions)");
}

}  // namespace maskcheck::cuda
