// Attention backward on the CPU: maskcheck's kernel (cpu::attention_backward: flash-style tiles
// over the predicate's intervals, P recomputed, deterministic) against LibTorch's SDPA backward
// with the boolean keep-mask (autograd: the forward once when the row is built, then each timed run
// is one torch::autograd::grad of that graph, retain_graph, so that only the backward is timed).
//
// On CUDA: maskcheck's kernel (cuda::attention_backward: the forward's statistics, then
// FlashAttention-2's dK/dV and dQ passes on tensor cores, deterministic) against the same LibTorch
// backward on the GPU.
//
// Names: <device>/attention_backward/<dtype>/D<d>/L<l>/pad<p>/padding+causal/<impl>, impl
// maskcheck, torch_sdpa, or on the CPU plugin:<name>: a plugin of maskcheck bench --plugin, its
// attention_backward (ABI 1.2) on the same buffers through a call prepared once (plugins.hpp), in
// the dtypes its attention_backward_dtypes declares. Cases, 50 % mean padding + causal:
//   cpu   f32 and bf16, D 64 and 128, L 512 and 2048, B * L = 4096 tokens, H 8 (the issue's
//         headline case is f32 D128 L2048). CI: f32 and bf16, D 64, L 128, B 2, H 2.
//   cuda  bf16 and f16, D 64 and 128, L 2048 and 4096, B * L = 16384 tokens, H 16 (the headline:
//         bf16 D128 L2048). CI: bf16, D 64, L 256, B 2, H 2.
// Check before timing: dq of sampled rows and dk, dv of sampled keys of two (sequence, kv head)
// groups, against fp64 formulas (and the same formulas in fp32 as the naive baseline) through
// check_close.
// Counters: useful FLOP/s = 2.5 x the forward's useful FLOPs (10 D per visible (q, k) pair and
// head, the FlashAttention-2 convention for backward), bytes_per_second (q, k, v, dout read and
// dq, dk, dv written once).
#include <algorithm>
#include <array>
#include <cmath>
#include <iomanip>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "check.hpp"
#include "harness.hpp"
#include "maskcheck/kernels/cpu.hpp"
#if MASKCHECK_BENCH_CUDA
#include "cuda/cuda_harness.hpp"
#endif
#include "maskcheck/reference/predicate.hpp"
#include "maskcheck/suite/plugin_host.hpp"
#include "maskcheck/suite/tolerance.hpp"
#include "plugins.hpp"

