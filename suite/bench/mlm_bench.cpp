// BERT-style MLM masking over about a million tokens, one case table for every target:
// maskcheck's kernels (cpu::mlm_mask, cuda::mlm_mask: Philox keyed by (seed, sequence, position)),
// checked bit for bit against the reference on every token.
//
// Names: <device>/mlm/T<tokens>/L<len>/pad<p>/maskcheck. Every device: B 2048 x L 512 (2^20
// tokens), 25 % mean padding, [CLS] and [SEP] special; CI: B 8 x L 128.
// Counters: bytes_per_second and bw_frac with minimal bytes = ids (8), keep (1), special (1) read
// and ids_out (8), labels (8) written per token (26 MiB a call: this row's data stays in a large
// last-level cache, so its CPU bw_frac can pass 1 there).
#include <memory>
#include <string>
#include <vector>

#include "check.hpp"
#include "harness.hpp"
#include "maskcheck/kernels/cpu.hpp"
#include "maskcheck/reference/mlm.hpp"
#include "maskcheck/suite/tolerance.hpp"
#if MASKCHECK_BENCH_CUDA
#include "cuda/cuda_harness.hpp"
#endif

namespace maskcheck::bench {

namespace {

// The case table: one case, the same on every device.
std::vector<TokenCase> cases(Device d) {
  return {{.device = d, .op = "mlm", .B = ci() ? 8 : 2048, .L = ci() ? 128 : 512, .pad = 25}};
}

struct MlmFixture : CaseImpls {
  TokenCase c;
  MlmProblem p;
  Buffer ids, keep, special, ids_out, labels;
  ref::MlmOutput want;
  Work work;
};

std::unique_ptr<MlmFixture> make_fixture(const TokenCase& c) {
  auto f = std::make_unique<MlmFixture>();
  f->c = c;
  MlmProblem& p = f->p;
  p.B = c.B;
  p.L = c.L;
  p.V = 30522;  // BERT's vocabulary; [MASK] = 103, [CLS] = 101, [SEP] = 102
  p.mask_id = 103;
  p.seed = seed();
  const std::int64_t n = c.B * c.L;
  Rng rng(mix(seed(), case_stream(c.key())));
  const auto lengths = draw_lengths(c.B, c.L, c.pad, rng);
  std::vector<std::uint8_t> keep(static_cast<std::size_t>(n), 0), special(keep.size(), 0);
  for (std::int64_t b = 0; b < c.B; ++b) {
    const std::int64_t len = lengths[static_cast<std::size_t>(b)];
    for (std::int64_t t = 0; t < len; ++t) keep[static_cast<std::size_t>(b * c.L + t)] = 1;
    special[static_cast<std::size_t>(b * c.L)] = 1;            // [CLS]
    special[static_cast<std::size_t>(b * c.L + len - 1)] = 1;  // [SEP]
  }
  const std::size_t bytes = static_cast<std::size_t>(n) * sizeof(std::int64_t);
  f->ids = Buffer(c.device, bytes);
  f->ids_out = Buffer(c.device, bytes);
  f->labels = Buffer(c.device, bytes);
  f->keep = Buffer(c.device, keep.size());
  f->special = Buffer(c.device, special.size());
  device(c.device).fill_ids(f->ids.as<std::int64_t>(), n, 1000, p.V,
                            mix(seed(), case_stream(c.key()) + 1));
  f->keep.upload(keep.data(), keep.size());
  f->special.upload(special.data(), special.size());
  f->ids_out.fill(0xFF);
  f->labels.fill(0xFF);
  const auto ids = to_host_vector<std::int64_t>(c.device, f->ids.get(), n);
  f->want = ref::mlm_mask(p, ids, keep, special, {});
  f->work.bytes = 26.0 * static_cast<double>(n);
  f->work.memory_bound = true;
  return f;
}

// Runs once, checks ids_out and labels bit for bit, records the check.
Prepared finish(const MlmFixture& f, const std::string& name, std::function<void()> run,
                const std::string& notes) {
  Prepared pr;
  pr.run = std::move(run);
  pr.run();
  device(f.c.device).synchronize();
  const std::int64_t n = f.p.B * f.p.L;
  const Shape shape{{"b", "t"}, {f.p.B, f.p.L}};
  const auto ids = to_host_vector<std::int64_t>(f.c.device, f.ids_out.get(), n);
  const auto labels = to_host_vector<std::int64_t>(f.c.device, f.labels.get(), n);
  const CheckResult ri = check_exact("ids_out", shape, std::span<const std::int64_t>(ids),
                                     std::span<const std::int64_t>(f.want.ids));
  const CheckResult rl = check_exact("labels", shape, std::span<const std::int64_t>(labels),
                                     std::span<const std::int64_t>(f.want.labels));
  pr.check.ok = ri.ok && rl.ok;
  pr.check.message = pr.check.ok ? "bit-exact on " + std::to_string(n) + " tokens"
                                 : ri.report() + (ri.ok || rl.ok ? "" : "; ") + rl.report();
  record_check(name, pr.check, true);
  pr.work = f.work;
  pr.label = check_label("B=" + std::to_string(f.p.B), notes, pr.check);
  return pr;
}

using MlmTarget = Target<TokenCase, MlmFixture>;

// Every implementation, one registration each, in the order of their rows.
std::vector<MlmTarget> targets() {
  std::vector<MlmTarget> t;
  t.push_back({.device = Device::cpu,
               .impl = "maskcheck",
               .ours = true,
               .build = [](MlmFixture& f, const std::string& name) {
                 return finish(
                     f, name,
                     [&f] {
                       cpu::mlm_mask(f.p, f.ids.as<std::int64_t>(), f.keep.as<std::uint8_t>(),
                                     f.special.as<std::uint8_t>(), nullptr,
                                     f.ids_out.as<std::int64_t>(), f.labels.as<std::int64_t>());
                     },
                     device(Device::cpu).kernels_note());
               }});
#if MASKCHECK_BENCH_CUDA
  t.push_back(
      {.device = Device::cuda,
       .impl = "maskcheck",
       .ours = true,
       .build = [](MlmFixture& f, const std::string& name) {
         auto workspace = std::make_shared<Buffer>(Device::cuda, cuda::mlm_workspace_bytes(f.p));
         return finish(
             f, name,
             [&f, workspace] {
               cuda::mlm_mask(f.p, f.ids.as<std::int64_t>(), f.keep.as<std::uint8_t>(),
                              f.special.as<std::uint8_t>(), nullptr, f.ids_out.as<std::int64_t>(),
                              f.labels.as<std::int64_t>(), workspace->get(), kStream);
             },
             "");
       }});
#endif
  return t;
}

}  // namespace

MASKCHECK_BENCH_OPERATION(mlm, cases, targets, make_fixture);

}  // namespace maskcheck::bench
