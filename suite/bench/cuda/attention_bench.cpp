// Attention forward: maskcheck::cuda::attention_forward (padded), attention_varlen (packed), and
// LibTorch's SDPA backends on the same inputs.
//
// Names: attention/<dtype>/D<d>/L<l>/pad<p>/<mask>/<impl>, impl one of
//   maskcheck           padded layout [B, H, L, D], the structured mask (no tensor)
//   maskcheck_varlen    packed layout of the same problem (cases with padding or documents)
//   torch_flash         _flash_attention_forward: no mask, is_causal, or a window (square only)
//   torch_flash_varlen  the same op with cu_seqlens over the packed layout
//   torch_efficient     _scaled_dot_product_efficient_attention with the additive mask
//   torch_cudnn         _scaled_dot_product_cudnn_attention with the additive mask
//   torch_math          _scaled_dot_product_attention_math (L <= 2048: it materializes scores)
// (torch peers use is_causal instead of a tensor where that is exact; see torch_peers.hpp.)
//
// Shapes (full): dtypes bf16, f16; D 64, 128; L 512 .. 4096 with B * L = 16384 tokens and H = 16
// (B = 8, H = 16 at L = 2048 fills an H100); masks none, causal, window256 (causal with 256 keys
// to the left), documents+causal (4 documents per sequence) at 0 % padding, and padding,
// padding+causal at 25 % and 50 % mean padding (lengths drawn per case, deterministic). Padding
// axes are pruned on purpose: a padding mask at 0 % padding is the "none" case.
// CI (MASKCHECK_CI=1): bf16, D 64, L 256, B 2, H 2, every mask.
//
// Counters: useful_TFLOPS (4 D per visible (q, k) pair and head), dense_TFLOPS (4 D Lq Lk per
// head), visible_frac, bytes_per_second (valid rows of Q, K, V read once, of O written once).
#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "../check.hpp"
#include "../harness.hpp"
#include "cuda_harness.hpp"
#include "fill.hpp"
#include "maskcheck/reference/predicate.hpp"
#if MASKCHECK_BENCH_TORCH
#include "maskcheck/adapters/torch_peers.hpp"
#endif

namespace maskcheck::bench {

namespace {

enum class MaskKind { none, padding, causal, padding_causal, window, documents };

struct AttnCase {
  DType t = DType::bf16;
  std::int64_t D = 64, L = 512, B = 1, H = 1;
  int pad = 0;
  MaskKind mask = MaskKind::none;

