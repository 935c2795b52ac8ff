// Mask construction and conversion on the GPU, and the padding helpers.
//   build_mask:        MaskView -> out [B, Lq, Lk], out[b, q, k] = encode(visible(b, q, k))
//   convert_mask:      in [n] -> out [n], element-wise decode(from) then encode(to)
//   keep_from_lengths: lengths [B] -> keep [B, L] uint8
//   last_valid_index:  lengths [B] -> last [B] int64 (-1 for an empty sequence)
// Storage: uint8 for keep / masked_out, the dtype for the additive encodings. Every kernel is a
// pure store (or load + store) stream: O(n) bytes, O(B Lq) predicate evaluations for build_mask
// (one visible_keys() per row, never one per element).
//
// Versions, naive to fast:
//   v1 one thread per element calling visible(b, q, k)            (binary search per element)
//   v2 one thread per row, interval from visible_keys()            (uncoalesced stores)
//   v3 (this) a block per group of whole rows (or per column chunk of a long row): the rows'
//      intervals go to shared memory first, then the block streams the group with 16-byte
//      aligned stores, one thread per 16 bytes; encodings are reduced on the host to two bit
//      patterns (visible / masked), so one kernel per element width serves all of them.
#include <cstring>
#include <limits>

#include "common.cuh"

