// Mask materialization: maskcheck::cuda::build_mask writing the padding+causal mask [B, L, L] as a
// uint8 keep-mask and as an additive 0/-inf bf16 mask (what a framework's attn_mask costs to
// build), checked bit for bit against ref::build_keep_mask / ref::encode_mask.
//
// Names: build_mask/<encoding>/<dtype>/L<l>/pad<p>/padding+causal/maskcheck. Full: B 8, L 2048,
// 25 % mean padding; CI: B 2, L 256. Counters: bytes_per_second and bw_frac with minimal bytes =
// the mask written once.
#include <memory>
#include <string>
#include <vector>

#include "../harness.hpp"
#include "cuda_harness.hpp"
#include "maskcheck/reference/masks.hpp"
#include "maskcheck/suite/tolerance.hpp"

namespace maskcheck::bench {

namespace {

struct MaskCase {
  MaskEncoding e = MaskEncoding::keep;
  DType t = DType::bf16;  // ignored for keep (uint8)
  std::int64_t B = 1, L = 1;
  int pad = 0;
  std::string type() const { return e == MaskEncoding::keep ? "u8" : dtype_name(t); }
  std::string key() const {
    return "build_mask/" + std::string(to_string(e)) + "/" + type() + "/L" + std::to_string(L) +
           "/pad" + std::to_string(pad) + "/padding+causal";
  }
  std::size_t element_bytes() const { return e == MaskEncoding::keep ? 1 : dtype_bytes(t); }
};

struct MaskFixture : CaseImpls {
  MaskCase c;
  MaskSpec spec;
  std::unique_ptr<cuda::DeviceMask> mask;
  cuda::DeviceBuffer out;
  Work work;
};

std::unique_ptr<MaskFixture> make_fixture(const MaskCase& c) {
  auto f = std::make_unique<MaskFixture>();
  f->c = c;
  MaskSpec& m = f->spec;
  m.B = c.B;
  m.Lq = m.Lk = c.L;
  Rng rng(mix(seed(), name_hash("build_mask/L" + std::to_string(c.L))));
  m.q_lens = draw_lengths(c.B, c.L, c.pad, rng);
  m.k_lens = m.q_lens;
  m.causal = true;
  f->mask = std::make_unique<cuda::DeviceMask>(m, kStream);
  const std::int64_t n = c.B * c.L * c.L;
  f->out = cuda::DeviceBuffer(static_cast<std::size_t>(n) * c.element_bytes());
  f->work.bytes = static_cast<double>(f->out.bytes());
  f->work.memory_bound = true;
  return f;
}

Prepared build(MaskFixture& f, const std::string& name) {
  Prepared pr;
  pr.launch = [&f] { cuda::build_mask(f.mask->view(), f.c.e, f.c.t, f.out.get(), kStream); };
  pr.launch();
  cuda::check(cudaDeviceSynchronize(), "first run");
  const std::int64_t n = f.c.B * f.c.L * f.c.L;
  const std::vector<std::uint8_t> keep = ref::build_keep_mask(f.spec);
  std::vector<double> got, want;
  if (f.c.e == MaskEncoding::keep) {
    const auto g = download_vector<std::uint8_t>(f.out.get(), n);
    got.assign(g.begin(), g.end());
    want.assign(keep.begin(), keep.end());
  } else {
    const HostTensor g = download(f.out.get(), f.c.t, n);
    got.resize(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) got[static_cast<std::size_t>(i)] = g.at(i);
    want = ref::encode_mask(keep, f.c.e, f.c.t);
  }
  const Shape shape{{"b", "q", "k"}, {f.c.B, f.c.L, f.c.L}};
  const CheckResult r = check_exact("mask", shape, got, want);
  pr.check.ok = r.ok;
  pr.check.message = r.ok ? "bit-exact on " + std::to_string(n) + " entries" : r.report();
  record_check(name, pr.check, true);
  pr.work = f.work;
  pr.label = "B=" + std::to_string(f.c.B) + " | check: " + pr.check.message;
  return pr;
}

void register_masks() {
  for (MaskEncoding e : {MaskEncoding::keep, MaskEncoding::additive_inf}) {
    MaskCase c;
    c.e = e;
    c.t = DType::bf16;
    c.B = ci() ? 2 : 8;
    c.L = ci() ? 256 : 2048;
    c.pad = 25;
    const std::string name = c.key() + "/maskcheck";
    add(name, [c, name](benchmark::State& state) {
      run_prepared(state, name, true, [&]() -> Prepared& {
        auto& f = CaseCache::get<MaskFixture>(c.key(), [&] { return make_fixture(c); });
        return f.get("maskcheck", [&] { return build(f, name); });
      });
    });
  }
}

}  // namespace

MASKCHECK_BENCH_SUITE(build_mask, register_masks);

}  // namespace maskcheck::bench
