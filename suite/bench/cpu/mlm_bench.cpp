// BERT-style MLM masking over about a million tokens on the CPU: maskcheck::cpu::mlm_mask
// (Philox keyed by (seed, sequence, position)), checked bit for bit against the reference on
// every token.
//
// Names: cpu/mlm/T<tokens>/L<len>/pad<p>/maskcheck. Full: B 2048 x L 512 (2^20 tokens), 25 % mean
// padding, [CLS] and [SEP] special; CI: B 8 x L 128.
// Counters: bytes_per_second and bw_frac with minimal bytes = ids (8), keep (1), special (1) read
// and ids_out (8), labels (8) written per token (26 MiB a call: this row's data stays in a large
// last-level cache, so its bw_frac can pass 1 there).
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "../harness.hpp"
#include "cpu_harness.hpp"
#include "maskcheck/kernels/cpu.hpp"
#include "maskcheck/reference/mlm.hpp"
#include "maskcheck/suite/tolerance.hpp"

namespace maskcheck::bench {

namespace {

struct MlmCase {
  std::int64_t B = 1, L = 1;
  int pad = 0;
  std::string key() const {
    return "cpu/mlm/T" + std::to_string(B * L) + "/L" + std::to_string(L) + "/pad" +
           std::to_string(pad);
  }
};

struct MlmFixture : CpuCaseImpls {
  MlmCase c;
  MlmProblem p;
  CpuBuffer ids, ids_out, labels;
  std::vector<std::uint8_t> keep, special;
  ref::MlmOutput want;
  CpuWork work;
};

std::unique_ptr<MlmFixture> make_fixture(const MlmCase& c) {
  auto f = std::make_unique<MlmFixture>();
  f->c = c;
  MlmProblem& p = f->p;
  p.B = c.B;
  p.L = c.L;
  p.V = 30522;  // BERT's vocabulary; [MASK] = 103, [CLS] = 101, [SEP] = 102
  p.mask_id = 103;
  p.seed = seed();
  const std::int64_t n = c.B * c.L;
  Rng rng(mix(seed(), name_hash(c.key())));
  const auto lengths = draw_lengths(c.B, c.L, c.pad, rng);
  f->keep.assign(static_cast<std::size_t>(n), 0);
  f->special.assign(static_cast<std::size_t>(n), 0);
  for (std::int64_t b = 0; b < c.B; ++b) {
    const std::int64_t len = lengths[static_cast<std::size_t>(b)];
    for (std::int64_t t = 0; t < len; ++t) f->keep[static_cast<std::size_t>(b * c.L + t)] = 1;
    f->special[static_cast<std::size_t>(b * c.L)] = 1;            // [CLS]
    f->special[static_cast<std::size_t>(b * c.L + len - 1)] = 1;  // [SEP]
  }
  const std::size_t bytes = static_cast<std::size_t>(n) * sizeof(std::int64_t);
  f->ids = CpuBuffer(bytes);
  f->ids_out = CpuBuffer(bytes);
  f->labels = CpuBuffer(bytes);
  cpu_fill_ids(f->ids.as<std::int64_t>(), n, 1000, p.V, mix(seed(), name_hash(c.key()) + 1));
  std::memset(f->ids_out.get(), 0xFF, bytes);
  std::memset(f->labels.get(), 0xFF, bytes);
  f->want = ref::mlm_mask(
      p,
      std::span<const std::int64_t>(f->ids.as<const std::int64_t>(), static_cast<std::size_t>(n)),
      f->keep, f->special, {});
  f->work.bytes = 26.0 * static_cast<double>(n);
  f->work.memory_bound = true;
  return f;
}

CpuPrepared build(MlmFixture& f, const std::string& name) {
  CpuPrepared pr;
  pr.run = [&f] {
    cpu::mlm_mask(f.p, f.ids.as<std::int64_t>(), f.keep.data(), f.special.data(), nullptr,
                  f.ids_out.as<std::int64_t>(), f.labels.as<std::int64_t>());
  };
  pr.run();
  const std::int64_t n = f.p.B * f.p.L;
  const Shape shape{{"b", "t"}, {f.p.B, f.p.L}};
  const auto un = static_cast<std::size_t>(n);
  const CheckResult ri =
      check_exact("ids_out", shape, std::span<const std::int64_t>(f.ids_out.as<std::int64_t>(), un),
                  std::span<const std::int64_t>(f.want.ids));
  const CheckResult rl =
      check_exact("labels", shape, std::span<const std::int64_t>(f.labels.as<std::int64_t>(), un),
                  std::span<const std::int64_t>(f.want.labels));
  pr.check.ok = ri.ok && rl.ok;
  pr.check.message = pr.check.ok ? "bit-exact on " + std::to_string(n) + " tokens"
                                 : ri.report() + (ri.ok || rl.ok ? "" : "; ") + rl.report();
  record_check(name, pr.check, true);
  pr.work = f.work;
  pr.label = check_label("B=" + std::to_string(f.p.B),
                         "maskcheck::cpu (" + cpu::simd_target() + ", " +
                             std::to_string(cpu::max_threads()) + " threads)",
                         pr.check);
  return pr;
}

void register_mlm() {
  MlmCase c;
  c.B = ci() ? 8 : 2048;
  c.L = ci() ? 128 : 512;
  c.pad = 25;
  const std::string name = c.key() + "/maskcheck";
  add_cpu(name, [c, name](benchmark::State& state) {
    run_cpu(state, name, true, [&]() -> CpuPrepared& {
      auto& f = CaseCache::get<MlmFixture>(c.key(), [&] { return make_fixture(c); });
      return f.get("maskcheck", [&] { return build(f, name); });
    });
  });
}

}  // namespace

MASKCHECK_BENCH_SUITE(cpu_mlm, register_mlm);

}  // namespace maskcheck::bench
