// Cross-entropy forward + backward with ignore_index and reduction mean, one case table for every
// target: maskcheck's kernels (cpu::cross_entropy, cuda::cross_entropy: one call computes losses,
// the reduced loss and dlogits; ignored rows are never read) against LibTorch cross_entropy +
// backward() on the same device (grad set to none between runs, as optimizer.zero_grad() does, so
// LibTorch allocates dlogits every call).
//
// Names: <device>/cross_entropy/<dtype>/V<vocab>/N<tokens>/ignore<p>/<impl>, impl maskcheck,
// torch, or a plugin of maskcheck bench --plugin (plugin:<name>, CPU, plugins.hpp). Cases: f32,
// bf16; 0 % and 50 % of the labels ignore_index; sizes per device:
//   cpu   V 32768 (N 2048) and 131072 (N 512), 2^26 logits each (f32: logits and dlogits 256 MiB
//         each, beyond the last-level cache).
//   cuda  V 32768 (N 16384) and 131072 (N 4096), 2^29 logits each.
// CI: V 1024, N 64.
// Counters: bytes_per_second and bw_frac with minimal bytes = logits of contributing rows read
// once + dlogits written once + labels read once.
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "check.hpp"
#include "harness.hpp"
#include "maskcheck/kernels/cpu.hpp"
#include "maskcheck/suite/plugin_host.hpp"
#include "plugins.hpp"
#if MASKCHECK_BENCH_CUDA
#include "cuda/cuda_harness.hpp"
#endif