namespace maskcheck::cuda {
namespace {

constexpr int kThreads = 256;
constexpr std::int64_t kGroupBytes = 32 * 1024;  // bytes one block writes per group
constexpr std::int64_t kMaxGroupRows = 1024;     // rows whose intervals shared memory holds

// ---- bit patterns of the encodings -----------------------------------------------------------

// The stored bits of one element: the element type of the storage and what a visible and a
// masked entry hold.
struct Pattern {
  int bytes = 1;          // 1 (uint8), 2 (f16 / bf16) or 4 (f32)
  std::uint32_t on = 0;   // bits of a visible entry
  std::uint32_t off = 0;  // bits of a masked entry
};

std::uint32_t dtype_bits(DType t, double x) {
  switch (t) {
    case DType::f16:
      return maskcheck::half(x).bits;
    case DType::bf16:
      return maskcheck::bfloat16(x).bits;
    default: {
      const float f = static_cast<float>(x);  // x is already a float value (masking_value)
      std::uint32_t u = 0;
      std::memcpy(&u, &f, sizeof u);
      return u;
    }
  }
}

Pattern pattern_of(MaskEncoding e, DType t) {
  switch (e) {
    case MaskEncoding::keep:
      return Pattern{1, 1u, 0u};
    case MaskEncoding::masked_out:
      return Pattern{1, 0u, 1u};
    default:  // additive: +0 where visible, the dtype's masking value where masked
      return Pattern{static_cast<int>(dtype_bytes(t)), 0u, dtype_bits(t, masking_value(e, t))};
  }
}

void require_encoding(MaskEncoding e, const char* field) {
  for (MaskEncoding k : kAllMaskEncodings)
    if (k == e) return;
  throw_invalid(field, static_cast<long long>(e), "must be a MaskEncoding");
}

void require_aligned(const void* p, std::size_t bytes, const char* field) {
  if (reinterpret_cast<std::uintptr_t>(p) % bytes != 0)
    throw_invalid(field, "misaligned pointer",
                  "must be aligned to its element size (" + std::to_string(bytes) + " bytes)");
}

// ---- packing of 16-byte vectors --------------------------------------------------------------

// A 16-byte vector as four 32-bit words; element j of width S bytes sits in word j*S/4 at bit
// (j*S%4)*8. All indices are compile-time constants once the loops are unrolled.
template <int S>
__device__ __forceinline__ void put_element(std::uint32_t (&w)[4], int j, std::uint32_t bits) {
  w[j * S / 4] |= bits << ((j * S % 4) * 8);
}
template <int S>
__device__ __forceinline__ std::uint32_t get_element(const std::uint32_t* w, int j) {
  const std::uint32_t x = w[j * S / 4] >> ((j * S % 4) * 8);
  return S == 4 ? x : x & ((1u << (8 * S)) - 1u);
}
// The four words of a 16-byte vector whose elements [lo, hi) hold `on` and the others `off`
// (0 <= lo, hi <= 16 / S): a bit per element, spread to a byte / half / word mask per element.
template <int S>
__device__ __forceinline__ void put_range(std::uint32_t (&w)[4], int lo, int hi, std::uint32_t on,
                                          std::uint32_t off) {
  const std::uint32_t bits = hi > lo ? (1u << hi) - (1u << lo) : 0u;  // bit e: element e
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    std::uint32_t m;  // all ones over the visible elements of word k
    if constexpr (S == 1) {
      const std::uint32_t nib = bits >> (4 * k) & 0xfu;
      m = (nib * 0x00204081u & 0x01010101u) * 0xffu;  // bit i -> byte i
    } else if constexpr (S == 2) {
      const std::uint32_t two = bits >> (2 * k) & 0x3u;
      m = ((two & 1u) | (two & 2u) << 15) * 0xffffu;  // bit i -> half i
    } else {
      m = 0u - (bits >> k & 1u);
    }
    constexpr std::uint32_t kRep = S == 1 ? 0x01010101u : S == 2 ? 0x00010001u : 1u;
    w[k] = (on * kRep & m) | (off * kRep & ~m);
  }
}
template <int S>
__device__ __forceinline__ void store_element(void* base, std::int64_t i, std::uint32_t bits) {
  if constexpr (S == 1) {
    static_cast<std::uint8_t*>(base)[i] = static_cast<std::uint8_t>(bits);
  } else if constexpr (S == 2) {
    static_cast<std::uint16_t*>(base)[i] = static_cast<std::uint16_t>(bits);
  } else {
    static_cast<std::uint32_t*>(base)[i] = bits;
  }
}
template <int S>
__device__ __forceinline__ std::uint32_t load_element(const void* base, std::int64_t i) {
  if constexpr (S == 1) {
    return static_cast<const std::uint8_t*>(base)[i];
  } else if constexpr (S == 2) {
    return static_cast<const std::uint16_t*>(base)[i];
  } else {
    return static_cast<const std::uint32_t*>(base)[i];
  }
}

// ---- row-interval writer (build_mask, keep_from_lengths) -------------------------------------

// The visible interval of each row of a [rows, cols] output, as a functor of the row.
struct MaskRows {  // build_mask: row = b * Lq + q
  MaskView m;
  __device__ KeyRange operator()(std::int64_t row) const {
    const std::int64_t b = row / m.Lq;
    return visible_keys(m, b, row - b * m.Lq);
  }
};
struct LengthRows {  // keep_from_lengths: row = b; lengths outside [0, L] are clamped
  const std::int32_t* lengths;
  std::int64_t L;
  PaddingSide side;
  __device__ KeyRange operator()(std::int64_t b) const {
    const std::int64_t len = maskcheck::detail::min64(maskcheck::detail::max64(lengths[b], 0), L);
    const std::int64_t t0 = valid_begin(side, L, len);
    return KeyRange{t0, t0 + len};
  }
};

// How the [rows, cols] output is cut into groups: `rows_per_group` whole rows (short rows), or
// one row cut into `col_chunks` chunks of `chunk_cols` columns (long rows; rows_per_group = 1).
struct Grouping {
  std::int64_t rows = 0, cols = 0;
  std::int64_t rows_per_group = 1;
  std::int64_t col_chunks = 1, chunk_cols = 0;
  std::int64_t groups = 0;
};

Grouping make_grouping(std::int64_t rows, std::int64_t cols, int bytes) {
  Grouping g;
  g.rows = rows;
  g.cols = cols;
  const std::int64_t row_bytes = cols * bytes;
  if (row_bytes <= kGroupBytes) {
    g.rows_per_group = std::min(kMaxGroupRows, std::max<std::int64_t>(1, kGroupBytes / row_bytes));
    g.chunk_cols = cols;
    g.groups = (rows + g.rows_per_group - 1) / g.rows_per_group;
  } else {
    g.chunk_cols = kGroupBytes / bytes;
    g.col_chunks = (cols + g.chunk_cols - 1) / g.chunk_cols;
    g.groups = rows * g.col_chunks;
  }
  return g;
}

// out: [rows, cols] elements of S bytes; element (r, c) = c in rows(r) ? on : off.
// A block per group: the group's row intervals go to shared memory, then the group's elements
// (contiguous in memory) are written with 16-byte stores; the unaligned head and tail of the
// group (fewer than 16 bytes each) element by element.
template <int S, class Rows>
__global__ void __launch_bounds__(kThreads)
    write_rows_kernel(Rows rows_of, Grouping g, void* out, std::uint32_t on, std::uint32_t off) {
  constexpr int kVec = 16 / S;  // elements per 16-byte store
  __shared__ std::int64_t s_begin[kMaxGroupRows], s_end[kMaxGroupRows];
  const std::int64_t cols = g.cols;
  for (std::int64_t grp = blockIdx.x; grp < g.groups; grp += gridDim.x) {
    const std::int64_t r0 = grp / g.col_chunks * g.rows_per_group;
    const std::int64_t c0 = grp % g.col_chunks * g.chunk_cols;
    const std::int64_t nr = maskcheck::detail::min64(g.rows_per_group, g.rows - r0);
    const std::int64_t c1 = maskcheck::detail::min64(cols, c0 + g.chunk_cols);
    const std::int64_t e0 = r0 * cols + c0;                  // first element of the group
    const std::int64_t count = (nr - 1) * cols + (c1 - c0);  // contiguous elements

    __syncthreads();  // the previous group is done with the intervals
    for (std::int64_t r = threadIdx.x; r < nr; r += kThreads) {
      const KeyRange kr = rows_of(r0 + r);
      s_begin[r] = kr.begin;
      s_end[r] = kr.empty() ? kr.begin : kr.end;
    }
    __syncthreads();

    // Element j of the group -> (row in group, column); rows are short when nr > 1, so the
    // 32-bit division is exact there.
    auto locate = [&](std::int64_t j, int& row, std::int64_t& col) {
      if (nr == 1) {
        row = 0;
        col = c0 + j;
      } else {
        const auto uj = static_cast<std::uint32_t>(j);
        const std::uint32_t r = uj / static_cast<std::uint32_t>(cols);
        row = static_cast<int>(r);
        col = uj - r * static_cast<std::uint32_t>(cols);
      }
    };
    auto bits_at = [&](int row, std::int64_t col) {
      return col >= s_begin[row] && col < s_end[row] ? on : off;
    };

    char* base = static_cast<char*>(out) + e0 * S;
    const auto addr = reinterpret_cast<std::uintptr_t>(base);
    const std::int64_t head =
        maskcheck::detail::min64(count, static_cast<std::int64_t>((16 - addr % 16) % 16) / S);
    const std::int64_t body = (count - head) / kVec;  // 16-byte vectors
    const std::int64_t tail0 = head + body * kVec;

    for (std::int64_t j = threadIdx.x; j < head; j += kThreads) {
      int row;
      std::int64_t col;
      locate(j, row, col);
      store_element<S>(base, j, bits_at(row, col));
    }
    for (std::int64_t j = tail0 + threadIdx.x; j < count; j += kThreads) {
      int row;
      std::int64_t col;
      locate(j, row, col);
      store_element<S>(base, j, bits_at(row, col));
    }
    uint4* vec = reinterpret_cast<uint4*>(base + head * S);
    for (std::int64_t v = threadIdx.x; v < body; v += kThreads) {
      const std::int64_t j = head + v * kVec;
      int row;
      std::int64_t col;
      locate(j, row, col);
      std::uint32_t w[4] = {0u, 0u, 0u, 0u};
      if (col + kVec <= cols) {
        // One row: elements [lo, hi) of the vector are visible.
        const int lo = static_cast<int>(
            maskcheck::detail::min64(maskcheck::detail::max64(s_begin[row] - col, 0), kVec));
        const int hi = static_cast<int>(
            maskcheck::detail::min64(maskcheck::detail::max64(s_end[row] - col, 0), kVec));
        put_range<S>(w, lo, hi, on, off);
      } else {
        // The vector crosses into the next row(s) (short rows).
#pragma unroll
        for (int e = 0; e < kVec; ++e) {
          put_element<S>(w, e, bits_at(row, col));
          if (++col == cols) {
            col = 0;
            ++row;
          }
        }
      }
      vec[v] = make_uint4(w[0], w[1], w[2], w[3]);
    }
  }
}

template <class Rows>
void launch_write_rows(const Rows& rows_of, std::int64_t rows, std::int64_t cols,
                       const Pattern& pat, void* out, cudaStream_t stream, const char* name) {
  if (rows == 0 || cols == 0) return;
  const Grouping g = make_grouping(rows, cols, pat.bytes);
  const auto grid =
      static_cast<unsigned>(maskcheck::detail::min64(g.groups, std::int64_t{1} << 20));
  switch (pat.bytes) {
    case 1:
      write_rows_kernel<1><<<grid, kThreads, 0, stream>>>(rows_of, g, out, pat.on, pat.off);
      break;
    case 2:
      write_rows_kernel<2><<<grid, kThreads, 0, stream>>>(rows_of, g, out, pat.on, pat.off);
      break;
    default:
      write_rows_kernel<4><<<grid, kThreads, 0, stream>>>(rows_of, g, out, pat.on, pat.off);
  }
  detail::check_launch(name);
}

// ---- convert_mask ----------------------------------------------------------------------------

// Decoders from stored bits to keep (true = visible). NaN never compares greater, so a NaN
// additive entry decodes as masked.
struct DecodeKeep {
  static constexpr int kBytes = 1;
  __device__ bool operator()(std::uint32_t v) const { return v != 0u; }
};
struct DecodeMaskedOut {
  static constexpr int kBytes = 1;
  __device__ bool operator()(std::uint32_t v) const { return v == 0u; }
};
// Additive: keep iff v > masking_value / 2 (exact in fp32 for every encoding and dtype).
template <class T>
struct DecodeAdditive {
  static constexpr int kBytes = sizeof(T);
  float threshold;
  __device__ bool operator()(std::uint32_t v) const {
    float x;
    if constexpr (std::is_same_v<T, __half>) {
      x = __half2float(__ushort_as_half(static_cast<unsigned short>(v)));
    } else if constexpr (std::is_same_v<T, __nv_bfloat16>) {
      x = __uint_as_float(v << 16);
    } else {
      x = __uint_as_float(v);
    }
    return x > threshold;
  }
};

// in: [n] of Dec::kBytes, out: [n] of S bytes. Each thread converts 16 elements per step with
// 16-byte loads and stores when both pointers allow it; the last n % 16 elements one by one.
template <class Dec, int S>
__global__ void __launch_bounds__(kThreads)
    convert_kernel(const void* in, std::int64_t n, void* out, Dec dec, std::uint32_t on,
                   std::uint32_t off, bool vectorized) {
  constexpr int kIn = Dec::kBytes;
  constexpr int kN = 16;  // elements per step
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * kThreads;
  const std::int64_t first = static_cast<std::int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  const std::int64_t steps = vectorized ? n / kN : 0;
  for (std::int64_t s = first; s < steps; s += stride) {
    std::uint32_t wi[4 * kIn];
    const uint4* src = reinterpret_cast<const uint4*>(static_cast<const char*>(in) + s * kN * kIn);
#pragma unroll
    for (int k = 0; k < kIn; ++k) {
      const uint4 x = src[k];
      wi[4 * k] = x.x;
      wi[4 * k + 1] = x.y;
      wi[4 * k + 2] = x.z;
      wi[4 * k + 3] = x.w;
    }
    uint4* dst = reinterpret_cast<uint4*>(static_cast<char*>(out) + s * kN * S);
#pragma unroll
    for (int k = 0; k < S; ++k) {  // output vector k holds elements [k * 16 / S, (k + 1) * 16 / S)
      std::uint32_t w[4] = {0u, 0u, 0u, 0u};
#pragma unroll
      for (int e = 0; e < 16 / S; ++e)
        put_element<S>(w, e, dec(get_element<kIn>(wi, k * (16 / S) + e)) ? on : off);
      dst[k] = make_uint4(w[0], w[1], w[2], w[3]);
    }
  }
  for (std::int64_t i = steps * kN + first; i < n; i += stride)
    store_element<S>(out, i, dec(load_element<kIn>(in, i)) ? on : off);
}

template <class Dec>
void launch_convert(const void* in, std::int64_t n, void* out, const Dec& dec, const Pattern& to,
                    cudaStream_t stream) {
  const bool vectorized = reinterpret_cast<std::uintptr_t>(in) % 16 == 0 &&
                          reinterpret_cast<std::uintptr_t>(out) % 16 == 0;
  const std::int64_t work = vectorized ? (n + 15) / 16 : n;
  const unsigned grid = detail::grid_for(work, kThreads);
  switch (to.bytes) {
    case 1:
      convert_kernel<Dec, 1>
          <<<grid, kThreads, 0, stream>>>(in, n, out, dec, to.on, to.off, vectorized);
      break;
    case 2:
      convert_kernel<Dec, 2>
          <<<grid, kThreads, 0, stream>>>(in, n, out, dec, to.on, to.off, vectorized);
      break;
    default:
      convert_kernel<Dec, 4>
          <<<grid, kThreads, 0, stream>>>(in, n, out, dec, to.on, to.off, vectorized);
  }
  detail::check_launch("convert_mask");
}

// ---- last_valid_index ------------------------------------------------------------------------

__global__ void last_valid_index_kernel(const std::int32_t* lengths, std::int64_t B, std::int64_t L,
                                        PaddingSide side, std::int64_t* last) {
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t b = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; b < B;
       b += stride) {
    const std::int64_t len =
        maskcheck::detail::min64(maskcheck::detail::max64(lengths[b], 0), L);  // clamped
    last[b] = len == 0 ? -1 : valid_begin(side, L, len) + len - 1;
  }
}

}  // namespace