namespace maskcheck::bench {

namespace {

struct BwdCase {
  Device device = Device::cpu;
  DType t = DType::f32;
  std::int64_t D = 64, L = 512, B = 1, H = 1;
  int pad = 50;
  std::string key() const {
    return device_name(device) + "/attention_backward/" + dtype_name(t) + "/D" + std::to_string(D) +
           "/L" + std::to_string(L) + "/pad" + std::to_string(pad) + "/padding+causal";
  }
};

std::vector<BwdCase> cases(Device d) {
  using Sizes = AttentionSizes;
  Sizes s;
  if (d == Device::cpu)
    s = ci() ? Sizes{{DType::f32, DType::bf16}, {64}, {128}, 256, 2}
             : Sizes{{DType::f32, DType::bf16}, {64, 128}, {512, 2048}, 4096, 8};
  else
    s = ci() ? Sizes{{DType::bf16}, {64}, {256}, 512, 2}
             : Sizes{{DType::bf16, DType::f16}, {64, 128}, {2048, 4096}, 16384, 16};
  std::vector<BwdCase> out;
  for (DType t : s.dtypes)
    for (std::int64_t D : s.Ds)
      for (std::int64_t L : s.Ls) {
        BwdCase c;
        c.device = d;
        c.t = t;
        c.D = D;
        c.L = L;
        c.B = std::max<std::int64_t>(1, s.tokens / L);
        c.H = s.H;
        out.push_back(c);
      }
  return out;
}

AttentionProblem make_problem(const BwdCase& c) {
  AttentionProblem p;
  p.H = p.Hkv = c.H;
  p.D = c.D;
  p.mask.B = c.B;
  p.mask.Lq = p.mask.Lk = c.L;
  Rng rng(mix(seed(), case_stream(c.key())));
  p.mask.q_lens = draw_lengths(c.B, c.L, c.pad, rng);
  p.mask.k_lens = p.mask.q_lens;
  p.mask.causal = true;
  return p;
}

// Sampled reference gradients: want (fp64) and naive (the same formulas in fp32), flattened in the
// order of `index` (dq elements, then dk, then dv).
struct GradReference {
  std::vector<std::int64_t> dq, dk;  // flat offsets checked (dk and dv share theirs)
  std::vector<double> want, naive;
};

template <class A>
std::vector<double> sampled_gradients(const AttentionProblem& p, const FlatMask& flat,
                                      const HostTensor& q, const HostTensor& k, const HostTensor& v,
                                      const HostTensor& g, const std::vector<std::int64_t>& groups,
                                      const GradReference& ref) {
  const std::int64_t H = p.H, Lq = p.mask.Lq, Lk = p.mask.Lk, D = p.D;
  const A scale = static_cast<A>(p.effective_scale());
  std::vector<A> dq(static_cast<std::size_t>(p.q_numel()), 0),
      dk(static_cast<std::size_t>(p.kv_numel()), 0), dv(dk.size(), 0);
  std::vector<A> s(static_cast<std::size_t>(Lk)), dp(s.size());
  for (const std::int64_t bh : groups) {  // (b, h): MHA, so h is its kv head
    const std::int64_t b = bh / H, h = bh % H;
    for (std::int64_t i = 0; i < Lq; ++i) {
      const RowKeys r = row_keys(flat.view(), b, i);
      if (r.empty()) continue;
      const std::int64_t row = ((b * H + h) * Lq + i) * D;
      A m = -std::numeric_limits<A>::infinity();
      r.for_each([&](std::int64_t j) {
        const std::int64_t kv = ((b * H + h) * Lk + j) * D;
        A dot = 0, gv = 0;
        for (std::int64_t d = 0; d < D; ++d) {
          dot += static_cast<A>(q.at(row + d)) * static_cast<A>(k.at(kv + d));
          gv += static_cast<A>(g.at(row + d)) * static_cast<A>(v.at(kv + d));
        }
        s[j] = scale * dot;
        dp[j] = gv;
        m = std::max(m, s[j]);
      });
      A sum = 0, delta = 0;
      r.for_each([&](std::int64_t j) { sum += std::exp(s[j] - m); });
      r.for_each([&](std::int64_t j) { delta += std::exp(s[j] - m) / sum * dp[j]; });
      r.for_each([&](std::int64_t j) {
        const std::int64_t kv = ((b * H + h) * Lk + j) * D;
        const A pj = std::exp(s[j] - m) / sum, ds = pj * (dp[j] - delta);
        for (std::int64_t d = 0; d < D; ++d) {
          dq[row + d] += scale * ds * static_cast<A>(k.at(kv + d));
          dk[kv + d] += scale * ds * static_cast<A>(q.at(row + d));
          dv[kv + d] += pj * static_cast<A>(g.at(row + d));
        }
      });
    }
  }
  std::vector<double> out;
  for (const std::int64_t i : ref.dq) out.push_back(static_cast<double>(dq[i]));
  for (const std::int64_t i : ref.dk) out.push_back(static_cast<double>(dk[i]));
  for (const std::int64_t i : ref.dk) out.push_back(static_cast<double>(dv[i]));
  return out;
}

struct BwdFixture : CaseImpls {
  BwdCase c;
  AttentionProblem p;
  std::unique_ptr<FlatMask> flat;    // on the host: the reference's
  std::unique_ptr<KernelMask> mask;  // where the case's device reads it
  Buffer q, k, v, dout;
  std::map<std::string, std::vector<Buffer>> outs;  // dq, dk, dv per implementation
  GradReference ref;
  Work work;
  std::string shape;
};

std::unique_ptr<BwdFixture> make_fixture(const BwdCase& c) {
  auto f = std::make_unique<BwdFixture>();
  f->c = c;
  f->p = make_problem(c);
  const AttentionProblem& p = f->p;
  f->flat = std::make_unique<FlatMask>(p.mask);
  const DeviceHarness& d = device(c.device);
  f->mask = d.mask(p.mask);
  const std::size_t es = dtype_bytes(c.t);
  f->q = Buffer(c.device, static_cast<std::size_t>(p.q_numel()) * es);
  f->k = Buffer(c.device, static_cast<std::size_t>(p.kv_numel()) * es);
  f->v = Buffer(c.device, static_cast<std::size_t>(p.kv_numel()) * es);
  f->dout = Buffer(c.device, static_cast<std::size_t>(p.q_numel()) * es);
  const std::uint64_t s = mix(seed(), case_stream(c.key()));
  d.fill_uniform(f->q.get(), c.t, p.q_numel(), mix(s, 1), -1.0, 1.0);
  d.fill_uniform(f->k.get(), c.t, p.kv_numel(), mix(s, 2), -1.0, 1.0);
  d.fill_uniform(f->v.get(), c.t, p.kv_numel(), mix(s, 3), -1.0, 1.0);
  d.fill_uniform(f->dout.get(), c.t, p.q_numel(), mix(s, 4), -1.0, 1.0);
  // Two (sequence, head) groups: the first and the last; 16 rows and 16 keys of each, D elements.
  const std::int64_t H = p.H, Lq = p.mask.Lq, D = p.D;
  std::vector<std::int64_t> groups{0, p.mask.B * H - 1};
  groups.erase(std::unique(groups.begin(), groups.end()), groups.end());
  Rng rng(mix(s, 5));
  for (const std::int64_t bh : groups)
    for (int n = 0; n < 16; ++n) {
      const std::int64_t i = rng.uniform(0, Lq - 1);
      for (std::int64_t e = 0; e < D; ++e) {
        f->ref.dq.push_back((bh * Lq + i) * D + e);
        f->ref.dk.push_back((bh * Lq + rng.uniform(0, Lq - 1)) * D + e);
      }
    }
  const HostTensor hq = to_host(c.device, f->q.get(), c.t, p.q_numel()),
                   hk = to_host(c.device, f->k.get(), c.t, p.kv_numel()),
                   hv = to_host(c.device, f->v.get(), c.t, p.kv_numel()),
                   hg = to_host(c.device, f->dout.get(), c.t, p.q_numel());
  f->ref.want = sampled_gradients<double>(p, *f->flat, hq, hk, hv, hg, groups, f->ref);
  f->ref.naive = sampled_gradients<float>(p, *f->flat, hq, hk, hv, hg, groups, f->ref);
  const double visible = static_cast<double>(H) * visible_pairs(p.mask);
  f->work.useful_flops = 2.5 * 4.0 * static_cast<double>(D) * visible;
  f->work.dense_flops = 2.5 * 4.0 * static_cast<double>(D) * static_cast<double>(H * p.mask.B) *
                        static_cast<double>(Lq * Lq);
  f->work.bytes =
      2.0 * static_cast<double>(es) * static_cast<double>(p.q_numel() + 2 * p.kv_numel()) + 0.0;
  f->shape = "B=" + std::to_string(p.mask.B) + " H=" + std::to_string(H);
  return f;
}

// The dtypes of dq, dk, dv: the case's, or those of q, k, v in a plugin's storage.
std::array<DType, 3> gradient_dtypes(const BwdFixture& f, const std::optional<Storage>& st) {
  if (!st) return {f.c.t, f.c.t, f.c.t};
  return {st->q, st->k, st->v};
}

// dq, dk, dv buffers for `impl`, poisoned (all bits set: NaN).
std::vector<Buffer>& outputs_for(BwdFixture& f, const std::string& impl,
                                 const std::optional<Storage>& st = std::nullopt) {
  auto& o = f.outs[impl];
  o.clear();
  const std::array<DType, 3> dt = gradient_dtypes(f, st);
  const std::array<std::int64_t, 3> n{f.p.q_numel(), f.p.kv_numel(), f.p.kv_numel()};
  for (std::size_t i = 0; i < 3; ++i) {
    o.emplace_back(f.c.device, static_cast<std::size_t>(n[i]) * dtype_bytes(dt[i]));
    o.back().fill(0xFF);
  }
  return o;
}

// Runs once, fetches the gradients into `o` (outside the timed run), checks them.
Prepared finish(BwdFixture& f, const std::string& name, bool ours, std::function<void()> run,
                const std::function<void()>& fetch, const std::vector<Buffer>& o,
                const std::string& notes, const std::optional<Storage>& st = std::nullopt) {
  const DeviceHarness& d = device(f.c.device);
  Prepared pr;
  pr.run = std::move(run);
  pr.run();
  d.synchronize();
  fetch();
  d.synchronize();
  const std::array<DType, 3> dt = gradient_dtypes(f, st);
  const Readback dq(f.c.device, o[0].get(), dt[0], f.p.q_numel()),
      dk(f.c.device, o[1].get(), dt[1], f.p.kv_numel()),
      dv(f.c.device, o[2].get(), dt[2], f.p.kv_numel());
  std::vector<double> got;
  for (const std::int64_t i : f.ref.dq) got.push_back(dq.at(i));
  for (const std::int64_t i : f.ref.dk) got.push_back(dk.at(i));
  for (const std::int64_t i : f.ref.dk) got.push_back(dv.at(i));
  const CheckResult r =
      check_close("dq, dk, dv (sampled)", Shape{{"i"}, {std::int64_t(got.size())}}, got, f.ref.want,
                  f.ref.naive, f.c.t);
  pr.check.ok = r.ok;
  pr.check.max_abs_err = r.max_abs_err;
  std::ostringstream os;
  os << "max|err| " << std::setprecision(4) << r.max_abs_err << " on " << got.size()
     << " sampled gradient elements";
  pr.check.message = r.ok ? os.str() : r.report();
  record_check(name, pr.check, ours);
  pr.work = f.work;
  pr.label = check_label(f.shape, notes, pr.check);
  return pr;
}

using BwdTarget = Target<BwdCase, BwdFixture>;

BwdTarget maskcheck_target() {
  return {.device = Device::cpu,
          .impl = "maskcheck",
          .ours = true,
          .build = [](BwdFixture& f, const std::string& name) {
            auto& o = outputs_for(f, "maskcheck");
            return finish(
                f, name, true,
                [&f, &o] {
                  cpu::attention_backward(f.p.shape(), f.flat->view(), f.c.t, f.q.get(), f.k.get(),
                                          f.v.get(), f.dout.get(), o[0].get(), o[1].get(),
                                          o[2].get());
                },
                [] {}, o,
                device(Device::cpu).kernels_note() +
                    ", flash-style tiles (forward statistics, then a pass per "
                    "chunk of rows)");
          }};
}

#if MASKCHECK_BENCH_CUDA
// cuda::attention_backward on the case's device buffers, its workspace allocated once here.
BwdTarget cuda_target() {
  return {.device = Device::cuda,
          .impl = "maskcheck",
          .ours = true,
          .build = [](BwdFixture& f, const std::string& name) {
            auto& o = outputs_for(f, "maskcheck");
            auto work = std::make_shared<Buffer>(
                Device::cuda,
                cuda::attention_backward_workspace_bytes(f.p.shape(), f.mask->view()));
            return finish(
                f, name, true,
                [&f, &o, work] {
                  cuda::attention_backward(f.p.shape(), f.mask->view(), f.c.t, f.q.get(), f.k.get(),
                                           f.v.get(), f.dout.get(), o[0].get(), o[1].get(),
                                           o[2].get(), work->get(), kStream);
                },
                [] {}, o,
                "forward statistics, then dK/dV and dQ passes on tensor cores, deterministic");
          }};
}
#endif

#if MASKCHECK_BENCH_TORCH
BwdTarget torch_target(Device d) {
  return {.device = d,
          .impl = "torch_sdpa",
          .skip = [](const BwdCase& c) { return torch_unusable(c.device, c.t); },
          .build =
              [](BwdFixture& f, const std::string& name) {
                auto& o = outputs_for(f, "torch_sdpa");
                auto peer = std::make_shared<torch_peers::SdpaBackwardPeer>(
                    f.p, f.c.t, torch_device(f.c.device), f.q.get(), f.k.get(), f.v.get(),
                    f.dout.get());
                return finish(
                    f, name, false, [peer] { peer->run(); },
                    [peer, &o] { peer->copy_gradients(o[0].get(), o[1].get(), o[2].get()); }, o,
                    peer->description());
              }};
}
#endif

// A plugin (maskcheck bench --plugin) on the CPU: its attention_backward (ABI 1.2) on the case's
// buffers, q, k, v and dout converted once where it stores them wider than the case's dtype. Not
// registered (with the reason) for a plugin on another device, one before ABI 1.2 or without a
// backward in the case's dtype, or a problem its query declines.
BwdTarget plugin_target(std::shared_ptr<const Implementation> plugin) {
  return {.device = Device::cpu,
          .impl = plugin->name(),
          .skip =
              [plugin](const BwdCase& c) {
                std::string why = on_host(*plugin);
                if (why.empty())
                  if (const Support s = plugin->supports_attention_backward(make_problem(c), c.t);
                      !s)
                    why = s.reason;
                return why;
              },
          .build =
              [plugin](BwdFixture& f, const std::string& name) {
                const Storage st = plugin->storage(f.c.t);
                auto inputs = std::make_shared<PluginInputs>();
                const void* q = inputs->in(f.q, f.c.t, st.q, f.p.q_numel());
                const void* k = inputs->in(f.k, f.c.t, st.k, f.p.kv_numel());
                const void* v = inputs->in(f.v, f.c.t, st.v, f.p.kv_numel());
                const void* g = inputs->in(f.dout, f.c.t, st.out, f.p.q_numel());
                auto& o = outputs_for(f, plugin->name(), st);
                std::shared_ptr<plugin::PreparedCall> call = plugin::prepare_attention_backward(
                    *plugin, f.p, f.c.t, q, k, v, g, o[0].get(), o[1].get(), o[2].get());
                return finish(
                    f, name, false, [call, inputs] { call->run(); }, [] {}, o,
                    plugin->description(), st);
              }};
}

std::vector<BwdTarget> targets() {
  std::vector<BwdTarget> t;
  t.push_back(maskcheck_target());
#if MASKCHECK_BENCH_TORCH
  t.push_back(torch_target(Device::cpu));
#endif
  for (const auto& plugin : plugins()) t.push_back(plugin_target(plugin));
#if MASKCHECK_BENCH_CUDA
  t.push_back(cuda_target());
#if MASKCHECK_BENCH_TORCH
  t.push_back(torch_target(Device::cuda));
#endif
#endif
  return t;
}

}  // namespace

MASKCHECK_BENCH_OPERATION(attention_backward, cases, targets, make_fixture);

}  // namespace maskcheck::bench
