// Attention forward on the CPU: maskcheck::cpu::attention_forward (the structured mask, never
// materialized; tiles without a visible key skipped) against LibTorch's public
// at::scaled_dot_product_attention with the equivalent boolean mask (on the CPU it dispatches to
// its flash kernel; is_causal where that is exact, see torch_peers.hpp) and the reference.
//
// Names: cpu/attention/<dtype>/D<d>/L<l>/pad<p>/<mask>/<impl>, impl one of
//   maskcheck   padded layout [B, H, L, D], the structured mask
//   torch_sdpa  at::scaled_dot_product_attention, boolean keep-mask [B, 1, L, L] (or is_causal)
//   reference   ref::attention_forward<f32, double> with the keep-mask materialized once;
//               naive O(B H L^2 D), single-threaded: registered for f32 and L <= 256 only (in
//               bf16 it decodes every element in software, about 30x slower)
//
// Shapes (full): f32, bf16; D 64, 128; L 512 .. 4096 with B * L = 4096 tokens and H = 8 (the
// target row, f32 D128 L2048 pad50 padding+causal, is then B 2 and about 6 visible GFLOP: tens
// of ms for maskcheck on 2 cores, a few tenths of a second for a dense peer), and L 256 with B 2,
// H 4 for the reference; masks none, causal, window<w> (causal with w = min(256, L/4) keys to the
// left), documents+causal (4 documents per sequence) at 0 % padding, and padding,
// padding+causal at 25 % and 50 % mean padding (lengths drawn per case, deterministic). A
// padding mask at 0 % padding is the "none" case, so that axis is pruned on purpose.
// CI (MASKCHECK_CI=1): f32, bf16, D 64, L 128, B 2, H 2, every mask, every implementation
// (the reference in f32).
//
// Counters: useful_FLOPS (4 D per visible (q, k) pair and head), dense_FLOPS (4 D L^2 per head),
// visible_frac, fma_frac (useful over the FMA peak), bytes_per_second (valid rows of Q, K, V read
// once, of O written once).
#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "../check.hpp"
#include "../harness.hpp"
#include "cpu_harness.hpp"
#include "maskcheck/kernels/cpu.hpp"
#include "maskcheck/reference/attention.hpp"
#include "maskcheck/reference/masks.hpp"
#include "maskcheck/reference/predicate.hpp"
#if MASKCHECK_BENCH_TORCH
#include "maskcheck/adapters/torch_peers.hpp"
#endif

namespace maskcheck::bench {

namespace {

enum class MaskKind { none, padding, causal, padding_causal, window, documents };

struct AttnCase {
  DType t = DType::f32;
  std::int64_t D = 64, L = 512, B = 1, H = 1;
  int pad = 0;
  MaskKind mask = MaskKind::none;