void build_mask(const MaskView& mask, MaskEncoding e, DType t, void* out, cudaStream_t stream) {
  require_cuda_dtype(t);
  require_encoding(e, "encoding");
  require(mask.Lq >= 0 && mask.Lq < (std::int64_t{1} << 31), "Lq", mask.Lq, "must be in [0, 2^31)");
  require(mask.Lk >= 0 && mask.Lk < (std::int64_t{1} << 31), "Lk", mask.Lk, "must be in [0, 2^31)");
  const std::int64_t n = checked_numel("mask", {mask.B, mask.Lq, mask.Lk});
  if (n == 0) return;
  const Pattern pat = pattern_of(e, t);
  if (out == nullptr) throw_invalid("out", "nullptr", "must point to [B, Lq, Lk] elements");
  require_aligned(out, pat.bytes, "out");
  launch_write_rows(MaskRows{mask}, mask.B * mask.Lq, mask.Lk, pat, out, stream, "build_mask");
}

void convert_mask(const void* in, MaskEncoding from, MaskEncoding to, DType t, std::int64_t n,
                  void* out, cudaStream_t stream) {
  require_cuda_dtype(t);
  require_encoding(from, "from");
  require_encoding(to, "to");
  require(n >= 0, "n", n, "must be >= 0");
  if (n == 0) return;
  if (in == nullptr) throw_invalid("in", "nullptr", "must point to n elements");
  if (out == nullptr) throw_invalid("out", "nullptr", "must point to n elements");
  const Pattern pat = pattern_of(to, t);
  require_aligned(in, is_additive(from) ? dtype_bytes(t) : 1, "in");
  require_aligned(out, pat.bytes, "out");
  if (from == MaskEncoding::keep) return launch_convert(in, n, out, DecodeKeep{}, pat, stream);
  if (from == MaskEncoding::masked_out)
    return launch_convert(in, n, out, DecodeMaskedOut{}, pat, stream);
  // -inf / 2 is -inf; the other masking values halve exactly in fp32.
  const auto threshold = static_cast<float>(masking_value(from, t) / 2);
  dispatch_cuda_dtype(t, [&](auto tag) {
    using T = decltype(tag);
    launch_convert(in, n, out, DecodeAdditive<T>{threshold}, pat, stream);
  });
}

