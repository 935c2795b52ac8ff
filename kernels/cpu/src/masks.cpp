// Mask construction and conversion on the CPU, and the padding helpers.
//   build_mask:        MaskView -> out [B, Lq, Lk], out[b, q, k] = encode(visible(b, q, k))
//   convert_mask:      in [n] -> out [n], element-wise decode(from) then encode(to)
//   keep_from_lengths: lengths [B] -> keep [B, L] uint8
//   last_valid_index:  lengths [B] -> last [B] int64 (-1 for an empty sequence)
// Storage: uint8 for keep / masked_out, the dtype for the additive encodings (f32, f16, bf16).
// Every encoding is reduced on the host to two bit patterns (visible / masked) of 1, 2 or 4
// bytes, so one writer per element width serves all of them. Pure store streams: O(n) bytes
// written (plus n read for convert_mask) and O(B Lq) predicate evaluations for build_mask (one
// visible_keys() per row, never one per element).
//
// Versions, naive to fast:
//   v1 visible(b, q, k) per element                             (a document search per element)
//   v2 one visible_keys() per row, then its three runs (masked, visible, masked) with memset /
//      std::fill_n                   (three calls per row: slow for short rows; RFO traffic)
//   v3 (this) the output as one flat stream of aligned vectors cut into equal slices per thread:
//      inside a row, runs of whole vectors holding one value are plain stores of a constant
//      vector; a vector holding both values, or crossing into the next row(s), gets its visible
//      lanes as the union of its rows' intervals (FirstN masks), so a row boundary costs neither
//      a call nor a partial store. Outputs of kStreamBytes and more use non-temporal stores (no
//      read-for-ownership, which otherwise doubles the DRAM traffic of a write-only stream).
//      One core of a Xeon (Emerald Rapids) VM: 22 GB/s streamed to DRAM (memset's rate), 40
//      GB/s into its L2. convert_mask is a plain loop the compiler vectorizes per Highway
//      target; additive values are decoded by integer compares on their bits.
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>

