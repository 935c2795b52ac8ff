// Masked softmax over the last axis on the CPU: maskcheck::cpu::masked_softmax (the structured
// mask, masked entries never read) against LibTorch softmax(x + additive -inf mask [B, 1, Lq, Lk])
// on the CPU (the mask materialized once, the sum allocated per call, as a framework does it).
//
// Names: cpu/softmax/<dtype>/Lk<keys>/Lq<rows>/pad<p>/<mask>/<impl>, impl maskcheck or torch.
// Shapes (full): f32, bf16; rows of 256, 1024, 8192 and 65536 keys; B = 4, H = 16 and Lq such
// that every case holds 2^26 elements (f32: x and y 256 MiB each, beyond the last-level cache;
// a call moves about half a GiB, tens of ms at memory speed); masks none, padding (keys only, 25 %
// mean padding) and causal (bottom-right, so with Lq < Lk the rows are the last Lq of a causal
// triangle). CI: f32, bf16, keys 256 and 4096, 2^14 elements.
// Counters: bytes_per_second and bw_frac with minimal bytes = visible entries of x read once +
// every entry of y written once.
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "../check.hpp"
#include "../harness.hpp"
#include "cpu_harness.hpp"
#include "maskcheck/kernels/cpu.hpp"
#if MASKCHECK_BENCH_TORCH
#include "maskcheck/adapters/torch_peers.hpp"
#endif

namespace maskcheck::bench {

namespace {

struct SoftmaxCase {
  DType t = DType::f32;
  std::int64_t B = 1, H = 1, Lq = 1, Lk = 1;
  int pad = 0;
  std::string mask;  // none, padding, causal
  std::string key() const {
    return "cpu/softmax/" + dtype_name(t) + "/Lk" + std::to_string(Lk) + "/Lq" +
           std::to_string(Lq) + "/pad" + std::to_string(pad) + "/" + mask;
  }
};

SoftmaxProblem make_problem(const SoftmaxCase& c) {
  SoftmaxProblem p;
  p.H = c.H;
  p.mask.B = c.B;
  p.mask.Lq = c.Lq;
  p.mask.Lk = c.Lk;
  Rng rng(mix(seed(), name_hash(c.key())));
  if (c.mask == "padding") p.mask.k_lens = draw_lengths(c.B, c.Lk, c.pad, rng);
  if (c.mask == "causal") p.mask.causal = true;
  return p;
}

struct SoftmaxFixture : CpuCaseImpls {
  SoftmaxCase c;
  SoftmaxProblem p;
  std::unique_ptr<FlatMask> flat;
  CpuBuffer x;
  std::map<std::string, CpuBuffer> ys;  // one output buffer per implementation
  RowReference ref;
  CpuWork work;
  std::string shape;
};

std::unique_ptr<SoftmaxFixture> make_fixture(const SoftmaxCase& c) {
  auto f = std::make_unique<SoftmaxFixture>();
  f->c = c;
  f->p = make_problem(c);
  f->flat = std::make_unique<FlatMask>(f->p.mask);
  const std::int64_t n = f->p.numel();
  const std::size_t es = dtype_bytes(c.t);
  f->x = CpuBuffer(static_cast<std::size_t>(n) * es);
  const std::uint64_t s = mix(seed(), name_hash(c.key()));
  cpu_fill_uniform(f->x.get(), c.t, n, mix(s, 1), -8.0, 8.0);
  f->ref = softmax_rows(f->p, host_copy(f->x.get(), c.t, n), s);
  const double visible = static_cast<double>(c.H) * visible_pairs(f->p.mask);
  f->work.bytes = static_cast<double>(es) * (visible + static_cast<double>(n));
  f->work.memory_bound = true;
  f->shape = "B=" + std::to_string(c.B) + " H=" + std::to_string(c.H);
  return f;
}

CpuPrepared build(SoftmaxFixture& f, const std::string& impl, const std::string& name) {
  CpuPrepared pr;
  std::string notes;
  const bool ours = impl == "maskcheck";
  const std::size_t bytes = static_cast<std::size_t>(f.p.numel()) * dtype_bytes(f.c.t);
  CpuBuffer& y_buf = f.ys[impl] = CpuBuffer(bytes);
  void* y = y_buf.get();
  if (bytes > 0) std::memset(y, 0xFF, bytes);  // poison: NaN in f32 and bf16
  if (ours) {
    pr.run = [&f, y] { cpu::masked_softmax(f.p, f.flat->view(), f.c.t, f.x.get(), y); };
    notes = "maskcheck::cpu (" + cpu::simd_target() + ", " + std::to_string(cpu::max_threads()) +
            " threads)";
  } else {
#if MASKCHECK_BENCH_TORCH
    auto peer = std::make_shared<torch_peers::SoftmaxPeer>(f.p, f.c.t, torch_peers::Device::cpu,
                                                           f.x.get(), y);
    pr.run = [peer] { peer->run(); };
    notes = peer->description();
#else
    throw std::runtime_error("unknown implementation " + impl);
#endif
  }
  pr.run();
  const std::int64_t H = f.p.H, Lq = f.p.mask.Lq, Lk = f.p.mask.Lk;
  const DType t = f.c.t;
  pr.check = check_rows("y", f.ref, t,
                        [&](std::int64_t b, std::int64_t h, std::int64_t q, std::int64_t j) {
                          return value_at(y, t, ((b * H + h) * Lq + q) * Lk + j);
                        });
  record_check(name, pr.check, ours);
  pr.work = f.work;
  pr.label = check_label(f.shape, notes, pr.check);
  return pr;
}

void add_softmax(const SoftmaxCase& c, const std::string& impl) {
  const std::string name = c.key() + "/" + impl;
  add_cpu(name, [c, impl, name](benchmark::State& state) {
    run_cpu(state, name, impl == "maskcheck", [&]() -> CpuPrepared& {
      auto& f = CaseCache::get<SoftmaxFixture>(c.key(), [&] { return make_fixture(c); });
      return f.get(impl, [&] { return build(f, impl, name); });
    });
  });
}

void register_softmax() {
  std::vector<DType> dtypes{DType::f32, DType::bf16};
  std::vector<std::int64_t> keys{256, 1024, 8192, 65536};
  std::int64_t elements = std::int64_t{1} << 26, B = 4, H = 16;
  if (ci()) {
    keys = {256, 4096};
    elements = std::int64_t{1} << 14;
    B = 2;
    H = 2;
  }
  const std::pair<const char*, int> masks[] = {{"none", 0}, {"padding", 25}, {"causal", 0}};
  for (DType t : dtypes)
    for (std::int64_t Lk : keys)
      for (const auto& [mask, pad] : masks) {
        SoftmaxCase c;
        c.t = t;
        c.B = B;
        c.H = H;
        c.Lk = Lk;
        c.Lq = std::max<std::int64_t>(1, elements / (B * H * Lk));
        c.pad = pad;
        c.mask = mask;
        add_softmax(c, "maskcheck");
#if MASKCHECK_BENCH_TORCH
        if (const std::string why = torch_cpu_unusable(t); why.empty())
          add_softmax(c, "torch");
        else
          note_pruned(c.key() + "/torch", why);
#endif
      }
}

}  // namespace

MASKCHECK_BENCH_SUITE(cpu_softmax, register_softmax);

}  // namespace maskcheck::bench
