// Cross-entropy forward + backward on the CPU with ignore_index and reduction mean:
// maskcheck::cpu::cross_entropy (one call computes losses, the reduced loss and dlogits; ignored
// rows are never read) against LibTorch cross_entropy + backward() on the CPU (grad set to none
// between runs, as optimizer.zero_grad() does, so LibTorch allocates dlogits every call).
//
// Names: cpu/cross_entropy/<dtype>/V<vocab>/N<tokens>/ignore<p>/<impl>, impl maskcheck or torch.
// Shapes (full): f32, bf16; V 32768 (N 2048) and 131072 (N 512), 2^26 logits each (f32: logits
// and dlogits 256 MiB each, beyond the last-level cache); 0 % and 50 % of the labels
// ignore_index. CI: V 1024, N 64.
// Counters: bytes_per_second and bw_frac with minimal bytes = logits of contributing rows read
// once + dlogits written once + labels read once.
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

struct LossCase {
  DType t = DType::f32;
  std::int64_t N = 1, V = 2;
  int ignore = 0;
  std::string key() const {
    return "cpu/cross_entropy/" + dtype_name(t) + "/V" + std::to_string(V) + "/N" +
           std::to_string(N) + "/ignore" + std::to_string(ignore);
  }
};

struct LossFixture : CpuCaseImpls {
  LossCase c;
  LossProblem p;
  CpuBuffer logits, labels, losses, dlogits;
  LossReference ref;
  CpuWork work;
  std::string shape;
};

std::unique_ptr<LossFixture> make_fixture(const LossCase& c) {
  auto f = std::make_unique<LossFixture>();
  f->c = c;
  LossProblem& p = f->p;
  p.N = c.N;
  p.V = c.V;
  p.reduction = Reduction::mean;
  const std::int64_t n = c.N * c.V;
  f->logits = CpuBuffer(static_cast<std::size_t>(n) * dtype_bytes(c.t));
  f->labels = CpuBuffer(static_cast<std::size_t>(c.N) * sizeof(std::int64_t));
  const std::uint64_t s = mix(seed(), name_hash(c.key()));
  // Logits in [-4, 4): the spread of a trained LM's logits (std ~2.3).
  cpu_fill_uniform(f->logits.get(), c.t, n, mix(s, 1), -4.0, 4.0);
  cpu_fill_labels(f->labels.as<std::int64_t>(), c.N, c.V, c.ignore / 100.0, p.ignore_index,
                  mix(s, 2));
  const std::span<const std::int64_t> labels(f->labels.as<const std::int64_t>(),
                                             static_cast<std::size_t>(c.N));
  f->ref = cross_entropy_reference(p, host_copy(f->logits.get(), c.t, n), labels, s);
  std::int64_t contributing = 0;
  for (std::int64_t l : labels) contributing += l != p.ignore_index ? 1 : 0;
  f->work.bytes =
      static_cast<double>(dtype_bytes(c.t)) * static_cast<double>(contributing * c.V + n) +
      8.0 * static_cast<double>(c.N);
  f->work.memory_bound = true;
  f->shape = std::to_string(contributing) + " of " + std::to_string(c.N) + " rows contribute";
  return f;
}

CpuPrepared build(LossFixture& f, const std::string& impl, const std::string& name) {
  CpuPrepared pr;
  std::string notes;
  const bool ours = impl == "maskcheck";
  const LossProblem& p = f.p;
  std::function<double()> loss;
  std::function<std::vector<double>()> rows;
  if (ours) {
    const std::size_t bytes = static_cast<std::size_t>(p.N * p.V) * dtype_bytes(f.c.t);
    f.losses = CpuBuffer(static_cast<std::size_t>(p.N) * sizeof(float));
    f.dlogits = CpuBuffer(bytes);
    if (bytes > 0) std::memset(f.dlogits.get(), 0xFF, bytes);  // poison: NaN
    auto totals = std::make_shared<cpu::LossTotals>();
    pr.run = [&f, totals] {
      *totals = cpu::cross_entropy(f.p, f.c.t, f.logits.get(), f.labels.as<std::int64_t>(), nullptr,
                                   f.losses.as<float>(), f.dlogits.get());
    };
    loss = [totals] { return totals->loss; };
    rows = [&f] {
      std::vector<double> out;
      for (std::int64_t r : f.ref.rows)
        for (std::int64_t j = 0; j < f.p.V; ++j)
          out.push_back(value_at(f.dlogits.get(), f.c.t, r * f.p.V + j));
      return out;
    };
    notes = "maskcheck::cpu (" + cpu::simd_target() + ", " + std::to_string(cpu::max_threads()) +
            " threads)";
  } else {
#if MASKCHECK_BENCH_TORCH
    auto peer = std::make_shared<torch_peers::CrossEntropyPeer>(
        p, f.c.t, torch_peers::Device::cpu, f.logits.get(), f.labels.as<std::int64_t>());
    pr.run = [peer] { peer->run(); };
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
  pr.run();
  const std::vector<double> got_rows = rows();
  pr.check = check_cross_entropy(p, f.ref, f.c.t, loss(), got_rows);
  record_check(name, pr.check, ours);
  pr.work = f.work;
  pr.label = check_label(f.shape, notes, pr.check);
  return pr;
}

void add_loss(const LossCase& c, const std::string& impl) {
  const std::string name = c.key() + "/" + impl;
  add_cpu(name, [c, impl, name](benchmark::State& state) {
    run_cpu(state, name, impl == "maskcheck", [&]() -> CpuPrepared& {
      auto& f = CaseCache::get<LossFixture>(c.key(), [&] { return make_fixture(c); });
      return f.get(impl, [&] { return build(f, impl, name); });
    });
  });
}

void register_cross_entropy() {
  std::vector<std::pair<std::int64_t, std::int64_t>> shapes{{32768, 2048}, {131072, 512}};
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
        if (const std::string why = torch_cpu_unusable(t); why.empty())
          add_loss(c, "torch");
        else
          note_pruned(c.key() + "/torch", why);
#endif
      }
}

}  // namespace

MASKCHECK_BENCH_SUITE(cpu_cross_entropy, register_cross_entropy);

}  // namespace maskcheck::bench