#include "maskcheck/kernels/cpu.hpp"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "masks.cpp"
#include <hwy/cache_control.h>
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#ifndef MASKCHECK_CPU_MASKS_SHARED
#define MASKCHECK_CPU_MASKS_SHARED
namespace maskcheck::cpu::masks_detail {

// Outputs at least this large are written with non-temporal stores: past the caches a regular
// store first reads its line (read-for-ownership); below, the mask is better left in cache.
constexpr std::int64_t kStreamBytes = std::int64_t{8} << 20;
// Outputs smaller than this are written by one thread (a parallel region costs microseconds).
constexpr std::int64_t kParallelBytes = std::int64_t{256} << 10;

// The visible interval of each row of a [rows, cols] output, as a functor of the row; the
// interval may be empty (end <= begin) or reach outside [0, cols): the writer clamps. (A row's
// attention sinks apart from its interval are set by a second pass, build_mask.)
struct MaskRows {  // build_mask: row = b * Lq + q
  const MaskView* m;
  KeyRange operator()(std::int64_t row) const {
    const std::int64_t b = row / m->Lq;
    return visible_keys(*m, b, row - b * m->Lq);
  }
};
struct LengthRows {  // keep_from_lengths: row = b
  const std::int32_t* lengths;
  std::int64_t L;
  PaddingSide side;
  KeyRange operator()(std::int64_t b) const {
    const std::int64_t t0 = valid_begin(side, L, lengths[b]);
    return KeyRange{t0, t0 + lengths[b]};
  }
};

// The stored bits of an encoding at a dtype: element width and what a visible and a masked
// entry hold.
struct Pattern {
  int bytes = 1;          // 1 (uint8), 2 (f16 / bf16) or 4 (f32)
  std::uint32_t on = 0;   // bits of a visible entry
  std::uint32_t off = 0;  // bits of a masked entry
};

inline std::uint32_t dtype_bits(DType t, double x) {
  switch (t) {
    case DType::f16:
      return half(x).bits;
    case DType::bf16:
      return bfloat16(x).bits;
    default: {
      const auto f = static_cast<float>(x);  // masking values are float values already
      std::uint32_t u = 0;
      std::memcpy(&u, &f, sizeof u);
      return u;
    }
  }
}

inline Pattern pattern_of(MaskEncoding e, DType t) {
  switch (e) {
    case MaskEncoding::keep:
      return Pattern{1, 1u, 0u};
    case MaskEncoding::masked_out:
      return Pattern{1, 0u, 1u};
    default:  // additive: +0 where visible, the dtype's masking value where masked
      return Pattern{static_cast<int>(dtype_bytes(t)), 0u, dtype_bits(t, masking_value(e, t))};
  }
}

// How convert_mask decodes its input: keep (v != 0), masked_out (v == 0) or additive: visible
// iff value > masking_value / 2. The threshold is a value of the dtype (halving a normal value
// or -inf is exact), so on the bits: visible iff not NaN and (positive, or its magnitude is
// below the threshold's). -0 is visible, -inf is masked, NaN is masked.
struct Decoder {
  enum Kind : std::uint8_t { keep, masked_out, additive } kind = keep;
  int bytes = 1;                 // input element width
  std::uint32_t inf_bits = 0;    // magnitude bits of +inf in the dtype
  std::uint32_t thresh_mag = 0;  // magnitude bits of the threshold
};

inline Decoder decoder_of(MaskEncoding e, DType t) {
  Decoder d;
  if (e == MaskEncoding::keep) return d;
  if (e == MaskEncoding::masked_out) {
    d.kind = Decoder::masked_out;
    return d;
  }
  d.kind = Decoder::additive;
  d.bytes = static_cast<int>(dtype_bytes(t));
  const std::uint32_t sign = d.bytes == 4 ? 0x80000000u : 0x8000u;
  const double threshold = masking_value(e, t) / 2;  // -inf / 2 == -inf
  const std::uint32_t bits = dtype_bits(t, threshold);
  d.inf_bits = dtype_bits(t, std::numeric_limits<double>::infinity());
  d.thresh_mag = bits & (sign - 1);
  // Holds for every encoding and dtype; the bit compare above relies on it.
  if (round_to(t, threshold) != threshold || !(threshold < 0))
    throw std::logic_error("convert_mask: additive threshold is not a negative dtype value");
  return d;
}

inline void require_encoding(MaskEncoding e, const char* field) {
  for (MaskEncoding k : kAllMaskEncodings)
    if (k == e) return;
  throw_invalid(field, static_cast<long long>(e), "must be a MaskEncoding");
}

inline void require_mask_dtype(DType t) {
  if (t != DType::f32 && t != DType::f16 && t != DType::bf16)
    throw_invalid("dtype", std::string(to_string(t)), "CPU masks take f32, f16 or bf16");
}

inline void require_aligned(const void* p, int bytes, const char* field) {
  if (reinterpret_cast<std::uintptr_t>(p) % static_cast<unsigned>(bytes) != 0)
    throw_invalid(field, "misaligned pointer",
                  "must be aligned to its element size (" + std::to_string(bytes) + " bytes)");
}

inline int threads_for(std::int64_t bytes) {
  return bytes >= kParallelBytes ? std::max(1, omp_get_max_threads()) : 1;
}

}  // namespace maskcheck::cpu::masks_detail
#endif  // MASKCHECK_CPU_MASKS_SHARED

HWY_BEFORE_NAMESPACE();
namespace maskcheck::cpu::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
using namespace masks_detail;

// Element by element, for the unaligned head and tail of the output (< one vector each).
template <class T, class Rows>
void WriteScalar(const Rows& rows, std::int64_t cols, T on, T off, T* out, std::int64_t e0,
                 std::int64_t e1) {
  std::int64_t row = -1;
  KeyRange iv;
  for (std::int64_t e = e0; e < e1; ++e) {
    const std::int64_t r = e / cols, c = e - r * cols;
    if (r != row) {
      row = r;
      iv = rows(r);
    }
    out[e] = iv.contains(c) ? on : off;
  }
}

