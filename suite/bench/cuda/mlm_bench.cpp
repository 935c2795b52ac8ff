// BERT-style MLM masking over about a million tokens: maskcheck::cuda::mlm_mask (Philox keyed by
// (seed, sequence, position)), checked bit for bit against the reference on every token.
//
// Names: mlm/T<tokens>/L<len>/pad<p>/maskcheck. Full: B 2048 x L 512 (2^20 tokens), 25 % mean
// padding, [CLS] and [SEP] special; CI: B 8 x L 128.
// Counters: bytes_per_second and bw_frac with minimal bytes = ids (8), keep (1), special (1) read
// and ids_out (8), labels (8) written per token.
#include <memory>
#include <string>
#include <vector>

#include "../harness.hpp"
#include "cuda_harness.hpp"
#include "fill.hpp"
#include "maskcheck/reference/mlm.hpp"
#include "maskcheck/suite/tolerance.hpp"

namespace maskcheck::bench {

namespace {

struct MlmCase {
  std::int64_t B = 1, L = 1;
  int pad = 0;
  std::string key() const {
    return "mlm/T" + std::to_string(B * L) + "/L" + std::to_string(L) + "/pad" +
           std::to_string(pad);
  }
};

struct MlmFixture : CaseImpls {
  MlmCase c;
  MlmProblem p;
  cuda::DeviceBuffer ids, keep, special, ids_out, labels, workspace;
  ref::MlmOutput want;
  Work work;
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
  std::vector<std::uint8_t> keep(static_cast<std::size_t>(n), 0), special(keep.size(), 0);
  for (std::int64_t b = 0; b < c.B; ++b) {
    const std::int64_t len = lengths[static_cast<std::size_t>(b)];
    for (std::int64_t t = 0; t < len; ++t) keep[static_cast<std::size_t>(b * c.L + t)] = 1;
    special[static_cast<std::size_t>(b * c.L)] = 1;            // [CLS]
    special[static_cast<std::size_t>(b * c.L + len - 1)] = 1;  // [SEP]
  }
  f->ids = cuda::DeviceBuffer(static_cast<std::size_t>(n) * sizeof(std::int64_t));
  f->ids_out = cuda::DeviceBuffer(f->ids.bytes());
  f->labels = cuda::DeviceBuffer(f->ids.bytes());
  f->keep = cuda::DeviceBuffer(keep.size());
  f->special = cuda::DeviceBuffer(special.size());
  f->workspace = cuda::DeviceBuffer(cuda::mlm_workspace_bytes(p));
  fill_ids(f->ids.as<std::int64_t>(), n, 1000, p.V, mix(seed(), name_hash(c.key()) + 1), kStream);
  f->keep.upload(keep.data(), keep.size(), kStream);
  f->special.upload(special.data(), special.size(), kStream);
  cuda::check(cudaDeviceSynchronize(), "fill");
  const auto ids = download_vector<std::int64_t>(f->ids.get(), n);
  f->want = ref::mlm_mask(p, ids, keep, special, {});
  f->work.bytes = 26.0 * static_cast<double>(n);
  f->work.memory_bound = true;
  return f;
}

Prepared build(MlmFixture& f, const std::string& name) {
  Prepared pr;
  pr.launch = [&f] {
    cuda::mlm_mask(f.p, f.ids.as<std::int64_t>(), f.keep.as<std::uint8_t>(),
                   f.special.as<std::uint8_t>(), nullptr, f.ids_out.as<std::int64_t>(),
                   f.labels.as<std::int64_t>(), f.workspace.get(), kStream);
  };
  pr.launch();
  cuda::check(cudaDeviceSynchronize(), "first run");
  const std::int64_t n = f.p.B * f.p.L;
  const Shape shape{{"b", "t"}, {f.p.B, f.p.L}};
  const auto ids = download_vector<std::int64_t>(f.ids_out.get(), n);
  const auto labels = download_vector<std::int64_t>(f.labels.get(), n);
  const CheckResult ri = check_exact("ids_out", shape, std::span<const std::int64_t>(ids),
                                     std::span<const std::int64_t>(f.want.ids));
  const CheckResult rl = check_exact("labels", shape, std::span<const std::int64_t>(labels),
                                     std::span<const std::int64_t>(f.want.labels));
  pr.check.ok = ri.ok && rl.ok;
  pr.check.message = pr.check.ok ? "bit-exact on " + std::to_string(n) + " tokens"
                                 : ri.report() + (ri.ok || rl.ok ? "" : "; ") + rl.report();
  record_check(name, pr.check, true);
  pr.work = f.work;
  pr.label = "B=" + std::to_string(f.p.B) + " | check: " + pr.check.message;
  return pr;
}

void register_mlm() {
  MlmCase c;
  c.B = ci() ? 8 : 2048;
  c.L = ci() ? 128 : 512;
  c.pad = 25;
  const std::string name = c.key() + "/maskcheck";
  add(name, [c, name](benchmark::State& state) {
    run_prepared(state, name, true, [&]() -> Prepared& {
      auto& f = CaseCache::get<MlmFixture>(c.key(), [&] { return make_fixture(c); });
      return f.get("maskcheck", [&] { return build(f, name); });
    });
  });
}

}  // namespace

MASKCHECK_BENCH_SUITE(mlm, register_mlm);

}  // namespace maskcheck::bench
