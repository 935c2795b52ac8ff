// Mask materialization, one case table for every target: maskcheck's kernels (cpu::build_mask,
// cuda::build_mask) writing the padding+causal mask [B, L, L] as a uint8 keep-mask and as an
// additive 0/-inf mask (what a framework's attn_mask costs to build), checked bit for bit against
// ref::build_keep_mask / ref::encode_mask.
//
// Names: <device>/build_mask/<encoding>/<dtype>/L<l>/pad<p>/padding+causal/maskcheck. L 2048,
// 25 % mean padding; per device:
//   cpu   additive in f32, B 32 (the f32 mask is 512 MiB, beyond the last-level cache; the u8 one
//         128 MiB).
//   cuda  additive in bf16, B 8.
// CI: B 2, L 256. Counters: bytes_per_second and bw_frac with minimal bytes = the mask written
// once.
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "check.hpp"
#include "harness.hpp"
#include "maskcheck/kernels/cpu.hpp"
#include "maskcheck/reference/masks.hpp"
#include "maskcheck/suite/tolerance.hpp"
#if MASKCHECK_BENCH_CUDA
#include "cuda/cuda_harness.hpp"
#endif

namespace maskcheck::bench {

namespace {

struct MaskCase {
  Device device = Device::cpu;
  MaskEncoding e = MaskEncoding::keep;
  DType t = DType::f32;  // ignored for keep (uint8)
  std::int64_t B = 1, L = 1;
  int pad = 0;
  std::string type() const { return e == MaskEncoding::keep ? "u8" : dtype_name(t); }
  std::string key() const {
    return device_name(device) + "/build_mask/" + std::string(to_string(e)) + "/" + type() + "/L" +
           std::to_string(L) + "/pad" + std::to_string(pad) + "/padding+causal";
  }
  std::size_t element_bytes() const { return e == MaskEncoding::keep ? 1 : dtype_bytes(t); }
};

// The case table.
std::vector<MaskCase> cases(Device d) {
  std::vector<MaskCase> out;
  for (MaskEncoding e : {MaskEncoding::keep, MaskEncoding::additive_inf}) {
    MaskCase c;
    c.device = d;
    c.e = e;
    c.t = d == Device::cpu ? DType::f32 : DType::bf16;
    c.B = ci() ? 2 : (d == Device::cpu ? 32 : 8);
    c.L = ci() ? 256 : 2048;
    c.pad = 25;
    out.push_back(c);
  }
  return out;
}

struct MaskFixture : CaseImpls {
  MaskCase c;
  MaskSpec spec;
  std::unique_ptr<KernelMask> mask;
  Buffer out;
  Work work;
};

std::unique_ptr<MaskFixture> make_fixture(const MaskCase& c) {
  auto f = std::make_unique<MaskFixture>();
  f->c = c;
  MaskSpec& m = f->spec;
  m.B = c.B;
  m.Lq = m.Lk = c.L;
  // Both encodings of a length draw the same lengths.
  Rng rng(mix(seed(), case_stream(device_name(c.device) + "/build_mask/L" + std::to_string(c.L))));
  m.q_lens = draw_lengths(c.B, c.L, c.pad, rng);
  m.k_lens = m.q_lens;
  m.causal = true;
  f->mask = device(c.device).mask(m);
  const std::size_t bytes = static_cast<std::size_t>(c.B * c.L * c.L) * c.element_bytes();
  f->out = Buffer(c.device, bytes);
  f->out.fill(0xA5);  // poison: neither 0, 1 nor -inf
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
    const auto* at = static_cast<const char*>(f.out.get()) +
                     static_cast<std::size_t>(b * slice) * f.c.element_bytes();
    if (f.c.e == MaskEncoding::keep) {
      want.assign(kb.begin(), kb.end());
      const auto g = to_host_vector<std::uint8_t>(f.c.device, at, slice);
      got.assign(g.begin(), g.end());
    } else {
      want = ref::encode_mask(kb, f.c.e, f.c.t);
      const Readback g(f.c.device, at, f.c.t, slice);
      for (std::int64_t i = 0; i < slice; ++i) got[static_cast<std::size_t>(i)] = g.at(i);
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

// Runs once, checks the mask, records the check.
Prepared finish(const MaskFixture& f, const std::string& name, std::function<void()> run,
                const std::string& notes) {
  Prepared pr;
  pr.run = std::move(run);
  pr.run();
  device(f.c.device).synchronize();
  pr.check = check_mask(f);
  record_check(name, pr.check, true);
  pr.work = f.work;
  pr.label = check_label("B=" + std::to_string(f.c.B), notes, pr.check);
  return pr;
}

using MaskTarget = Target<MaskCase, MaskFixture>;

// maskcheck's kernel on a device: kernel(f) writes f.out.
MaskTarget maskcheck_target(Device d, void (*kernel)(const MaskFixture& f)) {
  return {.device = d,
          .impl = "maskcheck",
          .ours = true,
          .build = [kernel](MaskFixture& f, const std::string& name) {
            return finish(
                f, name, [&f, kernel] { kernel(f); }, device(f.c.device).kernels_note());
          }};
}

// Every implementation, one registration each, in the order of their rows.
std::vector<MaskTarget> targets() {
  std::vector<MaskTarget> t;
  t.push_back(maskcheck_target(Device::cpu, [](const MaskFixture& f) {
    cpu::build_mask(f.mask->view(), f.c.e, f.c.t, f.out.get());
  }));
#if MASKCHECK_BENCH_CUDA
  t.push_back(maskcheck_target(Device::cuda, [](const MaskFixture& f) {
    cuda::build_mask(f.mask->view(), f.c.e, f.c.t, f.out.get(), kStream);
  }));
#endif
  return t;
}

}  // namespace

MASKCHECK_BENCH_OPERATION(build_mask, cases, targets, make_fixture);

}  // namespace maskcheck::bench
