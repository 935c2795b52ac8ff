// Causal-LM label construction over about a million tokens on the CPU: maskcheck::cpu::lm_labels
// (labels = next ids where both positions are kept and the target is past the prompt), checked
// token for token against the reference.
//
// Names: cpu/lm_labels/T<tokens>/L<len>/pad<p>/maskcheck. Full: B 2048 x L 2048 (4M tokens,
// 68 MiB a call, beyond the last-level cache), 25 % mean padding, prompts of up to L / 4 tokens;
// CI: B 8 x L 128.
// Counters: bytes_per_second and bw_frac with minimal bytes = ids (8) and keep (1) read and
// labels (8) written per token.
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "../harness.hpp"
#include "cpu_harness.hpp"
#include "maskcheck/kernels/cpu.hpp"
#include "maskcheck/reference/loss.hpp"
#include "maskcheck/suite/tolerance.hpp"

namespace maskcheck::bench {

namespace {

struct LabelsCase {
  std::int64_t B = 1, L = 1;
  int pad = 0;
  std::string key() const {
    return "cpu/lm_labels/T" + std::to_string(B * L) + "/L" + std::to_string(L) + "/pad" +
           std::to_string(pad);
  }
};

struct LabelsFixture : CpuCaseImpls {
  LabelsCase c;
  LmLabelsProblem p;
  CpuBuffer ids, labels;
  std::vector<std::uint8_t> keep;
  std::vector<std::int32_t> prompts;
  std::vector<std::int64_t> want;
  CpuWork work;
};

std::unique_ptr<LabelsFixture> make_fixture(const LabelsCase& c) {
  auto f = std::make_unique<LabelsFixture>();
  f->c = c;
  f->p.B = c.B;
  f->p.L = c.L;
  const std::int64_t n = c.B * c.L;
  Rng rng(mix(seed(), name_hash(c.key())));
  const auto lengths = draw_lengths(c.B, c.L, c.pad, rng);
  f->keep.assign(static_cast<std::size_t>(n), 0);
  f->prompts.resize(static_cast<std::size_t>(c.B));
  for (std::int64_t b = 0; b < c.B; ++b) {
    const std::int64_t len = lengths[static_cast<std::size_t>(b)];
    for (std::int64_t t = 0; t < len; ++t) f->keep[static_cast<std::size_t>(b * c.L + t)] = 1;
    f->prompts[static_cast<std::size_t>(b)] = static_cast<std::int32_t>(rng.uniform(0, c.L / 4));
  }
  const std::size_t bytes = static_cast<std::size_t>(n) * sizeof(std::int64_t);
  f->ids = CpuBuffer(bytes);
  f->labels = CpuBuffer(bytes);
  cpu_fill_ids(f->ids.as<std::int64_t>(), n, 0, 128256, mix(seed(), name_hash(c.key()) + 1));
  std::memset(f->labels.get(), 0xFF, bytes);
  f->want = ref::lm_labels(
      f->p,
      std::span<const std::int64_t>(f->ids.as<const std::int64_t>(), static_cast<std::size_t>(n)),
      f->keep, f->prompts);
  f->work.bytes = 17.0 * static_cast<double>(n);
  f->work.memory_bound = true;
  return f;
}

CpuPrepared build(LabelsFixture& f, const std::string& name) {
  CpuPrepared pr;
  pr.run = [&f] {
    cpu::lm_labels(f.p, f.ids.as<std::int64_t>(), f.keep.data(), f.prompts.data(),
                   f.labels.as<std::int64_t>());
  };
  pr.run();
  const std::int64_t n = f.p.B * f.p.L;
  const Shape shape{{"b", "t"}, {f.p.B, f.p.L}};
  const CheckResult r = check_exact(
      "labels", shape,
      std::span<const std::int64_t>(f.labels.as<std::int64_t>(), static_cast<std::size_t>(n)),
      std::span<const std::int64_t>(f.want));
  pr.check.ok = r.ok;
  pr.check.message = r.ok ? "exact on " + std::to_string(n) + " tokens" : r.report();
  record_check(name, pr.check, true);
  pr.work = f.work;
  pr.label =
      check_label("B=" + std::to_string(f.p.B),
                  "maskcheck::cpu (" + std::to_string(cpu::max_threads()) + " threads)", pr.check);
  return pr;
}

void register_labels() {
  LabelsCase c;
  c.B = ci() ? 8 : 2048;
  c.L = ci() ? 128 : 2048;
  c.pad = 25;
  const std::string name = c.key() + "/maskcheck";
  add_cpu(name, [c, name](benchmark::State& state) {
    run_cpu(state, name, true, [&]() -> CpuPrepared& {
      auto& f = CaseCache::get<LabelsFixture>(c.key(), [&] { return make_fixture(c); });
      return f.get("maskcheck", [&] { return build(f, name); });
    });
  });
}

}  // namespace

MASKCHECK_BENCH_SUITE(cpu_lm_labels, register_labels);

}  // namespace maskcheck::bench
