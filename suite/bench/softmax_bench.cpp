// Masked softmax over the last axis, one case table for every target: maskcheck's kernels
// (cpu::masked_softmax, cuda::masked_softmax: the structured mask, masked entries never read)
// against LibTorch softmax(x + additive -inf mask [B, 1, Lq, Lk]) on the same device (the mask
// materialized once, the sum allocated per call, as a framework does it).
//
// Names: <device>/softmax/<dtype>/Lk<keys>/Lq<rows>/pad<p>/<mask>/<impl>, impl maskcheck, torch,
// ggml (ggml_soft_max_ext with the additive f32 mask [B, Lq, Lk] materialized once, f32 only, as
// ggml takes it; MASKCHECK_ENABLE_GGML) or a plugin of maskcheck bench --plugin (plugin:<name>,
// CPU, plugins.hpp).
// Cases: B = 4, H = 16 and Lq such that every case holds a fixed number of elements; masks none,
// padding (keys only, 25 % mean padding) and causal (bottom-right, so with Lq < Lk the rows are
// the last Lq of a causal triangle). Sizes per device:
//   cpu   f32, bf16; rows of 256, 1024, 8192 and 65536 keys; 2^26 elements (f32: x and y 256 MiB
//         each, beyond the last-level cache; a call moves about half a GiB, tens of ms at memory
//         speed). CI: f32, bf16, keys 256 and 4096, 2^14 elements, B 2, H 2.
//   cuda  f16, bf16, f32; rows of 1024, 8192 and 131072 keys; 2^27 elements. CI: f16, bf16, keys
//         256 and 4096, 2^14 elements, B 2, H 2.
// Counters: bytes_per_second and bw_frac with minimal bytes = visible entries of x read once +
// every entry of y written once.
#include <algorithm>
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
#if MASKCHECK_BENCH_GGML
#include "maskcheck/adapters/ggml_impl.hpp"
#endif