// out[e0, e0 + nvec * N): whole aligned vectors of the flattened [nrows, cols] output.
template <bool kStream, class T, class Rows>
void WriteVectors(const Rows& rows, std::int64_t nrows, std::int64_t cols, T on, T off, T* out,
                  std::int64_t e0, std::int64_t nvec) {
  const hn::ScalableTag<T> d;
  const auto N = static_cast<std::int64_t>(hn::Lanes(d));
  const auto von = hn::Set(d, on), voff = hn::Set(d, off);
  // Lanes [lo, hi) of a vector (clamped to [0, N]).
  auto band = [&](std::int64_t lo, std::int64_t hi) {
    lo = std::clamp<std::int64_t>(lo, 0, N);
    hi = std::clamp<std::int64_t>(hi, 0, N);
    return hn::AndNot(hn::FirstN(d, static_cast<std::size_t>(lo)),
                      hn::FirstN(d, static_cast<std::size_t>(hi)));
  };
  // Row r holds the vector's first element, at column c; `ahead` is the last row whose interval
  // is known (a vector that crosses into later rows asks for them first), so every row's
  // interval is computed once.
  auto clamped = [&](KeyRange iv) {
    iv.begin = std::clamp<std::int64_t>(iv.begin, 0, cols);
    iv.end = std::clamp<std::int64_t>(iv.end, iv.begin, cols);
    return iv;
  };
  std::int64_t r = e0 / cols, c = e0 - r * cols;
  std::int64_t ahead_row = r;
  KeyRange ahead = clamped(rows(r));
  auto interval = [&](std::int64_t row) {
    if (row != ahead_row) {
      ahead_row = row;
      ahead = clamped(rows(row));
    }
    return ahead;
  };
  KeyRange cur = ahead;
  T* p = out + e0;
  auto put = [&](hn::Vec<decltype(d)> x) {
    if constexpr (kStream) {
      hn::Stream(x, d, p);
    } else {
      hn::Store(x, d, p);
    }
    p += N;
  };
  for (std::int64_t v = 0; v < nvec;) {
    std::int64_t k = 0;  // vectors written by this step
    // Fast path: whole vectors inside row r that hold one value (most of a long row), stored
    // without masks up to the end of their run.
    std::int64_t run_end = -1;
    bool visible = false;
    if (c >= cur.end) {
      run_end = cols;
    } else if (c + N <= cur.begin) {
      run_end = cur.begin;
    } else if (c >= cur.begin && c + N <= cur.end) {
      run_end = cur.end;
      visible = true;
    }
    if (run_end >= c + N) {
      k = std::min((run_end - c) / N, nvec - v);
      const auto x = visible ? von : voff;
      for (std::int64_t i = 0; i < k; ++i) put(x);
    } else {
      // A vector holding both values, or crossing into later rows (at most one unless rows are
      // shorter than N): its visible lanes are the union of its rows' intervals.
      auto m = band(cur.begin - c, cur.end - c);
      std::int64_t rel = cols - c, rr = r;
      while (rel < N && rr + 1 < nrows) {
        const KeyRange iv = interval(++rr);
        m = hn::Or(m, band(rel + iv.begin, rel + iv.end));
        rel += cols;
      }
      put(hn::IfThenElse(m, von, voff));
      k = 1;
    }
    v += k;
    c += k * N;
    if (c >= cols) {
      if (c < 2 * cols) {
        ++r;
        c -= cols;
      } else {
        r += c / cols;
        c %= cols;
      }
      if (r < nrows) cur = interval(r);
    }
  }
  if constexpr (kStream) hwy::FlushStream();
}

