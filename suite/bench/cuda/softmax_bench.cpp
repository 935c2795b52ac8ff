// Masked softmax over the last axis: maskcheck::cuda::masked_softmax (the structured mask, masked
// entries never read) against LibTorch softmax(x + additive -inf mask [B, 1, Lq, Lk]).
//
// Names: softmax/<dtype>/Lk<keys>/Lq<rows>/pad<p>/<mask>/<impl>, impl maskcheck or torch.
// Shapes (full): f16, bf16, f32; rows of 1024, 8192 and 131072 keys; B = 4, H = 16 and Lq such
// that every case holds 2^27 elements; masks none, padding (keys only, 25 % mean padding) and
// causal (bottom-right, so with Lq < Lk the rows are the last Lq of a causal triangle).
// CI: f16, bf16, keys 256 and 4096, 2^14 elements.
// Counters: bytes_per_second and bw_frac with minimal bytes = visible entries of x read once +
// every entry of y written once.
#include <memory>
#include <string>
#include <vector>

#include "../check.hpp"
#include "../harness.hpp"
#include "cuda_harness.hpp"
#include "fill.hpp"
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
    return "softmax/" + dtype_name(t) + "/Lk" + std::to_string(Lk) + "/Lq" + std::to_string(Lq) +
           "/pad" + std::to_string(pad) + "/" + mask;
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

struct SoftmaxFixture : CaseImpls {
  SoftmaxCase c;
  SoftmaxProblem p;
  std::unique_ptr<cuda::DeviceMask> mask;
  cuda::DeviceBuffer x, y;
  RowReference ref;
  Work work;
  std::string shape;
};

std::unique_ptr<SoftmaxFixture> make_fixture(const SoftmaxCase& c) {
  auto f = std::make_unique<SoftmaxFixture>();
  f->c = c;
  f->p = make_problem(c);
  const std::int64_t n = f->p.numel();
  const std::size_t es = dtype_bytes(c.t);
  f->mask = std::make_unique<cuda::DeviceMask>(f->p.mask, kStream);
  f->x = cuda::DeviceBuffer(static_cast<std::size_t>(n) * es);
  f->y = cuda::DeviceBuffer(static_cast<std::size_t>(n) * es);
  const std::uint64_t s = mix(seed(), name_hash(c.key()));
  fill_uniform(f->x.get(), c.t, n, mix(s, 1), -8.0, 8.0, kStream);
  cuda::check(cudaDeviceSynchronize(), "fill");
  f->ref = softmax_rows(f->p, download(f->x.get(), c.t, n), s);
  const double visible = static_cast<double>(c.H) * visible_pairs(f->p.mask);
  f->work.bytes = static_cast<double>(es) * (visible + static_cast<double>(n));
  f->work.memory_bound = true;
  f->shape = "B=" + std::to_string(c.B) + " H=" + std::to_string(c.H);
  return f;
}

Prepared build(SoftmaxFixture& f, const std::string& impl, const std::string& name) {
  Prepared pr;
  std::string notes;
  const bool ours = impl == "maskcheck";
  if (ours) {
    pr.launch = [&f] {
      cuda::masked_softmax(f.p, f.mask->view(), f.c.t, f.x.get(), f.y.get(), kStream);
    };
  } else {
#if MASKCHECK_BENCH_TORCH
    auto peer = std::make_shared<torch_peers::SoftmaxPeer>(f.p, f.c.t, torch_peers::Device::cuda,
                                                           f.x.get(), f.y.get());
    pr.launch = [peer] { peer->run(); };
    notes = peer->description();
#else
    throw std::runtime_error("unknown implementation " + impl);
#endif
  }
  pr.launch();
  cuda::check(cudaDeviceSynchronize(), "first run");
  const HostTensor y = download(f.y.get(), f.c.t, f.p.numel());
  const std::int64_t H = f.p.H, Lq = f.p.mask.Lq, Lk = f.p.mask.Lk;
  pr.check = check_rows("y", f.ref, f.c.t,
                        [&](std::int64_t b, std::int64_t h, std::int64_t q, std::int64_t j) {
                          return y.at(((b * H + h) * Lq + q) * Lk + j);
                        });
  record_check(name, pr.check, ours);
  pr.work = f.work;
  pr.label = f.shape + (notes.empty() ? "" : " | " + notes) + " | check: " + pr.check.message;
  return pr;
}

void add_softmax(const SoftmaxCase& c, const std::string& impl) {
  const std::string name = c.key() + "/" + impl;
  add(name, [c, impl, name](benchmark::State& state) {
    run_prepared(state, name, impl == "maskcheck", [&]() -> Prepared& {
      auto& f = CaseCache::get<SoftmaxFixture>(c.key(), [&] { return make_fixture(c); });
      return f.get(impl, [&] { return build(f, impl, name); });
    });
  });
}

void register_softmax() {
  std::vector<DType> dtypes{DType::f16, DType::bf16, DType::f32};
  std::vector<std::int64_t> keys{1024, 8192, 131072};
  std::int64_t elements = std::int64_t{1} << 27, B = 4, H = 16;
  if (ci()) {
    dtypes = {DType::f16, DType::bf16};
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
        add_softmax(c, "torch");
#endif
      }
}

}  // namespace

MASKCHECK_BENCH_SUITE(softmax, register_softmax);

}  // namespace maskcheck::bench