namespace maskcheck::bench {

namespace {

struct SoftmaxCase {
  Device device = Device::cpu;
  DType t = DType::f32;
  std::int64_t B = 1, H = 1, Lq = 1, Lk = 1;
  int pad = 0;
  std::string mask;  // none, padding, causal
  std::string key() const {
    return device_name(device) + "/softmax/" + dtype_name(t) + "/Lk" + std::to_string(Lk) + "/Lq" +
           std::to_string(Lq) + "/pad" + std::to_string(pad) + "/" + mask;
  }
};

// The case table.
std::vector<SoftmaxCase> cases(Device d) {
  struct Sizes {
    std::vector<DType> dtypes;
    std::vector<std::int64_t> keys;
    std::int64_t elements, B, H;
  };
  Sizes s;
  if (d == Device::cpu)
    s = ci() ? Sizes{{DType::f32, DType::bf16}, {256, 4096}, std::int64_t{1} << 14, 2, 2}
             : Sizes{{DType::f32, DType::bf16},
                     {256, 1024, 8192, 65536},
                     std::int64_t{1} << 26,
                     4,
                     16};
  else
    s = ci() ? Sizes{{DType::f16, DType::bf16}, {256, 4096}, std::int64_t{1} << 14, 2, 2}
             : Sizes{{DType::f16, DType::bf16, DType::f32},
                     {1024, 8192, 131072},
                     std::int64_t{1} << 27,
                     4,
                     16};
  const std::pair<const char*, int> masks[] = {{"none", 0}, {"padding", 25}, {"causal", 0}};
  std::vector<SoftmaxCase> out;
  for (DType t : s.dtypes)
    for (std::int64_t Lk : s.keys)
      for (const auto& [mask, pad] : masks) {
        SoftmaxCase c;
        c.device = d;
        c.t = t;
        c.B = s.B;
        c.H = s.H;
        c.Lk = Lk;
        c.Lq = std::max<std::int64_t>(1, s.elements / (s.B * s.H * Lk));
        c.pad = pad;
        c.mask = mask;
        out.push_back(c);
      }
  return out;
}

SoftmaxProblem make_problem(const SoftmaxCase& c) {
  SoftmaxProblem p;
  p.H = c.H;
  p.mask.B = c.B;
  p.mask.Lq = c.Lq;
  p.mask.Lk = c.Lk;
  Rng rng(mix(seed(), case_stream(c.key())));
  if (c.mask == "padding") p.mask.k_lens = draw_lengths(c.B, c.Lk, c.pad, rng);
  if (c.mask == "causal") p.mask.causal = true;
  return p;
}

struct SoftmaxFixture : CaseImpls {
  SoftmaxCase c;
  SoftmaxProblem p;
  std::unique_ptr<KernelMask> mask;  // for maskcheck's kernels
  Buffer x;
  std::map<std::string, Buffer> ys;  // one output buffer per implementation
  RowReference ref;
  Work work;
  std::string shape;
};

std::unique_ptr<SoftmaxFixture> make_fixture(const SoftmaxCase& c) {
  auto f = std::make_unique<SoftmaxFixture>();
  f->c = c;
  f->p = make_problem(c);
  const DeviceHarness& d = device(c.device);
  f->mask = d.mask(f->p.mask);
  const std::int64_t n = f->p.numel();
  const std::size_t es = dtype_bytes(c.t);
  f->x = Buffer(c.device, static_cast<std::size_t>(n) * es);
  const std::uint64_t s = mix(seed(), case_stream(c.key()));
  d.fill_uniform(f->x.get(), c.t, n, mix(s, 1), -8.0, 8.0);
  f->ref = softmax_rows(f->p, to_host(c.device, f->x.get(), c.t, n), s);
  const double visible = static_cast<double>(c.H) * visible_pairs(f->p.mask);
  f->work.bytes = static_cast<double>(es) * (visible + static_cast<double>(n));
  f->work.memory_bound = true;
  f->shape = "B=" + std::to_string(c.B) + " H=" + std::to_string(c.H);
  return f;
}

// A fresh output buffer for `impl`, poisoned (all bits set: NaN in f32, f16 and bf16).
void* output_for(SoftmaxFixture& f, const std::string& impl) {
  Buffer& y = f.ys[impl] =
      Buffer(f.c.device, static_cast<std::size_t>(f.p.numel()) * dtype_bytes(f.c.t));
  y.fill(0xFF);
  return y.get();
}

// Runs once, checks y (in the case's dtype, or `y_dtype` where a third party stores it wider),
// records the check.
Prepared finish(const SoftmaxFixture& f, const std::string& name, bool ours,
                std::function<void()> run, const void* y, const std::string& notes,
                std::optional<DType> y_dtype = std::nullopt) {
  Prepared pr;
  pr.run = std::move(run);
  pr.run();
  device(f.c.device).synchronize();
  const Readback got(f.c.device, y, y_dtype.value_or(f.c.t), f.p.numel());
  const std::int64_t H = f.p.H, Lq = f.p.mask.Lq, Lk = f.p.mask.Lk;
  pr.check = check_rows("y", f.ref, f.c.t,
                        [&](std::int64_t b, std::int64_t h, std::int64_t q, std::int64_t j) {
                          return got.at(((b * H + h) * Lq + q) * Lk + j);
                        });
  record_check(name, pr.check, ours);
  pr.work = f.work;
  pr.label = check_label(f.shape, notes, pr.check);
  return pr;
}

using SoftmaxTarget = Target<SoftmaxCase, SoftmaxFixture>;

#if MASKCHECK_BENCH_TORCH
// LibTorch softmax(x + mask) on a device.
SoftmaxTarget torch_target(Device d) {
  return {.device = d,
          .impl = "torch",
          .skip = [](const SoftmaxCase& c) { return torch_unusable(c.device, c.t); },
          .build =
              [](SoftmaxFixture& f, const std::string& name) {
                void* y = output_for(f, "torch");
                auto peer = std::make_shared<torch_peers::SoftmaxPeer>(
                    f.p, f.c.t, torch_device(f.c.device), f.x.get(), y);
                return finish(
                    f, name, false, [peer] { peer->run(); }, y, peer->description());
              }};
}
#endif

// maskcheck's kernel on a device: kernel(f, y) runs it into y.
SoftmaxTarget maskcheck_target(Device d, void (*kernel)(const SoftmaxFixture& f, void* y)) {
  return {.device = d,
          .impl = "maskcheck",
          .ours = true,
          .build = [kernel](SoftmaxFixture& f, const std::string& name) {
            void* y = output_for(f, "maskcheck");
            return finish(
                f, name, true, [&f, y, kernel] { kernel(f, y); }, y,
                device(f.c.device).kernels_note());
          }};
}

// A plugin (maskcheck bench --plugin) on the CPU: its softmax_forward on the case's buffers, x
// converted once where it stores x wider than the case's dtype.
SoftmaxTarget plugin_target(std::shared_ptr<const Implementation> plugin) {
  return {.device = Device::cpu,
          .impl = plugin->name(),
          .skip =
              [plugin](const SoftmaxCase& c) {
                std::string why = takes(*plugin, Op::softmax, c.t);
                if (why.empty())
                  if (const Support s = plugin->supports_softmax(make_problem(c), c.t); !s)
                    why = s.reason;
                return why;
              },
          .build =
              [plugin](SoftmaxFixture& f, const std::string& name) {
                const Storage st = plugin->storage(f.c.t);
                auto x = std::make_shared<Buffer>();
                const void* xp = f.x.get();
                if (st.x != f.c.t) {
                  *x = converted(f.x.get(), f.c.t, st.x, f.p.numel());
                  xp = x->get();
                }
                Buffer& y = f.ys[plugin->name()] =
                    Buffer(Device::cpu, static_cast<std::size_t>(f.p.numel()) * dtype_bytes(st.y));
                y.fill(0xFF);
                std::shared_ptr<plugin::PreparedCall> call =
                    plugin::prepare_softmax(*plugin, f.p, f.c.t, xp, y.get());
                return finish(
                    f, name, false, [call, x] { call->run(); }, y.get(), plugin->description(),
                    st.y);
              }};
}

#if MASKCHECK_BENCH_GGML
// ggml_soft_max_ext on the CPU (ggml_impl.hpp's Peer): one graph built once on the case's buffers.
SoftmaxTarget ggml_target() {
  return {.device = Device::cpu,
          .impl = "ggml",
          .skip = [](const SoftmaxCase& c) -> std::string {
            return c.t == DType::f32 ? "" : "ggml_soft_max_ext takes f32 scores only";
          },
          .build =
              [](SoftmaxFixture& f, const std::string& name) {
                void* y = output_for(f, "ggml");
                auto peer = std::make_shared<ggml_adapters::Peer>(f.p, f.c.t, f.x.get(), y, 0);
                return finish(
                    f, name, false, [peer] { peer->run(); }, y, peer->description());
              }};
}
#endif

// Every implementation, one registration each, in the order of their rows.
std::vector<SoftmaxTarget> targets() {
  std::vector<SoftmaxTarget> t;
  t.push_back(maskcheck_target(Device::cpu, [](const SoftmaxFixture& f, void* y) {
    cpu::masked_softmax(f.p, f.mask->view(), f.c.t, f.x.get(), y);
  }));
#if MASKCHECK_BENCH_TORCH
  t.push_back(torch_target(Device::cpu));
#endif
#if MASKCHECK_BENCH_GGML
  t.push_back(ggml_target());
#endif
  for (const auto& plugin : plugins()) t.push_back(plugin_target(plugin));
#if MASKCHECK_BENCH_CUDA
  t.push_back(maskcheck_target(Device::cuda, [](const SoftmaxFixture& f, void* y) {
    cuda::masked_softmax(f.p, f.mask->view(), f.c.t, f.x.get(), y, kStream);
  }));
#if MASKCHECK_BENCH_TORCH
  t.push_back(torch_target(Device::cuda));
#endif
#endif
  return t;
}

}  // namespace

MASKCHECK_BENCH_OPERATION(softmax, cases, targets, make_fixture);

}  // namespace maskcheck::bench
