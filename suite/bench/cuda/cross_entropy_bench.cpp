// Cross-entropy forward + backward with ignore_index and reduction mean:
// maskcheck::cuda::cross_entropy (one call computes losses, the reduced loss and dlogits) against
// LibTorch cross_entropy + backward() (grad set to none between runs).
//
// Names: cross_entropy/<dtype>/V<vocab>/N<tokens>/ignore<p>/<impl>, impl maskcheck or torch.
// Shapes (full): f32, bf16; V 32768 (N 16384) and 131072 (N 4096), 2^29 logits each; 0 % and 50 %
// of the labels ignore_index. CI: V 1024, N 64.
// Counters: bytes_per_second and bw_frac with minimal bytes = logits of contributing rows read
// once + dlogits written once + labels read once.
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

struct LossCase {
  DType t = DType::f32;
  std::int64_t N = 1, V = 2;
  int ignore = 0;
  std::string key() const {
    return "cross_entropy/" + dtype_name(t) + "/V" + std::to_string(V) + "/N" + std::to_string(N) +
           "/ignore" + std::to_string(ignore);
  }
};

struct LossFixture : CaseImpls {
  LossCase c;
  LossProblem p;
  cuda::DeviceBuffer logits, labels, losses, dlogits, totals, workspace;
  LossReference ref;
  Work work;
  std::string shape;
};

std::unique_ptr<LossFixture> make_fixture(const LossCase& c) {
  auto f = std::make_unique<LossFixture>();
  f->c = c;
  LossProblem& p = f->p;
  p.N = c.N;
  p.V = c.V;
  p.reduction = Reduction::mean;
  const std::size_t es = dtype_bytes(c.t);
  const std::int64_t n = c.N * c.V;
  f->logits = cuda::DeviceBuffer(static_cast<std::size_t>(n) * es);
  f->dlogits = cuda::DeviceBuffer(static_cast<std::size_t>(n) * es);
  f->labels = cuda::DeviceBuffer(static_cast<std::size_t>(c.N) * sizeof(std::int64_t));
  f->losses = cuda::DeviceBuffer(static_cast<std::size_t>(c.N) * sizeof(float));
  f->totals = cuda::DeviceBuffer(sizeof(cuda::LossTotals));
  f->workspace = cuda::DeviceBuffer(cuda::cross_entropy_workspace_bytes(p));
  const std::uint64_t s = mix(seed(), name_hash(c.key()));
  // Logits in [-4, 4): the spread of a trained LM's logits (std ~2.3).
  fill_uniform(f->logits.get(), c.t, n, mix(s, 1), -4.0, 4.0, kStream);
  fill_labels(f->labels.as<std::int64_t>(), c.N, c.V, c.ignore / 100.0, p.ignore_index, mix(s, 2),
              kStream);
  cuda::check(cudaDeviceSynchronize(), "fill");
  const auto labels = download_vector<std::int64_t>(f->labels.get(), c.N);
  f->ref = cross_entropy_reference(p, download(f->logits.get(), c.t, n), labels, s);
  std::int64_t contributing = 0;
  for (std::int64_t l : labels) contributing += l != p.ignore_index ? 1 : 0;
  f->work.bytes = static_cast<double>(es) * static_cast<double>(contributing * c.V + n) +
                  8.0 * static_cast<double>(c.N);
  f->work.memory_bound = true;
  f->shape = std::to_string(contributing) + " of " + std::to_string(c.N) + " rows contribute";
  return f;
}

Prepared build(LossFixture& f, const std::string& impl, const std::string& name) {
  Prepared pr;
  std::string notes;
  const bool ours = impl == "maskcheck";
  const LossProblem& p = f.p;
  std::function<double()> loss;
  std::function<std::vector<double>()> rows;
  if (ours) {
    pr.launch = [&f] {
      cuda::cross_entropy(f.p, f.c.t, f.logits.get(), f.labels.as<std::int64_t>(), nullptr,
                          f.losses.as<float>(), f.dlogits.get(), f.totals.as<cuda::LossTotals>(),
                          f.workspace.get(), kStream);
    };
    loss = [&f] {
      return static_cast<double>(download_vector<cuda::LossTotals>(f.totals.get(), 1)[0].loss);
    };
    rows = [&f] {
      std::vector<double> out;
      const std::size_t es = dtype_bytes(f.c.t);
      for (std::int64_t r : f.ref.rows) {
        const HostTensor row =
            download(f.dlogits.as<char>() + static_cast<std::size_t>(r * f.p.V) * es, f.c.t, f.p.V);
        for (std::int64_t j = 0; j < f.p.V; ++j) out.push_back(row.at(j));
      }
      return out;
    };
  } else {
#if MASKCHECK_BENCH_TORCH
    auto peer = std::make_shared<torch_peers::CrossEntropyPeer>(
        p, f.c.t, torch_peers::Device::cuda, f.logits.get(), f.labels.as<std::int64_t>());
    pr.launch = [peer] { peer->run(); };
    loss = [peer] { return peer->loss(); };
    rows = [&f, peer] {
      std::vector<double> out;
      for (std::int64_t r : f.ref.rows) {
        const auto g = peer->grad_rows(r, r + 1);
        out.insert(out.end(), g.begin(), g.end());
      }
      return out;
    };
    notes = peer->description();
#else
    throw std::runtime_error("unknown implementation " + impl);
#endif
  }
  pr.launch();
  cuda::check(cudaDeviceSynchronize(), "first run");
  const std::vector<double> got_rows = rows();
  pr.check = check_cross_entropy(p, f.ref, f.c.t, loss(), got_rows);
  record_check(name, pr.check, ours);
  pr.work = f.work;
  pr.label = f.shape + (notes.empty() ? "" : " | " + notes) + " | check: " + pr.check.message;
  return pr;
}

void add_loss(const LossCase& c, const std::string& impl) {
  const std::string name = c.key() + "/" + impl;
  add(name, [c, impl, name](benchmark::State& state) {
    run_prepared(state, name, impl == "maskcheck", [&]() -> Prepared& {
      auto& f = CaseCache::get<LossFixture>(c.key(), [&] { return make_fixture(c); });
      return f.get(impl, [&] { return build(f, impl, name); });
    });
  });
}

void register_cross_entropy() {
  std::vector<std::pair<std::int64_t, std::int64_t>> shapes{{32768, 16384}, {131072, 4096}};
  if (ci()) shapes = {{1024, 64}};
  for (DType t : {DType::f32, DType::bf16})
    for (const auto& [V, N] : shapes)
      for (int ignore : {0, 50}) {
        LossCase c;
        c.t = t;
        c.V = V;
        c.N = N;
        c.ignore = ignore;
        add_loss(c, "maskcheck");
#if MASKCHECK_BENCH_TORCH
        add_loss(c, "torch");
#endif
      }
}

}  // namespace

MASKCHECK_BENCH_SUITE(cross_entropy, register_cross_entropy);

}  // namespace maskcheck::bench
