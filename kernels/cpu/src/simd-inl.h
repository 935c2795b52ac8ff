// Shared pieces of the Highway kernels (softmax.cpp, cross_entropy.cpp): per-thread fp32 row
// buffers, and per SIMD target the conversions between storage (f32, bf16) and fp32 vectors.
// Included after hwy/foreach_target.h, so the per-target part is compiled once per target (the
// Highway "-inl.h" include-guard toggle).
#include <hwy/aligned_allocator.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <new>

#ifndef MASKCHECK_CPU_SIMD_SHARED
#define MASKCHECK_CPU_SIMD_SHARED
namespace maskcheck::cpu::simd {

// Blocked rows (softmax over keys, cross-entropy over logits): x and e of a block (8 + 8 KiB in
// f32) stay in L1 between the max sweep and the exp sweep. Rows of more than kMaxBlocks * kBlock
// elements get proportionally larger blocks, so that the block statistics live on the stack.
constexpr std::int64_t kBlock = 2048;
constexpr std::int64_t kMaxBlocks = 1024;
// Below this many elements a call stays on the calling thread (the fork costs more).
constexpr std::int64_t kParallelWork = std::int64_t{1} << 15;
// Rows per chunk of the row loop: about this many elements.
constexpr std::int64_t kChunkElements = std::int64_t{1} << 16;

inline std::int64_t block_size(std::int64_t n) {
  const std::int64_t per = (n + kMaxBlocks - 1) / kMaxBlocks;
  return std::max(kBlock, (per + 63) / 64 * 64);
}

// fp32 row buffers: `threads` slices of `stride` floats. Allocated by the calling thread before
// the parallel region (so that a failure throws std::bad_alloc there, not inside it) and kept
// between its calls: a call after the first of a size allocates nothing and touches no new page.
// thread_local: callers on several threads never share one. One pool per kernel (Tag).
template <class Tag>
float* row_buffers(std::int64_t threads, std::int64_t stride) {
  thread_local hwy::AlignedFreeUniquePtr<float[]> buf;
  thread_local std::int64_t cap = 0;
  if (cap < threads * stride) {
    buf.reset();
    cap = 0;
    buf = hwy::AllocateAligned<float>(static_cast<std::size_t>(threads * stride));
    if (!buf) throw std::bad_alloc();
    cap = threads * stride;
  }
  return buf.get();
}

}  // namespace maskcheck::cpu::simd
#endif  // MASKCHECK_CPU_SIMD_SHARED

#if defined(MASKCHECK_CPU_SIMD_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef MASKCHECK_CPU_SIMD_INL_H_
#undef MASKCHECK_CPU_SIMD_INL_H_
#else
#define MASKCHECK_CPU_SIMD_INL_H_
#endif

#include <hwy/highway.h>

HWY_BEFORE_NAMESPACE();
namespace maskcheck::cpu::HWY_NAMESPACE::simd {

namespace hn = hwy::HWY_NAMESPACE;
using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;
constexpr std::size_t kMaxLanes = hn::MaxLanes(DF());

// ---- storage <-> fp32 vectors (bf16 rounds to nearest even, as maskcheck::bfloat16) ---------
HWY_INLINE VF LoadF32(DF df, const float* p) {
  return hn::LoadU(df, p);
}
HWY_INLINE VF LoadF32(DF df, const hwy::bfloat16_t* p) {
  const hn::Rebind<hwy::bfloat16_t, DF> dbf;
  return hn::PromoteTo(df, hn::LoadU(dbf, p));
}
HWY_INLINE void StoreF32(DF df, VF v, float* p) {
  hn::StoreU(v, df, p);
}
HWY_INLINE void StoreF32(DF df, VF v, hwy::bfloat16_t* p) {
  const hn::RebindToUnsigned<DF> du;
  const hn::RebindToSigned<DF> di;
  const hn::Rebind<std::uint16_t, DF> du16;
  const hn::Rebind<hwy::bfloat16_t, DF> dbf;
  (void)df;
  const auto bits = hn::BitCast(du, v);
  const auto odd = hn::And(hn::ShiftRight<16>(bits), hn::Set(du, 1u));
  auto hi = hn::ShiftRight<16>(hn::Add(bits, hn::Add(hn::Set(du, 0x7FFFu), odd)));
  // NaN stays a quiet NaN instead of rounding into the infinity next to it.
  hi = hn::IfThenElse(hn::RebindMask(du, hn::IsNaN(v)),
                      hn::Or(hn::ShiftRight<16>(bits), hn::Set(du, 0x40u)), hi);
  hn::StoreU(hn::BitCast(dbf, hn::DemoteTo(du16, hn::BitCast(di, hi))), dbf, p);
}
// The last count < Lanes elements, through a zero-padded stack buffer: nothing past them is
// read or written.
template <class T>
HWY_INLINE VF LoadTail(DF df, const T* p, std::int64_t count) {
  HWY_ALIGN T buf[kMaxLanes] = {};
  std::memcpy(buf, p, static_cast<std::size_t>(count) * sizeof(T));
  return LoadF32(df, buf);
}
template <class T>
HWY_INLINE void StoreTail(DF df, VF v, T* p, std::int64_t count) {
  HWY_ALIGN T buf[kMaxLanes];
  StoreF32(df, v, buf);
  std::memcpy(p, buf, static_cast<std::size_t>(count) * sizeof(T));
}

}  // namespace maskcheck::cpu::HWY_NAMESPACE::simd
HWY_AFTER_NAMESPACE();

#endif  // MASKCHECK_CPU_SIMD_INL_H_
