// Causal-LM label construction over about four million tokens: maskcheck's CPU kernel
// (cpu::lm_labels: labels = next ids where both positions are kept and the target is past the
// prompt), checked token for token against the reference. The CUDA kernels have no lm_labels, so
// only the CPU has a target.
//
// Names: <device>/lm_labels/T<tokens>/L<len>/pad<p>/maskcheck. B 2048 x L 2048 (4M tokens,
// 68 MiB a call, beyond the last-level cache), 25 % mean padding, prompts of up to L / 4 tokens;
// CI: B 8 x L 128.
// Counters: bytes_per_second and bw_frac with minimal bytes = ids (8) and keep (1) read and
// labels (8) written per token.
#include <memory>
#include <string>
#include <vector>

#include "check.hpp"
#include "harness.hpp"
#include "maskcheck/kernels/cpu.hpp"
#include "maskcheck/reference/loss.hpp"
#include "maskcheck/suite/tolerance.hpp"

namespace maskcheck::bench {

namespace {

// The case table: one case, the same on every device.
std::vector<TokenCase> cases(Device d) {
  return {
      {.device = d, .op = "lm_labels", .B = ci() ? 8 : 2048, .L = ci() ? 128 : 2048, .pad = 25}};
}

struct LabelsFixture : CaseImpls {
  TokenCase c;
  LmLabelsProblem p;
  Buffer ids, keep, prompts, labels;
  std::vector<std::int64_t> want;
  Work work;
};

std::unique_ptr<LabelsFixture> make_fixture(const TokenCase& c) {
  auto f = std::make_unique<LabelsFixture>();
  f->c = c;
  f->p.B = c.B;
  f->p.L = c.L;
  const std::int64_t n = c.B * c.L;
  Rng rng(mix(seed(), case_stream(c.key())));
  const auto lengths = draw_lengths(c.B, c.L, c.pad, rng);
  std::vector<std::uint8_t> keep(static_cast<std::size_t>(n), 0);
  std::vector<std::int32_t> prompts(static_cast<std::size_t>(c.B));
  for (std::int64_t b = 0; b < c.B; ++b) {
    const std::int64_t len = lengths[static_cast<std::size_t>(b)];
    for (std::int64_t t = 0; t < len; ++t) keep[static_cast<std::size_t>(b * c.L + t)] = 1;
    prompts[static_cast<std::size_t>(b)] = static_cast<std::int32_t>(rng.uniform(0, c.L / 4));
  }
  const std::size_t bytes = static_cast<std::size_t>(n) * sizeof(std::int64_t);
  f->ids = Buffer(c.device, bytes);
  f->labels = Buffer(c.device, bytes);
  f->keep = Buffer(c.device, keep.size());
  f->prompts = Buffer(c.device, prompts.size() * sizeof(std::int32_t));
  device(c.device).fill_ids(f->ids.as<std::int64_t>(), n, 0, 128256,
                            mix(seed(), case_stream(c.key()) + 1));
  f->keep.upload(keep.data(), keep.size());
  f->prompts.upload(prompts.data(), f->prompts.bytes());
  f->labels.fill(0xFF);
  f->want =
      ref::lm_labels(f->p, to_host_vector<std::int64_t>(c.device, f->ids.get(), n), keep, prompts);
  f->work.bytes = 17.0 * static_cast<double>(n);
  f->work.memory_bound = true;
  return f;
}

// Runs once, checks the labels token for token, records the check.
Prepared finish(const LabelsFixture& f, const std::string& name, std::function<void()> run,
                const std::string& notes) {
  Prepared pr;
  pr.run = std::move(run);
  pr.run();
  device(f.c.device).synchronize();
  const std::int64_t n = f.p.B * f.p.L;
  const Shape shape{{"b", "t"}, {f.p.B, f.p.L}};
  const auto labels = to_host_vector<std::int64_t>(f.c.device, f.labels.get(), n);
  const CheckResult r = check_exact("labels", shape, std::span<const std::int64_t>(labels),
                                    std::span<const std::int64_t>(f.want));
  pr.check.ok = r.ok;
  pr.check.message = r.ok ? "exact on " + std::to_string(n) + " tokens" : r.report();
  record_check(name, pr.check, true);
  pr.work = f.work;
  pr.label = check_label("B=" + std::to_string(f.p.B), notes, pr.check);
  return pr;
}

using LabelsTarget = Target<TokenCase, LabelsFixture>;

// Every implementation, one registration each, in the order of their rows.
std::vector<LabelsTarget> targets() {
  std::vector<LabelsTarget> t;
  t.push_back({.device = Device::cpu,
               .impl = "maskcheck",
               .ours = true,
               .build = [](LabelsFixture& f, const std::string& name) {
                 return finish(
                     f, name,
                     [&f] {
                       cpu::lm_labels(f.p, f.ids.as<std::int64_t>(), f.keep.as<std::uint8_t>(),
                                      f.prompts.as<std::int32_t>(), f.labels.as<std::int64_t>());
                     },
                     "maskcheck::cpu (" + std::to_string(cpu::max_threads()) + " threads)");
               }});
  return t;
}

}  // namespace

MASKCHECK_BENCH_OPERATION(lm_labels, cases, targets, make_fixture);

}  // namespace maskcheck::bench