// Thread `id` of `threads` writes its share of the [nrows, cols] output of width T: thread 0
// the unaligned head, the last thread the tail, everyone an equal run of aligned vectors.
template <class T, class Rows>
void WriteRowsT(const Rows& rows, std::int64_t nrows, std::int64_t cols, T on, T off, T* out,
                int id, int threads) {
  const hn::ScalableTag<T> d;
  const auto N = static_cast<std::int64_t>(hn::Lanes(d));
  const std::int64_t n = nrows * cols;
  const auto vbytes = static_cast<std::uintptr_t>(N) * sizeof(T);
  const auto misalign = reinterpret_cast<std::uintptr_t>(out) % vbytes;
  const std::int64_t head = std::min<std::int64_t>(
      n, static_cast<std::int64_t>((vbytes - misalign) % vbytes / sizeof(T)));
  const std::int64_t nvec = (n - head) / N;
  const std::int64_t tail0 = head + nvec * N;
  if (id == 0) WriteScalar(rows, cols, on, off, out, 0, head);
  if (id == threads - 1) WriteScalar(rows, cols, on, off, out, tail0, n);
  const std::int64_t v0 = nvec * id / threads, v1 = nvec * (id + 1) / threads;
  if (v1 <= v0) return;
  if (n * static_cast<std::int64_t>(sizeof(T)) >= kStreamBytes) {
    WriteVectors<true>(rows, nrows, cols, on, off, out, head + v0 * N, v1 - v0);
  } else {
    WriteVectors<false>(rows, nrows, cols, on, off, out, head + v0 * N, v1 - v0);
  }
}

template <class Rows>
void WriteRows(const Rows& rows, std::int64_t nrows, std::int64_t cols, const Pattern& pat,
               void* out, int id, int threads) {
  switch (pat.bytes) {
    case 1:
      return WriteRowsT(rows, nrows, cols, static_cast<std::uint8_t>(pat.on),
                        static_cast<std::uint8_t>(pat.off), static_cast<std::uint8_t*>(out), id,
                        threads);
    case 2:
      return WriteRowsT(rows, nrows, cols, static_cast<std::uint16_t>(pat.on),
                        static_cast<std::uint16_t>(pat.off), static_cast<std::uint16_t*>(out), id,
                        threads);
    default:
      return WriteRowsT(rows, nrows, cols, pat.on, pat.off, static_cast<std::uint32_t*>(out), id,
                        threads);
  }
}

void BuildMaskPart(const MaskView& m, const Pattern& pat, void* out, int id, int threads) {
  WriteRows(MaskRows{&m}, m.B * m.Lq, m.Lk, pat, out, id, threads);
}

void KeepFromLengthsPart(const std::int32_t* lengths, std::int64_t B, std::int64_t L,
                         PaddingSide side, std::uint8_t* keep, int id, int threads) {
  WriteRows(LengthRows{lengths, L, side}, B, L, Pattern{1, 1u, 0u}, keep, id, threads);
}

// ---- convert_mask: out[i] = decode(in[i]) ? on : off over [i0, i1) ----------------------------

template <class TI, class TO>
void ConvertT(const TI* HWY_RESTRICT in, TO* HWY_RESTRICT out, std::int64_t i0, std::int64_t i1,
              const Decoder& dec, TO on, TO off) {
  switch (dec.kind) {
    case Decoder::keep:
      for (std::int64_t i = i0; i < i1; ++i) out[i] = in[i] != 0 ? on : off;
      break;
    case Decoder::masked_out:
      for (std::int64_t i = i0; i < i1; ++i) out[i] = in[i] == 0 ? on : off;
      break;
    case Decoder::additive: {
      constexpr TI kSign = static_cast<TI>(TI{1} << (8 * sizeof(TI) - 1));
      const auto inf = static_cast<TI>(dec.inf_bits), thresh = static_cast<TI>(dec.thresh_mag);
      for (std::int64_t i = i0; i < i1; ++i) {
        const TI v = in[i];
        const TI mag = static_cast<TI>(v & static_cast<TI>(kSign - 1));
        const bool visible = (mag <= inf) & (((v & kSign) == 0) | (mag < thresh));
        out[i] = visible ? on : off;
      }
      break;
    }
  }
}

