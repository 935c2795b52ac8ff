// Mask materialization on the CPU: maskcheck::cpu::build_mask writing the padding+causal mask
// [B, L, L] as a uint8 keep-mask and as an additive 0/-inf f32 mask (what a framework's attn_mask
// costs to build), checked bit for bit against ref::build_keep_mask / ref::encode_mask.
//
// Names: cpu/build_mask/<encoding>/<dtype>/L<l>/pad<p>/padding+causal/maskcheck. Full: B 32,
// L 2048, 25 % mean padding (the f32 mask is 512 MiB, beyond the last-level cache; the u8 one
// 128 MiB); CI: B 2, L 256. Counters: bytes_per_second and bw_frac with minimal bytes = the mask
// written once.
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "../harness.hpp"
#include "cpu_harness.hpp"
#include "maskcheck/kernels/cpu.hpp"
#include "maskcheck/reference/masks.hpp"
#include "maskcheck/suite/tolerance.hpp"

namespace maskcheck::bench {

namespace {

struct MaskCase {
  MaskEncoding e = MaskEncoding::keep;
  DType t = DType::f32;  // ignored for keep (uint8)
  std::int64_t B = 1, L = 1;
  int pad = 0;
  std::string type() const { return e == MaskEncoding::keep ? "u8" : dtype_name(t); }
  std::string key() const {
    return "cpu/build_mask/" + std::string(to_string(e)) + "/" + type() + "/L" + std::to_string(L) +
           "/pad" + std::to_string(pad) + "/padding+causal";
  }
  std::size_t element_bytes() const { return e == MaskEncoding::keep ? 1 : dtype_bytes(t); }
};

struct MaskFixture : CpuCaseImpls {
  MaskCase c;
  MaskSpec spec;
  std::unique_ptr<FlatMask> flat;
  CpuBuffer out;
  CpuWork work;
};

std::unique_ptr<MaskFixture> make_fixture(const MaskCase& c) {
  auto f = std::make_unique<MaskFixture>();
  f->c = c;
  MaskSpec& m = f->spec;
  m.B = c.B;
  m.Lq = m.Lk = c.L;
  Rng rng(mix(seed(), name_hash("cpu/build_mask/L" + std::to_string(c.L))));
  m.q_lens = draw_lengths(c.B, c.L, c.pad, rng);
  m.k_lens = m.q_lens;
  m.causal = true;
  f->flat = std::make_unique<FlatMask>(m);
  const std::size_t bytes = static_cast<std::size_t>(c.B * c.L * c.L) * c.element_bytes();
  f->out = CpuBuffer(bytes);
  if (bytes > 0) std::memset(f->out.get(), 0xA5, bytes);  // poison: neither 0, 1 nor -inf
  f->work.bytes = static_cast<double>(bytes);
  f->work.memory_bound = true;
  return f;
}

// Bit-exact per sequence (the [L, L] slice of sequence b at a time keeps the doubles small).
CheckOutcome check_mask(const MaskFixture& f) {
  const std::vector<std::uint8_t> keep = ref::build_keep_mask(f.spec);
  const std::int64_t B = f.c.B, L = f.c.L, slice = L * L;
  const Shape shape{{"q", "k"}, {L, L}};
  CheckOutcome out;
  std::vector<double> got(static_cast<std::size_t>(slice)), want;
  for (std::int64_t b = 0; b < B && out.ok; ++b) {
    const std::span<const std::uint8_t> kb(keep.data() + b * slice,
                                           static_cast<std::size_t>(slice));
    if (f.c.e == MaskEncoding::keep) {
      want.assign(kb.begin(), kb.end());
      const std::uint8_t* g = f.out.as<const std::uint8_t>() + b * slice;
      for (std::int64_t i = 0; i < slice; ++i) got[static_cast<std::size_t>(i)] = g[i];
    } else {
      want = ref::encode_mask(kb, f.c.e, f.c.t);
      for (std::int64_t i = 0; i < slice; ++i)
        got[static_cast<std::size_t>(i)] = value_at(f.out.get(), f.c.t, b * slice + i);
    }
    const CheckResult r = check_exact("mask", shape, got, want);
    if (!r.ok) {
      out.ok = false;
      out.message = "sequence b=" + std::to_string(b) + ": " + r.report();
    }
  }
  if (out.ok) out.message = "bit-exact on " + std::to_string(B * slice) + " entries";
  return out;
}

CpuPrepared build(MaskFixture& f, const std::string& name) {
  CpuPrepared pr;
  pr.run = [&f] { cpu::build_mask(f.flat->view(), f.c.e, f.c.t, f.out.get()); };
  pr.run();
  pr.check = check_mask(f);
  record_check(name, pr.check, true);
  pr.work = f.work;
  pr.label = check_label("B=" + std::to_string(f.c.B),
                         "maskcheck::cpu (" + cpu::simd_target() + ", " +
                             std::to_string(cpu::max_threads()) + " threads)",
                         pr.check);
  return pr;
}

void register_masks() {
  for (MaskEncoding e : {MaskEncoding::keep, MaskEncoding::additive_inf}) {
    MaskCase c;
    c.e = e;
    c.t = DType::f32;
    c.B = ci() ? 2 : 32;
    c.L = ci() ? 256 : 2048;
    c.pad = 25;
    const std::string name = c.key() + "/maskcheck";
    add_cpu(name, [c, name](benchmark::State& state) {
      run_cpu(state, name, true, [&]() -> CpuPrepared& {
        auto& f = CaseCache::get<MaskFixture>(c.key(), [&] { return make_fixture(c); });
        return f.get("maskcheck", [&] { return build(f, name); });
      });
    });
  }
}

}  // namespace

MASKCHECK_BENCH_SUITE(cpu_build_mask, register_masks);

}  // namespace maskcheck::bench