  std::int64_t window_left() const { return std::min<std::int64_t>(256, L / 4); }
  bool has_padding() const { return mask == MaskKind::padding || mask == MaskKind::padding_causal; }
  std::string mask_name() const {
    switch (mask) {
      case MaskKind::none:
        return "none";
      case MaskKind::padding:
        return "padding";
      case MaskKind::causal:
        return "causal";
      case MaskKind::padding_causal:
        return "padding+causal";
      case MaskKind::window:
        return "window" + std::to_string(window_left());
      case MaskKind::documents:
        return "documents+causal";
    }
    return "?";
  }
  std::string key() const {
    return "cpu/attention/" + dtype_name(t) + "/D" + std::to_string(D) + "/L" + std::to_string(L) +
           "/pad" + std::to_string(pad) + "/" + mask_name();
  }
};

AttentionProblem make_problem(const AttnCase& c) {
  AttentionProblem p;
  p.H = c.H;
  p.Hkv = c.H;
  p.D = c.D;
  MaskSpec& m = p.mask;
  m.B = c.B;
  m.Lq = m.Lk = c.L;
  Rng rng(mix(seed(), name_hash(c.key())));
  if (c.has_padding()) {
    m.q_lens = draw_lengths(c.B, c.L, c.pad, rng);
    m.k_lens = m.q_lens;
  }
  m.causal = c.mask != MaskKind::none && c.mask != MaskKind::padding;
  if (c.mask == MaskKind::window) m.window = Window{c.window_left(), 0};
  if (c.mask == MaskKind::documents) {
    for (std::int64_t b = 0; b < c.B; ++b)
      m.cu_seqlens_q.push_back(draw_documents(static_cast<std::int32_t>(c.L), 4, rng));
    m.cu_seqlens_k = m.cu_seqlens_q;
  }
  return p;
}

struct AttnFixture : CpuCaseImpls {
  AttnCase c;
  AttentionProblem p;
  std::unique_ptr<FlatMask> flat;
  CpuBuffer q, k, v;
  std::map<std::string, CpuBuffer> outs;  // one output buffer per implementation
  RowReference ref;
  CpuWork work;
  std::string shape;
};

std::unique_ptr<AttnFixture> make_fixture(const AttnCase& c) {
  auto f = std::make_unique<AttnFixture>();
  f->c = c;
  f->p = make_problem(c);
  const AttentionProblem& p = f->p;
  f->flat = std::make_unique<FlatMask>(p.mask);
  const std::size_t es = dtype_bytes(c.t);
  f->q = CpuBuffer(static_cast<std::size_t>(p.q_numel()) * es);
  f->k = CpuBuffer(static_cast<std::size_t>(p.kv_numel()) * es);
  f->v = CpuBuffer(static_cast<std::size_t>(p.kv_numel()) * es);
  const std::uint64_t s = mix(seed(), name_hash(c.key()));
  cpu_fill_uniform(f->q.get(), c.t, p.q_numel(), mix(s, 1), -1.0, 1.0);
  cpu_fill_uniform(f->k.get(), c.t, p.kv_numel(), mix(s, 2), -1.0, 1.0);
  cpu_fill_uniform(f->v.get(), c.t, p.kv_numel(), mix(s, 3), -1.0, 1.0);
  f->ref = attention_rows(p, host_copy(f->q.get(), c.t, p.q_numel()),
                          host_copy(f->k.get(), c.t, p.kv_numel()),
                          host_copy(f->v.get(), c.t, p.kv_numel()), s);

  std::int64_t q_valid = 0, k_valid = 0;
  for (std::int64_t b = 0; b < p.mask.B; ++b) {
    q_valid += p.mask.q_len(b);
    k_valid += p.mask.k_len(b);
  }
  const double pairs = visible_pairs(p.mask);
  f->work.bytes =
      static_cast<double>(es) * static_cast<double>(p.D) *
      (2.0 * static_cast<double>(p.H * q_valid) + 2.0 * static_cast<double>(p.Hkv * k_valid));
  f->work.useful_flops = 4.0 * static_cast<double>(p.D * p.H) * pairs;
  f->work.dense_flops = 4.0 * static_cast<double>(p.D * p.H * p.mask.B) *
                        static_cast<double>(p.mask.Lq) * static_cast<double>(p.mask.Lk);
  f->shape = "B=" + std::to_string(p.mask.B) + " H=" + std::to_string(p.H) +
             " Hkv=" + std::to_string(p.Hkv);
  return f;
}

// A fresh output buffer for `impl`, poisoned (all bits set: NaN in f32 and bf16) so that a row an
// implementation forgot to write cannot pass the check on another implementation's result.
CpuBuffer& output_for(AttnFixture& f, const std::string& impl) {
  const std::size_t bytes = static_cast<std::size_t>(f.p.q_numel()) * dtype_bytes(f.c.t);
  CpuBuffer& out = f.outs[impl] = CpuBuffer(bytes);
  if (bytes > 0) std::memset(out.get(), 0xFF, bytes);
  return out;
}

// Runs once, checks the output that `fetch` returns (in the padded layout and the dtype), records
// the check.
CpuPrepared finish(const AttnFixture& f, const std::string& name, bool ours,
                   std::function<void()> run, const std::function<const void*()>& fetch,
                   const std::string& notes) {
  CpuPrepared pr;
  pr.run = std::move(run);
  pr.run();
  const void* out = fetch();
  const AttentionProblem& p = f.p;
  const std::int64_t H = p.H, D = p.D, Lq = p.mask.Lq;
  const DType t = f.c.t;
  pr.check = check_rows("out", f.ref, t,
                        [&](std::int64_t b, std::int64_t h, std::int64_t q, std::int64_t j) {
                          return value_at(out, t, ((b * H + h) * Lq + q) * D + j);
                        });
  record_check(name, pr.check, ours);
  pr.work = f.work;
  pr.label = check_label(f.shape, notes, pr.check);
  return pr;
}

CpuPrepared build(AttnFixture& f, const std::string& impl, const std::string& name) {
  const AttentionProblem& p = f.p;
  const DType t = f.c.t;
  if (impl == "maskcheck") {
    void* out = output_for(f, impl).get();
    return finish(
        f, name, true,
        [&f, out] {
          cpu::attention_forward(f.p.shape(), f.flat->view(), f.c.t, f.q.get(), f.k.get(),
                                 f.v.get(), out, nullptr);
        },
        [out] { return out; },
        "maskcheck::cpu (" + cpu::simd_target() + ", " + std::to_string(cpu::max_threads()) +
            " threads)");
  }
  if (impl == "reference") {
    void* out = output_for(f, impl).get();
    auto keep = std::make_shared<std::vector<std::uint8_t>>(ref::build_keep_mask(p.mask));
    return finish(
        f, name, false,
        [&f, out, keep] {
          dispatch_dtype(f.c.t, [&](auto tag) {
            using S = decltype(tag);
            const auto nq = static_cast<std::size_t>(f.p.q_numel());
            const auto nkv = static_cast<std::size_t>(f.p.kv_numel());
            ref::attention_forward<S, double>(f.p, std::span<const std::uint8_t>(*keep),
                                              std::span<const S>(f.q.as<const S>(), nq),
                                              std::span<const S>(f.k.as<const S>(), nkv),
                                              std::span<const S>(f.v.as<const S>(), nkv),
                                              std::span<S>(static_cast<S*>(out), nq),
                                              std::span<double>());
          });
        },
        [out] { return out; },
        "ref::attention_forward<" + dtype_name(t) +
            ", double>, single thread, keep-mask materialized once");
  }
#if MASKCHECK_BENCH_TORCH
  namespace tp = torch_peers;
  auto peer = std::make_shared<tp::SdpaPeer>(tp::SdpaBackend::dispatch, tp::Layout::padded, p, t,
                                             tp::Device::cpu, f.q.get(), f.k.get(), f.v.get());
  void* out = output_for(f, impl).get();
  return finish(
      f, name, false, [peer] { peer->run(); },
      [peer, out] {
        peer->copy_output(out);  // LibTorch's output tensor, contiguous, into the padded layout
        return out;
      },
      peer->description());
#else
  (void)t;
  throw std::runtime_error("unknown implementation " + impl);
#endif
}

void add_attention(const AttnCase& c, const std::string& impl, bool ours) {
  const std::string name = c.key() + "/" + impl;
  add_cpu(name, [c, impl, name, ours](benchmark::State& state) {
    run_cpu(state, name, ours, [&]() -> CpuPrepared& {
      auto& f = CaseCache::get<AttnFixture>(c.key(), [&] { return make_fixture(c); });
      return f.get(impl, [&] { return build(f, impl, name); });
    });
  });
}

void register_attention() {
  std::vector<DType> dtypes{DType::f32, DType::bf16};
  std::vector<std::int64_t> Ds{64, 128}, Ls{256, 512, 1024, 2048, 4096};
  std::int64_t tokens = 4096, H = 8, reference_max_L = 256;
  if (ci()) {
    Ds = {64};
    Ls = {128};
    tokens = 256;
    H = 2;
    reference_max_L = 128;
  }
  const std::pair<MaskKind, int> grid[] = {{MaskKind::none, 0},
                                           {MaskKind::causal, 0},
                                           {MaskKind::window, 0},
                                           {MaskKind::documents, 0},
                                           {MaskKind::padding, 25},
                                           {MaskKind::padding, 50},
                                           {MaskKind::padding_causal, 25},
                                           {MaskKind::padding_causal, 50}};
  for (DType t : dtypes)
    for (std::int64_t D : Ds)
      for (std::int64_t L : Ls)
        for (const auto& [mask, pad] : grid) {
          AttnCase c;
          c.t = t;
          c.D = D;
          c.L = L;
          c.B = std::max<std::int64_t>(1, tokens / L);
          c.H = H;
          if (!ci() && L <= reference_max_L) {  // the reference's sizes: it is naive
            c.B = 2;
            c.H = 4;
          }
          c.pad = pad;
          c.mask = mask;
          add_attention(c, "maskcheck", true);
#if MASKCHECK_BENCH_TORCH
          namespace tp = torch_peers;
          std::string why = torch_cpu_unusable(t);
          if (why.empty())
            why = tp::sdpa_supports(tp::SdpaBackend::dispatch, tp::Layout::padded, make_problem(c),
                                    t, tp::Device::cpu);
          if (why.empty())
            add_attention(c, "torch_sdpa", false);
          else
            note_pruned(c.key() + "/torch_sdpa", why);
#endif
          if (t != DType::f32)
            note_pruned(c.key() + "/reference",
                        "the reference decodes bf16 in software, element by element (about 30x "
                        "its f32 time): f32 only");
          else if (L <= reference_max_L)
            add_attention(c, "reference", false);
          else
            note_pruned(c.key() + "/reference", "the reference is naive: L <= " +
                                                    std::to_string(reference_max_L) + " only");
        }
}

}  // namespace

MASKCHECK_BENCH_SUITE(cpu_attention, register_attention);

}  // namespace maskcheck::bench