template <class TI>
void ConvertFrom(const TI* in, void* out, std::int64_t i0, std::int64_t i1, const Decoder& dec,
                 const Pattern& to) {
  switch (to.bytes) {
    case 1:
      return ConvertT(in, static_cast<std::uint8_t*>(out), i0, i1, dec,
                      static_cast<std::uint8_t>(to.on), static_cast<std::uint8_t>(to.off));
    case 2:
      return ConvertT(in, static_cast<std::uint16_t*>(out), i0, i1, dec,
                      static_cast<std::uint16_t>(to.on), static_cast<std::uint16_t>(to.off));
    default:
      return ConvertT(in, static_cast<std::uint32_t*>(out), i0, i1, dec, to.on, to.off);
  }
}

void ConvertPart(const void* in, const Decoder& dec, const Pattern& to, std::int64_t n, void* out,
                 int id, int threads) {
  // Slices of whole 64-byte lines of the output, so that threads never share one.
  constexpr std::int64_t kLine = 64;
  const std::int64_t lines = (n + kLine - 1) / kLine;
  const std::int64_t i0 = std::min(n, lines * id / threads * kLine);
  const std::int64_t i1 = std::min(n, lines * (id + 1) / threads * kLine);
  switch (dec.bytes) {
    case 1:
      return ConvertFrom(static_cast<const std::uint8_t*>(in), out, i0, i1, dec, to);
    case 2:
      return ConvertFrom(static_cast<const std::uint16_t*>(in), out, i0, i1, dec, to);
    default:
      return ConvertFrom(static_cast<const std::uint32_t*>(in), out, i0, i1, dec, to);
  }
}

}  // namespace maskcheck::cpu::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace maskcheck::cpu {

HWY_EXPORT(BuildMaskPart);
HWY_EXPORT(KeepFromLengthsPart);
HWY_EXPORT(ConvertPart);

using namespace masks_detail;

namespace {

// Runs part(id, threads) on `threads` OpenMP threads (inline for one).
template <class F>
void run_parts(int threads, const F& part) {
  if (threads <= 1) return part(0, 1);
#pragma omp parallel num_threads(threads)
  part(omp_get_thread_num(), omp_get_num_threads());
}

void require_lengths(const char* name, const std::int32_t* lengths, std::int64_t B, std::int64_t L,
                     const char* L_name) {
  for (std::int64_t b = 0; b < B; ++b)
    require(lengths[b] >= 0 && lengths[b] <= L, name + ("[" + std::to_string(b) + "]"), lengths[b],
            "must be in [0, " + std::string(L_name) + "=" + std::to_string(L) + "]");
}

}  // namespace

// out: [B, Lq, Lk]
void build_mask(const MaskView& mask, MaskEncoding e, DType t, void* out) {
  require_encoding(e, "encoding");
  require_mask_dtype(t);
  require(mask.B >= 0, "B", mask.B, "must be >= 0");
  require(mask.Lq >= 0 && mask.Lq < (std::int64_t{1} << 31), "Lq", mask.Lq, "must be in [0, 2^31)");
  require(mask.Lk >= 0 && mask.Lk < (std::int64_t{1} << 31), "Lk", mask.Lk, "must be in [0, 2^31)");
  const std::int64_t n = checked_numel("mask", {mask.B, mask.Lq, mask.Lk});
  if (n == 0) return;
  const Pattern pat = pattern_of(e, t);
  (void)checked_numel("mask bytes", {n, pat.bytes});
  if (out == nullptr) throw_invalid("out", "nullptr", "must point to [B, Lq, Lk] elements");
  require_aligned(out, pat.bytes, "out");
  if (mask.q_lens) require_lengths("q_lens", mask.q_lens, mask.B, mask.Lq, "Lq");
  if (mask.k_lens) require_lengths("k_lens", mask.k_lens, mask.B, mask.Lk, "Lk");
  run_parts(threads_for(n * pat.bytes), [&](int id, int threads) {
    HWY_DYNAMIC_DISPATCH(BuildMaskPart)(mask, pat, out, id, threads);
  });
  // Attention sinks apart from a row's window (the rows above wrote its window only): a second
  // pass sets the sink keys (at most sink_tokens entries per row, after the writers' barrier).
  if (mask.sink_tokens > 0) {
    const std::int64_t rows = mask.B * mask.Lq;
    run_parts(threads_for(rows * std::min(mask.sink_tokens, mask.Lk) * pat.bytes),
              [&](int id, int threads) {
                for (std::int64_t row = rows * id / threads; row < rows * (id + 1) / threads;
                     ++row) {
                  const KeyRange sk = row_keys(mask, row / mask.Lq, row % mask.Lq).sinks;
                  for (std::int64_t k = sk.begin; k < sk.end; ++k) {
                    const std::int64_t at = row * mask.Lk + k;
                    switch (pat.bytes) {
                      case 1:
                        static_cast<std::uint8_t*>(out)[at] = static_cast<std::uint8_t>(pat.on);
                        break;
                      case 2:
                        static_cast<std::uint16_t*>(out)[at] = static_cast<std::uint16_t>(pat.on);
                        break;
                      default:
                        static_cast<std::uint32_t*>(out)[at] = pat.on;
                    }
                  }
                }
              });
  }
}