namespace maskcheck::bench {

namespace {

struct LossCase {
  Device device = Device::cpu;
  DType t = DType::f32;
  std::int64_t N = 1, V = 2;
  int ignore = 0;
  std::string key() const {
    return device_name(device) + "/cross_entropy/" + dtype_name(t) + "/V" + std::to_string(V) +
           "/N" + std::to_string(N) + "/ignore" + std::to_string(ignore);
  }
};

// The case table.
std::vector<LossCase> cases(Device d) {
  std::vector<std::pair<std::int64_t, std::int64_t>> shapes;  // (V, N)
  if (ci())
    shapes = {{1024, 64}};
  else if (d == Device::cpu)
    shapes = {{32768, 2048}, {131072, 512}};
  else
    shapes = {{32768, 16384}, {131072, 4096}};
  std::vector<LossCase> out;
  for (DType t : {DType::f32, DType::bf16})
    for (const auto& [V, N] : shapes)
      for (int ignore : {0, 50}) {
        LossCase c;
        c.device = d;
        c.t = t;
        c.V = V;
        c.N = N;
        c.ignore = ignore;
        out.push_back(c);
      }
  return out;
}

struct LossFixture : CaseImpls {
  LossCase c;
  LossProblem p;
  Buffer logits, labels;
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
  const DeviceHarness& d = device(c.device);
  const std::size_t es = dtype_bytes(c.t);
  const std::int64_t n = c.N * c.V;
  f->logits = Buffer(c.device, static_cast<std::size_t>(n) * es);
  f->labels = Buffer(c.device, static_cast<std::size_t>(c.N) * sizeof(std::int64_t));
  const std::uint64_t s = mix(seed(), case_stream(c.key()));
  // Logits in [-4, 4): the spread of a trained LM's logits (std ~2.3).
  d.fill_uniform(f->logits.get(), c.t, n, mix(s, 1), -4.0, 4.0);
  d.fill_labels(f->labels.as<std::int64_t>(), c.N, c.V, c.ignore / 100.0, p.ignore_index,
                mix(s, 2));
  const auto labels = to_host_vector<std::int64_t>(c.device, f->labels.get(), c.N);
  f->ref = cross_entropy_reference(p, to_host(c.device, f->logits.get(), c.t, n), labels, s);
  std::int64_t contributing = 0;
  for (std::int64_t l : labels) contributing += l != p.ignore_index ? 1 : 0;
  f->work.bytes = static_cast<double>(es) * static_cast<double>(contributing * c.V + n) +
                  8.0 * static_cast<double>(c.N);
  f->work.memory_bound = true;
  f->shape = std::to_string(contributing) + " of " + std::to_string(c.N) + " rows contribute";
  return f;
}

// The sampled rows of the reference from an implementation's dlogits [N, V] (in the case's dtype,
// or `dt` where a third party stores dlogits wider).
std::vector<double> sampled_rows(const LossFixture& f, const void* dlogits,
                                 std::optional<DType> dt = std::nullopt) {
  std::vector<double> out;
  const DType t = dt.value_or(f.c.t);
  const std::size_t row_bytes = static_cast<std::size_t>(f.p.V) * dtype_bytes(t);
  for (std::int64_t r : f.ref.rows) {
    const Readback row(f.c.device,
                       static_cast<const char*>(dlogits) + static_cast<std::size_t>(r) * row_bytes,
                       t, f.p.V);
    for (std::int64_t j = 0; j < f.p.V; ++j) out.push_back(row.at(j));
  }
  return out;
}

// Runs once, checks the loss and the sampled rows of dlogits, records the check.
Prepared finish(const LossFixture& f, const std::string& name, bool ours, std::function<void()> run,
                const std::function<double()>& loss,
                const std::function<std::vector<double>()>& rows, const std::string& notes) {
  Prepared pr;
  pr.run = std::move(run);
  pr.run();
  device(f.c.device).synchronize();
  const std::vector<double> got_rows = rows();
  pr.check = check_cross_entropy(f.p, f.ref, f.c.t, loss(), got_rows);
  record_check(name, pr.check, ours);
  pr.work = f.work;
  pr.label = check_label(f.shape, notes, pr.check);
  return pr;
}

// maskcheck's outputs: losses [N] f32, dlogits [N, V] (poisoned: NaN), and on a GPU the reduced
// totals and the workspace.
struct Outputs {
  Buffer losses, dlogits, totals, workspace;
};

std::shared_ptr<Outputs> outputs(const LossFixture& f) {
  auto o = std::make_shared<Outputs>();
  o->losses = Buffer(f.c.device, static_cast<std::size_t>(f.p.N) * sizeof(float));
  o->dlogits = Buffer(f.c.device, static_cast<std::size_t>(f.p.N * f.p.V) * dtype_bytes(f.c.t));
  o->dlogits.fill(0xFF);
  return o;
}

using LossTarget = Target<LossCase, LossFixture>;

#if MASKCHECK_BENCH_TORCH
// LibTorch cross_entropy + backward() on a device.
LossTarget torch_target(Device d) {
  return {.device = d,
          .impl = "torch",
          .skip = [](const LossCase& c) { return torch_unusable(c.device, c.t); },
          .build =
              [](LossFixture& f, const std::string& name) {
                auto peer = std::make_shared<torch_peers::CrossEntropyPeer>(
                    f.p, f.c.t, torch_device(f.c.device), f.logits.get(),
                    f.labels.as<std::int64_t>());
                return finish(
                    f, name, false, [peer] { peer->run(); }, [peer] { return peer->loss(); },
                    [&f, peer] {
                      std::vector<double> out;
                      for (std::int64_t r : f.ref.rows) {
                        const auto g = peer->grad_rows(r, r + 1);
                        out.insert(out.end(), g.begin(), g.end());
                      }
                      return out;
                    },
                    peer->description());
              }};
}
#endif

// A plugin (maskcheck bench --plugin) on the CPU: its cross_entropy forward + backward on the
// case's buffers, logits converted once where it stores them wider than the case's dtype.
LossTarget plugin_target(std::shared_ptr<const Implementation> plugin) {
  return {.device = Device::cpu,
          .impl = plugin->name(),
          .skip =
              [plugin](const LossCase& c) {
                std::string why = takes(*plugin, Op::cross_entropy, c.t);
                if (why.empty()) {
                  LossProblem p;
                  p.N = c.N;
                  p.V = c.V;
                  p.reduction = Reduction::mean;
                  if (const Support s = plugin->supports_cross_entropy(p, c.t); !s) why = s.reason;
                }
                return why;
              },
          .build =
              [plugin](LossFixture& f, const std::string& name) {
                const Storage st = plugin->storage(f.c.t);
                auto o = std::make_shared<Outputs>();
                const void* logits = f.logits.get();
                if (st.logits != f.c.t) {
                  o->workspace = converted(f.logits.get(), f.c.t, st.logits, f.p.N * f.p.V);
                  logits = o->workspace.get();
                }
                const DType aux = f.c.t == DType::f64 ? DType::f64 : DType::f32;
                o->losses = Buffer(Device::cpu, static_cast<std::size_t>(f.p.N) * dtype_bytes(aux));
                o->dlogits = Buffer(
                    Device::cpu, static_cast<std::size_t>(f.p.N * f.p.V) * dtype_bytes(st.dlogits));
                o->dlogits.fill(0xFF);
                auto loss = std::make_shared<double>(0.0);
                std::shared_ptr<plugin::PreparedCall> call = plugin::prepare_cross_entropy(
                    *plugin, f.p, f.c.t, logits, f.labels.as<std::int64_t>(), o->losses.get(),
                    o->dlogits.get(), loss.get());
                // The call writes *loss on every run: the run keeps it alive, not only the check.
                return finish(
                    f, name, false, [call, o, loss] { call->run(); }, [loss] { return *loss; },
                    [&f, o, st] { return sampled_rows(f, o->dlogits.get(), st.dlogits); },
                    plugin->description());
              }};
}

// Every implementation, one registration each, in the order of their rows.
std::vector<LossTarget> targets() {
  std::vector<LossTarget> t;
  t.push_back({.device = Device::cpu,
               .impl = "maskcheck",
               .ours = true,
               .build = [](LossFixture& f, const std::string& name) {
                 auto o = outputs(f);
                 auto totals = std::make_shared<cpu::LossTotals>();
                 return finish(
                     f, name, true,
                     [&f, o, totals] {
                       *totals = cpu::cross_entropy(f.p, f.c.t, f.logits.get(),
                                                    f.labels.as<std::int64_t>(), nullptr,
                                                    o->losses.as<float>(), o->dlogits.get());
                     },
                     [totals] { return totals->loss; },
                     [&f, o] { return sampled_rows(f, o->dlogits.get()); },
                     device(Device::cpu).kernels_note());
               }});
#if MASKCHECK_BENCH_TORCH
  t.push_back(torch_target(Device::cpu));
#endif
  for (const auto& plugin : plugins()) t.push_back(plugin_target(plugin));
#if MASKCHECK_BENCH_CUDA
  t.push_back(
      {.device = Device::cuda,
       .impl = "maskcheck",
       .ours = true,
       .build = [](LossFixture& f, const std::string& name) {
         auto o = outputs(f);
         o->totals = Buffer(Device::cuda, sizeof(cuda::LossTotals));
         o->workspace = Buffer(Device::cuda, cuda::cross_entropy_workspace_bytes(f.p));
         return finish(
             f, name, true,
             [&f, o] {
               cuda::cross_entropy(f.p, f.c.t, f.logits.get(), f.labels.as<std::int64_t>(), nullptr,
                                   o->losses.as<float>(), o->dlogits.get(),
                                   o->totals.as<cuda::LossTotals>(), o->workspace.get(), kStream);
             },
             [o] {
               return static_cast<double>(
                   to_host_vector<cuda::LossTotals>(Device::cuda, o->totals.get(), 1)[0].loss);
             },
             [&f, o] { return sampled_rows(f, o->dlogits.get()); },
             device(Device::cuda).kernels_note());
       }});
#if MASKCHECK_BENCH_TORCH
  t.push_back(torch_target(Device::cuda));
#endif
#endif
  return t;
}

}  // namespace

MASKCHECK_BENCH_OPERATION(cross_entropy, cases, targets, make_fixture);

}  // namespace maskcheck::bench