  std::int64_t window_left() const { return std::min<std::int64_t>(256, L / 4); }
  bool has_padding() const { return mask == MaskKind::padding || mask == MaskKind::padding_causal; }
  bool packs() const { return has_padding() || mask == MaskKind::documents; }
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
    return "attention/" + dtype_name(t) + "/D" + std::to_string(D) + "/L" + std::to_string(L) +
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

// The packed (varlen) layout of a padded case: the valid rows of every sequence, in order;
// segments are documents when there are any, else sequences.
struct PackedCase {
  VarlenAttentionProblem vp;
  std::vector<std::int64_t> row0;  // packed row of sequence b's first valid query
  std::int64_t total_q = 0, total_k = 0;
  cuda::DeviceBuffer q, k, v, out, cu_q, cu_k;
};

struct AttnFixture : CaseImpls {
  AttnCase c;
  AttentionProblem p;
  std::unique_ptr<cuda::DeviceMask> mask;
  cuda::DeviceBuffer q, k, v, out, scratch;
  HostTensor hq, hk, hv;
  RowReference ref;
  Work work;
  std::string shape;
  std::unique_ptr<PackedCase> packed;
};

std::unique_ptr<AttnFixture> make_fixture(const AttnCase& c) {
  auto f = std::make_unique<AttnFixture>();
  f->c = c;
  f->p = make_problem(c);
  const AttentionProblem& p = f->p;
  const std::size_t es = cuda::dtype_bytes(c.t);
  f->mask = std::make_unique<cuda::DeviceMask>(p.mask, kStream);
  f->q = cuda::DeviceBuffer(static_cast<std::size_t>(p.q_numel()) * es);
  f->k = cuda::DeviceBuffer(static_cast<std::size_t>(p.kv_numel()) * es);
  f->v = cuda::DeviceBuffer(static_cast<std::size_t>(p.kv_numel()) * es);
  f->out = cuda::DeviceBuffer(static_cast<std::size_t>(p.q_numel()) * es);
  f->scratch = cuda::DeviceBuffer(static_cast<std::size_t>(p.q_numel()) * es);
  const std::uint64_t s = mix(seed(), name_hash(c.key()));
  fill_uniform(f->q.get(), c.t, p.q_numel(), mix(s, 1), -1.0, 1.0, kStream);
  fill_uniform(f->k.get(), c.t, p.kv_numel(), mix(s, 2), -1.0, 1.0, kStream);
  fill_uniform(f->v.get(), c.t, p.kv_numel(), mix(s, 3), -1.0, 1.0, kStream);
  cuda::check(cudaDeviceSynchronize(), "fill");
  f->hq = download(f->q.get(), c.t, p.q_numel());
  f->hk = download(f->k.get(), c.t, p.kv_numel());
  f->hv = download(f->v.get(), c.t, p.kv_numel());
  f->ref = attention_rows(p, f->hq, f->hk, f->hv, s);

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

// Copies the valid rows of a padded [B, Hx, L, D] tensor into the packed [total, Hx, D] layout.
void pack_rows(const void* padded, void* packed, std::int64_t B, std::int64_t Hx, std::int64_t L,
               std::int64_t D, const MaskSpec& m, bool keys, std::size_t es) {
  std::int64_t row = 0;
  for (std::int64_t b = 0; b < B; ++b) {
    const std::int64_t len = keys ? m.k_len(b) : m.q_len(b);
    const std::int64_t first = valid_begin(m.padding, L, len);
    for (std::int64_t h = 0; h < Hx && len > 0; ++h) {
      const auto* src = static_cast<const char*>(padded) +
                        ((b * Hx + h) * L + first) * D * static_cast<std::int64_t>(es);
      auto* dst = static_cast<char*>(packed) + (row * Hx + h) * D * static_cast<std::int64_t>(es);
      cuda::check(
          cudaMemcpy2DAsync(dst, static_cast<std::size_t>(Hx * D) * es, src,
                            static_cast<std::size_t>(D) * es, static_cast<std::size_t>(D) * es,
                            static_cast<std::size_t>(len), cudaMemcpyDeviceToDevice, kStream),
          "pack");
    }
    row += len;
  }
}

PackedCase& packed_case(AttnFixture& f) {
  if (f.packed) return *f.packed;
  auto pc = std::make_unique<PackedCase>();
  const AttentionProblem& p = f.p;
  const MaskSpec& m = p.mask;
  const std::size_t es = cuda::dtype_bytes(f.c.t);
  VarlenAttentionProblem& vp = pc->vp;
  vp.H = p.H;
  vp.Hkv = p.Hkv;
  vp.D = p.D;
  vp.causal = m.causal;
  vp.alignment = m.alignment;
  vp.window = m.window;
  vp.scale = p.scale;
  vp.cu_seqlens_q = {0};
  vp.cu_seqlens_k = {0};
  for (std::int64_t b = 0; b < m.B; ++b) {
    pc->row0.push_back(pc->total_q);
    if (m.has_documents()) {
      const auto& cq = m.cu_seqlens_q[static_cast<std::size_t>(b)];
      const auto& ck = m.cu_seqlens_k[static_cast<std::size_t>(b)];
      for (std::size_t i = 1; i < cq.size(); ++i) {
        vp.cu_seqlens_q.push_back(static_cast<std::int32_t>(pc->total_q) + cq[i]);
        vp.cu_seqlens_k.push_back(static_cast<std::int32_t>(pc->total_k) + ck[i]);
      }
    } else {
      vp.cu_seqlens_q.push_back(static_cast<std::int32_t>(pc->total_q + m.q_len(b)));
      vp.cu_seqlens_k.push_back(static_cast<std::int32_t>(pc->total_k + m.k_len(b)));
    }
    pc->total_q += m.q_len(b);
    pc->total_k += m.k_len(b);
  }
  pc->q = cuda::DeviceBuffer(static_cast<std::size_t>(pc->total_q * p.H * p.D) * es);
  pc->out = cuda::DeviceBuffer(static_cast<std::size_t>(pc->total_q * p.H * p.D) * es);
  pc->k = cuda::DeviceBuffer(static_cast<std::size_t>(pc->total_k * p.Hkv * p.D) * es);
  pc->v = cuda::DeviceBuffer(static_cast<std::size_t>(pc->total_k * p.Hkv * p.D) * es);
  pack_rows(f.q.get(), pc->q.get(), m.B, p.H, m.Lq, p.D, m, false, es);
  pack_rows(f.k.get(), pc->k.get(), m.B, p.Hkv, m.Lk, p.D, m, true, es);
  pack_rows(f.v.get(), pc->v.get(), m.B, p.Hkv, m.Lk, p.D, m, true, es);
  pc->cu_q = cuda::DeviceBuffer(vp.cu_seqlens_q.size() * sizeof(std::int32_t));
  pc->cu_k = cuda::DeviceBuffer(vp.cu_seqlens_k.size() * sizeof(std::int32_t));
  pc->cu_q.upload(vp.cu_seqlens_q.data(), pc->cu_q.bytes(), kStream);
  pc->cu_k.upload(vp.cu_seqlens_k.data(), pc->cu_k.bytes(), kStream);
  cuda::check(cudaDeviceSynchronize(), "pack");
  f.packed = std::move(pc);
  return *f.packed;
}

// Checks an output in the padded layout, or in the packed layout of `f`.
CheckOutcome check_output(const AttnFixture& f, const HostTensor& got, bool packed) {
  const AttentionProblem& p = f.p;
  const std::int64_t H = p.H, D = p.D, Lq = p.mask.Lq;
  if (!packed)
    return check_rows("out", f.ref, f.c.t,
                      [&](std::int64_t b, std::int64_t h, std::int64_t q, std::int64_t j) {
                        return got.at(((b * H + h) * Lq + q) * D + j);
                      });
  const PackedCase& pc = *f.packed;
  return check_rows("out", f.ref, f.c.t,
                    [&](std::int64_t b, std::int64_t h, std::int64_t q, std::int64_t j) {
                      const std::int64_t first = valid_begin(p.mask.padding, Lq, p.mask.q_len(b));
                      const std::int64_t row = pc.row0[static_cast<std::size_t>(b)] + (q - first);
                      return got.at((row * H + h) * D + j);
                    });
}

Prepared finish(const AttnFixture& f, const std::string& name, bool ours,
                std::function<void()> launch, const std::function<HostTensor()>& fetch, bool packed,
                const std::string& notes) {
  Prepared pr;
  pr.launch = std::move(launch);
  pr.launch();
  cuda::check(cudaDeviceSynchronize(), "first run");
  pr.check = check_output(f, fetch(), packed);
  record_check(name, pr.check, ours);
  pr.work = f.work;
  pr.label = f.shape + (notes.empty() ? "" : " | " + notes) + " | check: " + pr.check.message;
  return pr;
}

Prepared build(AttnFixture& f, const std::string& impl, const std::string& name) {
  const AttentionProblem& p = f.p;
  const DType t = f.c.t;
  if (impl == "maskcheck") {
    return finish(
        f, name, true,
        [&f] {
          cuda::attention_forward(f.p.shape(), f.mask->view(), f.c.t, f.q.get(), f.k.get(),
                                  f.v.get(), f.out.get(), nullptr, kStream);
        },
        [&f] { return download(f.out.get(), f.c.t, f.p.q_numel()); }, false, "");
  }
  if (impl == "maskcheck_varlen") {
    PackedCase& pc = packed_case(f);
    return finish(
        f, name, true,
        [&f, &pc] {
          cuda::attention_varlen(pc.vp, pc.cu_q.as<std::int32_t>(), pc.cu_k.as<std::int32_t>(),
                                 f.c.t, pc.q.get(), pc.k.get(), pc.v.get(), pc.out.get(), nullptr,
                                 kStream);
        },
        [&f, &pc] { return download(pc.out.get(), f.c.t, pc.total_q * f.p.H * f.p.D); }, true,
        "packed [" + std::to_string(pc.total_q) + ", H, D], " +
            std::to_string(pc.vp.cu_seqlens_q.size() - 1) + " segments");
  }
#if MASKCHECK_BENCH_TORCH
  namespace tp = torch_peers;
  const bool varlen = impl == "torch_flash_varlen";
  const tp::SdpaBackend backend = impl == "torch_math"        ? tp::SdpaBackend::math
                                  : impl == "torch_efficient" ? tp::SdpaBackend::efficient
                                  : impl == "torch_cudnn"     ? tp::SdpaBackend::cudnn
                                                              : tp::SdpaBackend::flash;
  std::shared_ptr<tp::SdpaPeer> peer;
  std::int64_t out_numel = p.q_numel();
  if (varlen) {
    PackedCase& pc = packed_case(f);
    peer = std::make_shared<tp::SdpaPeer>(backend, tp::Layout::packed, p, t, tp::Device::cuda,
                                          pc.q.get(), pc.k.get(), pc.v.get());
    out_numel = pc.total_q * p.H * p.D;
  } else {
    peer = std::make_shared<tp::SdpaPeer>(backend, tp::Layout::padded, p, t, tp::Device::cuda,
                                          f.q.get(), f.k.get(), f.v.get());
  }
  return finish(
      f, name, false, [peer] { peer->run(); },
      [&f, peer, out_numel] {
        peer->copy_output(f.scratch.get());
        cuda::check(cudaDeviceSynchronize(), "copy_output");
        return download(f.scratch.get(), f.c.t, out_numel);
      },
      varlen, peer->description());
#else
  (void)p;
  (void)t;
  throw std::runtime_error("unknown implementation " + impl);
#endif
}

void add_attention(const AttnCase& c, const std::string& impl, bool ours) {
  const std::string name = c.key() + "/" + impl;
  add(name, [c, impl, name, ours](benchmark::State& state) {
    run_prepared(state, name, ours, [&]() -> Prepared& {
      auto& f = CaseCache::get<AttnFixture>(c.key(), [&] { return make_fixture(c); });
      return f.get(impl, [&] { return build(f, impl, name); });
    });
  });
}

void register_attention() {
  std::vector<DType> dtypes{DType::bf16, DType::f16};
  std::vector<std::int64_t> Ds{64, 128}, Ls{512, 1024, 2048, 4096};
  std::int64_t tokens = 16384, H = 16;
  [[maybe_unused]] std::int64_t math_max_L = 2048;
  if (ci()) {
    dtypes = {DType::bf16};
    Ds = {64};
    Ls = {256};
    tokens = 512;
    H = 2;
    math_max_L = 256;
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
          c.pad = pad;
          c.mask = mask;
          add_attention(c, "maskcheck", true);
          if (c.packs()) add_attention(c, "maskcheck_varlen", true);
#if MASKCHECK_BENCH_TORCH
          namespace tp = torch_peers;
          const AttentionProblem p = make_problem(c);
          struct Peer {
            const char* impl;
            tp::SdpaBackend backend;
            tp::Layout layout;
          };
          const Peer peers[] = {{"torch_flash", tp::SdpaBackend::flash, tp::Layout::padded},
                                {"torch_flash_varlen", tp::SdpaBackend::flash, tp::Layout::packed},
                                {"torch_efficient", tp::SdpaBackend::efficient, tp::Layout::padded},
                                {"torch_cudnn", tp::SdpaBackend::cudnn, tp::Layout::padded},
                                {"torch_math", tp::SdpaBackend::math, tp::Layout::padded}};
          for (const Peer& peer : peers) {
            const std::string name = c.key() + "/" + peer.impl;
            if (peer.layout == tp::Layout::packed && !c.packs()) continue;  // nothing to pack
            std::string why = tp::sdpa_supports(peer.backend, peer.layout, p, t, tp::Device::cuda);
            if (why.empty() && peer.backend == tp::SdpaBackend::math && L > math_max_L)
              why = "math materializes [B, H, L, L] scores: L <= " + std::to_string(math_max_L) +
                    " only";
            if (!why.empty()) {
              note_pruned(name, why);
              continue;
            }
            add_attention(c, peer.impl, false);
          }
#endif
        }
}

}  // namespace

MASKCHECK_BENCH_SUITE(attention, register_attention);

}  // namespace maskcheck::bench