// in, out: [n]
void convert_mask(const void* in, MaskEncoding from, MaskEncoding to, DType t, std::int64_t n,
                  void* out) {
  require_encoding(from, "from");
  require_encoding(to, "to");
  require_mask_dtype(t);
  require(n >= 0, "n", n, "must be >= 0");
  if (n == 0) return;
  if (in == nullptr) throw_invalid("in", "nullptr", "must point to n elements");
  if (out == nullptr) throw_invalid("out", "nullptr", "must point to n elements");
  const Decoder dec = decoder_of(from, t);
  const Pattern pat = pattern_of(to, t);
  require_aligned(in, dec.bytes, "in");
  require_aligned(out, pat.bytes, "out");
  (void)checked_numel("mask bytes", {n, dec.bytes + pat.bytes});
  run_parts(threads_for(n * (dec.bytes + pat.bytes)), [&](int id, int threads) {
    HWY_DYNAMIC_DISPATCH(ConvertPart)(in, dec, pat, n, out, id, threads);
  });
}

// lengths: [B] -> keep: [B, L]
void keep_from_lengths(const std::int32_t* lengths, std::int64_t B, std::int64_t L,
                       PaddingSide side, std::uint8_t* keep) {
  require(B >= 0, "B", B, "must be >= 0");
  require(L >= 0, "L", L, "must be >= 0");
  const std::int64_t n = checked_numel("keep", {B, L});
  if (B > 0 && lengths == nullptr) throw_invalid("lengths", "nullptr", "must point to B lengths");
  if (lengths) require_lengths("lengths", lengths, B, L, "L");
  if (n == 0) return;
  if (keep == nullptr) throw_invalid("keep", "nullptr", "must point to [B, L] bytes");
  run_parts(threads_for(n), [&](int id, int threads) {
    HWY_DYNAMIC_DISPATCH(KeepFromLengthsPart)(lengths, B, L, side, keep, id, threads);
  });
}

// lengths: [B] -> last: [B]
void last_valid_index(const std::int32_t* lengths, std::int64_t B, std::int64_t L, PaddingSide side,
                      std::int64_t* last) {
  require(B >= 0, "B", B, "must be >= 0");
  require(L >= 0, "L", L, "must be >= 0");
  if (B == 0) return;
  if (lengths == nullptr) throw_invalid("lengths", "nullptr", "must point to B lengths");
  if (last == nullptr) throw_invalid("last", "nullptr", "must point to B int64");
  require_lengths("lengths", lengths, B, L, "L");
  for (std::int64_t b = 0; b < B; ++b)
    last[b] = lengths[b] == 0 ? -1 : valid_begin(side, L, lengths[b]) + lengths[b] - 1;
}

}  // namespace maskcheck::cpu
#endif  // HWY_ONCE