void keep_from_lengths(const std::int32_t* lengths, std::int64_t B, std::int64_t L,
                       PaddingSide side, std::uint8_t* keep, cudaStream_t stream) {
  require(B >= 0, "B", B, "must be >= 0");
  require(L >= 0, "L", L, "must be >= 0");
  const std::int64_t n = checked_numel("keep", {B, L});
  if (n == 0) return;
  if (lengths == nullptr) throw_invalid("lengths", "nullptr", "must point to B lengths");
  if (keep == nullptr) throw_invalid("keep", "nullptr", "must point to [B, L] bytes");
  launch_write_rows(LengthRows{lengths, L, side}, B, L, Pattern{1, 1u, 0u}, keep, stream,
                    "keep_from_lengths");
}

void last_valid_index(const std::int32_t* lengths, std::int64_t B, std::int64_t L, PaddingSide side,
                      std::int64_t* last, cudaStream_t stream) {
  require(B >= 0, "B", B, "must be >= 0");
  require(L >= 0, "L", L, "must be >= 0");
  if (B == 0) return;
  if (lengths == nullptr) throw_invalid("lengths", "nullptr", "must point to B lengths");
  if (last == nullptr) throw_invalid("last", "nullptr", "must point to B int64");
  const unsigned grid = detail::grid_for(B, kThreads);
  last_valid_index_kernel<<<grid, kThreads, 0, stream>>>(lengths, B, L, side, last);
  detail::check_launch("last_valid_index");
}

}  // namespace maskcheck::cuda
