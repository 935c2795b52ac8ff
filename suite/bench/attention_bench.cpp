// Attention forward, one case table for every target: maskcheck's kernels (the structured mask,
// never materialized; tiles without a visible key skipped), LibTorch's SDPA on the same inputs,
// and the reference on the CPU.
//
// Names: <device>/attention/<dtype>/D<d>/L<l>/pad<p>/<mask>/<impl>, impl one of
//   cpu   maskcheck           cpu::attention_forward, padded layout [B, H, L, D]
//         torch_sdpa          at::scaled_dot_product_attention with the boolean keep-mask
//                             [B, 1, L, L] (or is_causal); on the CPU it dispatches to LibTorch's
//                             flash kernel (the row's label names the backend LibTorch chose)
//         reference           ref::attention_forward<f32, double> with the keep-mask materialized
//                             once; naive O(B H L^2 D), single-threaded: f32 and L <= 256 only (in
//                             bf16 it decodes every element in software, about 30x slower)
//         plugin:<name>       a plugin of maskcheck bench --plugin, its attention_forward on the
//                             same buffers (plugins.hpp)
//         ggml_flash          ggml_flash_attn_ext (llama.cpp's attention with flash attention on)
//                             with the additive f16 mask [B, L, L] materialized once; K and V in
//                             the case's dtype, q handed over as f32; ggml's own threadpool over
//                             every core (MASKCHECK_ENABLE_GGML)
//         ggml_mul_mat        llama.cpp's path without flash attention: mul_mat(k, q),
//                             soft_max_ext(kq, additive f32 mask, scale), mul_mat(v^T, kq); V
//                             transposed once before timing, as llama.cpp's cache holds it
//   cuda  maskcheck           cuda::attention_forward, padded layout [B, H, L, D]
//         maskcheck_varlen    cuda::attention_varlen, packed layout of the same problem (cases with
//                             padding or documents)
//         torch_flash         _flash_attention_forward: no mask, is_causal, or a window (square)
//         torch_flash_varlen  the same op with cu_seqlens over the packed layout
//         torch_efficient     _scaled_dot_product_efficient_attention with the additive mask
//         torch_cudnn         _scaled_dot_product_cudnn_attention with the additive mask
//         torch_math          _scaled_dot_product_attention_math (L <= 2048: it materializes
//                             scores)
// (torch peers use is_causal instead of a tensor where that is exact; see torch_peers.hpp.)
//
// Cases: masks none, causal, window<w> (causal with w = min(256, L/4) keys to the left),
// documents+causal (4 documents per sequence) at 0 % padding, and padding, padding+causal at 25 %
// and 50 % mean padding (lengths drawn per case, deterministic); on the CPU also
// causal+softcap+alibi+sinks (the score modifiers: cap 50, ALiBi's slope schedule, sink logits 0)
// and sinks4+window1020 (StreamingLLM: 4 attention-sink tokens and a causal window of 1020 keys;
// D 128, L 2048 and 8192).
// A padding mask at 0 % padding is the "none" case, so that axis is pruned on purpose. Sizes per
// device:
//   cpu   f32, bf16; D 64, 128; L 512 .. 4096 with B * L = 4096 tokens and H = 8 (the target row,
//         f32 D128 L2048 pad50 padding+causal, is then B 2 and about 6 visible GFLOP: tens of ms
//         for maskcheck on 2 cores, a few tenths of a second for a dense peer), and L 256 with
//         B 2, H 4 for the reference. CI (MASKCHECK_CI=1): f32, bf16, D 64, L 128, B 2, H 2.
//   cuda  bf16, f16; D 64, 128; L 512 .. 4096 with B * L = 16384 tokens and H = 16 (B = 8, H = 16
//         at L = 2048 fills an H100). CI: bf16, D 64, L 256, B 2, H 2.
//
// Counters: useful FLOP/s (4 D per visible (q, k) pair and head), dense FLOP/s (4 D Lq Lk per
// head), visible_frac, on the CPU fma_frac (useful over the FMA peak), bytes_per_second (valid rows
// of Q, K, V read once, of O written once).
#include <algorithm>
#include <cstddef>
#include <cstring>
#include <iterator>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "check.hpp"
#include "harness.hpp"
#include "maskcheck/kernels/cpu.hpp"
#include "maskcheck/reference/attention.hpp"
#include "maskcheck/reference/masks.hpp"
#include "maskcheck/reference/predicate.hpp"
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

enum class MaskKind {
  none,
  padding,
  causal,
  padding_causal,
  window,
  documents,
  modifiers,
  sinks_window
};

struct AttnCase {
  Device device = Device::cpu;
  DType t = DType::f32;
  std::int64_t D = 64, L = 512, B = 1, H = 1;
  int pad = 0;
  MaskKind mask = MaskKind::none;

  std::int64_t window_left() const {
    // StreamingLLM's cache: 4 sink tokens and a window of 1020 keys (1024 in all).
    if (mask == MaskKind::sinks_window) return std::min<std::int64_t>(1020, L / 4);
    return std::min<std::int64_t>(256, L / 4);
  }
  static constexpr std::int64_t kSinkTokens = 4;
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
      case MaskKind::modifiers:
        return "causal+softcap+alibi+sinks";
      case MaskKind::sinks_window:
        return "sinks" + std::to_string(kSinkTokens) + "+window" + std::to_string(window_left());
    }
    return "?";
  }
  std::string key() const {
    return device_name(device) + "/attention/" + dtype_name(t) + "/D" + std::to_string(D) + "/L" +
           std::to_string(L) + "/pad" + std::to_string(pad) + "/" + mask_name();
  }
};

// The reference is naive: registered up to this length, and the CPU cases up to it are sized
// for it (B 2, H 4).
std::int64_t reference_max_L() {
  return ci() ? 128 : 256;
}

// LibTorch's math backend materializes [B, H, L, L] scores. (Unused in a build without LibTorch.)
[[maybe_unused]] std::int64_t math_max_L() {
  return ci() ? 256 : 2048;
}

// The case table.
std::vector<AttnCase> cases(Device d) {
  using Sizes = AttentionSizes;
  Sizes s;
  if (d == Device::cpu)
    s = ci() ? Sizes{{DType::f32, DType::bf16}, {64}, {128}, 256, 2}
             : Sizes{{DType::f32, DType::bf16}, {64, 128}, {256, 512, 1024, 2048, 4096}, 4096, 8};
  else
    s = ci() ? Sizes{{DType::bf16}, {64}, {256}, 512, 2}
             : Sizes{{DType::bf16, DType::f16}, {64, 128}, {512, 1024, 2048, 4096}, 16384, 16};
  const std::pair<MaskKind, int> grid[] = {{MaskKind::none, 0},
                                           {MaskKind::causal, 0},
                                           {MaskKind::window, 0},
                                           {MaskKind::documents, 0},
                                           {MaskKind::padding, 25},
                                           {MaskKind::padding, 50},
                                           {MaskKind::padding_causal, 25},
                                           {MaskKind::padding_causal, 50}};
  std::vector<std::pair<MaskKind, int>> masks(std::begin(grid), std::end(grid));
  // Score modifiers (soft-cap 50, ALiBi with the usual slopes, sink logits) over causal: the
  // modified-score path of the CPU kernel, beside the plain causal row (the CUDA kernels do not
  // take modifiers yet).
  if (d == Device::cpu) masks.emplace_back(MaskKind::modifiers, 0);
  std::vector<AttnCase> out;
  for (DType t : s.dtypes)
    for (std::int64_t D : s.Ds)
      for (std::int64_t L : s.Ls)
        for (const auto& [mask, pad] : masks) {
          AttnCase c;
          c.device = d;
          c.t = t;
          c.D = D;
          c.L = L;
          c.B = std::max<std::int64_t>(1, s.tokens / L);
          c.H = s.H;
          if (d == Device::cpu && !ci() && L <= reference_max_L()) {
            c.B = 2;
            c.H = 4;
          }
          c.pad = pad;
          c.mask = mask;
          out.push_back(c);
        }
  // Attention sinks + a sliding window (StreamingLLM), on the CPU: the kernel skips the keys
  // between the sinks and the window; the peers take the mask as a tensor. D 128 at L 2048 and
  // 8192 (B = 1), CI: the CI grid's D and L.
  if (d == Device::cpu)
    for (DType t : s.dtypes)
      for (const std::int64_t L : ci() ? s.Ls : std::vector<std::int64_t>{2048, 8192}) {
        AttnCase c;
        c.device = d;
        c.t = t;
        c.D = ci() ? s.Ds.front() : 128;
        c.L = L;
        c.B = std::max<std::int64_t>(1, s.tokens / L);
        c.H = s.H;
        c.mask = MaskKind::sinks_window;
        out.push_back(c);
      }
  return out;
}

AttentionProblem make_problem(const AttnCase& c) {
  AttentionProblem p;
  p.H = c.H;
  p.Hkv = c.H;
  p.D = c.D;
  MaskSpec& m = p.mask;
  m.B = c.B;
  m.Lq = m.Lk = c.L;
  Rng rng(mix(seed(), case_stream(c.key())));
  if (c.has_padding()) {
    m.q_lens = draw_lengths(c.B, c.L, c.pad, rng);
    m.k_lens = m.q_lens;
  }
  m.causal = c.mask != MaskKind::none && c.mask != MaskKind::padding;
  if (c.mask == MaskKind::window || c.mask == MaskKind::sinks_window)
    m.window = Window{c.window_left(), 0};
  if (c.mask == MaskKind::sinks_window) m.sink_tokens = AttnCase::kSinkTokens;
  if (c.mask == MaskKind::modifiers) {
    p.mods.softcap = 50;
    p.mods.alibi_slopes = alibi_slope_schedule(p.H);
    p.mods.sink_logits.assign(static_cast<std::size_t>(p.H), 0.0);
  }
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
  Buffer q, k, v, cu_q, cu_k;
};

struct AttnFixture : CaseImpls {
  AttnCase c;
  AttentionProblem p;
  std::unique_ptr<KernelMask> mask;  // for maskcheck's kernels
  Buffer q, k, v;
  std::map<std::string, Buffer> outs;  // one output buffer per implementation
  RowReference ref;
  Work work;
  std::string shape;
  std::unique_ptr<PackedCase> packed;  // built by the first target that asks
};

std::unique_ptr<AttnFixture> make_fixture(const AttnCase& c) {
  auto f = std::make_unique<AttnFixture>();
  f->c = c;
  f->p = make_problem(c);
  const AttentionProblem& p = f->p;
  const DeviceHarness& d = device(c.device);
  f->mask = d.mask(p.mask);
  const std::size_t es = dtype_bytes(c.t);
  f->q = Buffer(c.device, static_cast<std::size_t>(p.q_numel()) * es);
  f->k = Buffer(c.device, static_cast<std::size_t>(p.kv_numel()) * es);
  f->v = Buffer(c.device, static_cast<std::size_t>(p.kv_numel()) * es);
  const std::uint64_t s = mix(seed(), case_stream(c.key()));
  d.fill_uniform(f->q.get(), c.t, p.q_numel(), mix(s, 1), -1.0, 1.0);
  d.fill_uniform(f->k.get(), c.t, p.kv_numel(), mix(s, 2), -1.0, 1.0);
  d.fill_uniform(f->v.get(), c.t, p.kv_numel(), mix(s, 3), -1.0, 1.0);
  f->ref = attention_rows(p, to_host(c.device, f->q.get(), c.t, p.q_numel()),
                          to_host(c.device, f->k.get(), c.t, p.kv_numel()),
                          to_host(c.device, f->v.get(), c.t, p.kv_numel()), s);

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
std::vector<std::byte> pack_rows(const HostTensor& padded, std::int64_t B, std::int64_t Hx,
                                 std::int64_t L, std::int64_t D, const MaskSpec& m, bool keys) {
  const auto row_bytes = static_cast<std::size_t>(D) * dtype_bytes(padded.t);
  std::int64_t total = 0;
  for (std::int64_t b = 0; b < B; ++b) total += keys ? m.k_len(b) : m.q_len(b);
  std::vector<std::byte> packed(static_cast<std::size_t>(total * Hx) * row_bytes);
  std::int64_t row = 0;
  for (std::int64_t b = 0; b < B; ++b) {
    const std::int64_t len = keys ? m.k_len(b) : m.q_len(b);
    const std::int64_t first = valid_begin(m.padding, L, len);
    for (std::int64_t h = 0; h < Hx; ++h)
      for (std::int64_t i = 0; i < len; ++i)
        std::memcpy(packed.data() + static_cast<std::size_t>((row + i) * Hx + h) * row_bytes,
                    padded.bytes.data() +
                        static_cast<std::size_t>((b * Hx + h) * L + first + i) * row_bytes,
                    row_bytes);
    row += len;
  }
  return packed;
}

// The packed layout of f's case, built on first use (the varlen targets are CUDA's and LibTorch's:
// unused in a build without either).
[[maybe_unused]] PackedCase& packed_case(AttnFixture& f) {
  if (f.packed) return *f.packed;
  auto pc = std::make_unique<PackedCase>();
  const AttentionProblem& p = f.p;
  const MaskSpec& m = p.mask;
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
  const Device d = f.c.device;
  auto upload = [d](const void* host, std::size_t bytes) {
    Buffer b(d, bytes);
    b.upload(host, bytes);
    return b;
  };
  auto pack = [&](const Buffer& padded, std::int64_t numel, std::int64_t Hx, std::int64_t L,
                  bool keys) {
    const auto rows = pack_rows(to_host(d, padded.get(), f.c.t, numel), m.B, Hx, L, p.D, m, keys);
    return upload(rows.data(), rows.size());
  };
  pc->q = pack(f.q, p.q_numel(), p.H, m.Lq, false);
  pc->k = pack(f.k, p.kv_numel(), p.Hkv, m.Lk, true);
  pc->v = pack(f.v, p.kv_numel(), p.Hkv, m.Lk, true);
  pc->cu_q = upload(vp.cu_seqlens_q.data(), vp.cu_seqlens_q.size() * sizeof(std::int32_t));
  pc->cu_k = upload(vp.cu_seqlens_k.data(), vp.cu_seqlens_k.size() * sizeof(std::int32_t));
  f.packed = std::move(pc);
  return *f.packed;
}

// A fresh output buffer of n elements for `impl`, poisoned (all bits set: NaN in f32, f16 and
// bf16) so that a row an implementation forgot to write cannot pass the check on another
// implementation's result.
Buffer& output_for(AttnFixture& f, const std::string& impl, std::int64_t n) {
  Buffer& out = f.outs[impl] = Buffer(f.c.device, static_cast<std::size_t>(n) * dtype_bytes(f.c.t));
  out.fill(0xFF);
  return out;
}

// Checks an output in the padded layout, or in the packed layout of `f`.
CheckOutcome check_output(const AttnFixture& f, const Readback& got, bool packed) {
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

// Runs once and checks the output that `fetch` returns (in the padded layout, or the packed one,
// in the case's dtype or `out_dtype` where a third party stores it wider), records the check.
Prepared finish(const AttnFixture& f, const std::string& name, bool ours, std::function<void()> run,
                const std::function<const void*()>& fetch, bool packed, const std::string& notes,
                std::optional<DType> out_dtype = std::nullopt) {
  const DeviceHarness& d = device(f.c.device);
  Prepared pr;
  pr.run = std::move(run);
  pr.run();
  d.synchronize();
  const void* out = fetch();
  d.synchronize();
  const std::int64_t numel = packed ? f.packed->total_q * f.p.H * f.p.D : f.p.q_numel();
  pr.check = check_output(f, Readback(f.c.device, out, out_dtype.value_or(f.c.t), numel), packed);
  record_check(name, pr.check, ours);
  pr.work = f.work;
  pr.label = check_label(f.shape, notes, pr.check);
  return pr;
}

using AttnTarget = Target<AttnCase, AttnFixture>;

#if MASKCHECK_BENCH_TORCH
// A LibTorch SDPA backend on a device, over the padded layout or the packed one.
AttnTarget torch_target(Device d, const char* impl, torch_peers::SdpaBackend backend,
                        torch_peers::Layout layout) {
  namespace tp = torch_peers;
  AttnTarget t{.device = d, .impl = impl};
  if (layout == tp::Layout::packed) t.applies = [](const AttnCase& c) { return c.packs(); };
  t.skip = [backend, layout](const AttnCase& c) {
    if (c.mask == MaskKind::modifiers)
      return std::string("SDPA has no soft-capping or sink logits");
    std::string why = torch_unusable(c.device, c.t);
    if (why.empty())
      why = tp::sdpa_supports(backend, layout, make_problem(c), c.t, torch_device(c.device));
    if (why.empty() && backend == tp::SdpaBackend::math && c.L > math_max_L())
      why = "math materializes [B, H, L, L] scores: L <= " + std::to_string(math_max_L()) + " only";
    return why;
  };
  t.build = [impl_name = std::string(impl), backend, layout](AttnFixture& f,
                                                             const std::string& name) {
    const bool packed = layout == tp::Layout::packed;
    const void *q = f.q.get(), *k = f.k.get(), *v = f.v.get();
    std::int64_t out_numel = f.p.q_numel();
    if (packed) {
      const PackedCase& pc = packed_case(f);
      q = pc.q.get();
      k = pc.k.get();
      v = pc.v.get();
      out_numel = pc.total_q * f.p.H * f.p.D;
    }
    auto peer = std::make_shared<tp::SdpaPeer>(backend, layout, f.p, f.c.t,
                                               torch_device(f.c.device), q, k, v);
    void* out = output_for(f, impl_name, out_numel).get();
    return finish(
        f, name, false, [peer] { peer->run(); },
        [peer, out] {
          peer->copy_output(out);  // LibTorch's output tensor, contiguous, in the peer's layout
          return out;
        },
        packed, peer->description());
  };
  return t;
}
#endif

// maskcheck's kernel on a device, over the padded layout: kernel(f, out) runs it into out.
AttnTarget maskcheck_target(Device d, void (*kernel)(const AttnFixture& f, void* out)) {
  return {.device = d,
          .impl = "maskcheck",
          .ours = true,
          .build = [kernel](AttnFixture& f, const std::string& name) {
            void* out = output_for(f, "maskcheck", f.p.q_numel()).get();
            return finish(
                f, name, true, [&f, out, kernel] { kernel(f, out); }, [out] { return out; }, false,
                device(f.c.device).kernels_note());
          }};
}

// The reference on the CPU: ref::attention_forward<S, double> in the case's dtype.
AttnTarget reference_target() {
  return {.device = Device::cpu,
          .impl = "reference",
          .skip = [](const AttnCase& c) -> std::string {
            if (c.t != DType::f32)
              return "the reference decodes bf16 in software, element by element (about 30x its "
                     "f32 time): f32 only";
            if (c.L > reference_max_L())
              return "the reference is naive: L <= " + std::to_string(reference_max_L()) + " only";
            return "";
          },
          .build =
              [](AttnFixture& f, const std::string& name) {
                void* out = output_for(f, "reference", f.p.q_numel()).get();
                auto keep =
                    std::make_shared<std::vector<std::uint8_t>>(ref::build_keep_mask(f.p.mask));
                return finish(
                    f, name, false,
                    [&f, out, keep] {
                      dispatch_dtype(f.c.t, [&](auto tag) {
                        using S = decltype(tag);
                        const auto nq = static_cast<std::size_t>(f.p.q_numel());
                        const auto nkv = static_cast<std::size_t>(f.p.kv_numel());
                        ref::attention_forward<S, double>(
                            f.p, std::span<const std::uint8_t>(*keep),
                            std::span<const S>(f.q.as<const S>(), nq),
                            std::span<const S>(f.k.as<const S>(), nkv),
                            std::span<const S>(f.v.as<const S>(), nkv),
                            std::span<S>(static_cast<S*>(out), nq), std::span<double>());
                      });
                    },
                    [out] { return out; }, false,
                    "ref::attention_forward<" + dtype_name(f.c.t) +
                        ", double>, single thread, keep-mask materialized once");
              }};
}

#if MASKCHECK_BENCH_CUDA
// maskcheck's CUDA kernel over the packed layout of the same problem (cases with padding or
// documents).
AttnTarget cuda_varlen_target() {
  return {.device = Device::cuda,
          .impl = "maskcheck_varlen",
          .ours = true,
          .applies = [](const AttnCase& c) { return c.packs(); },
          .build =
              [](AttnFixture& f, const std::string& name) {
                const PackedCase& pc = packed_case(f);
                void* out = output_for(f, "maskcheck_varlen", pc.total_q * f.p.H * f.p.D).get();
                return finish(
                    f, name, true,
                    [&f, &pc, out] {
                      cuda::attention_varlen(pc.vp, pc.cu_q.as<std::int32_t>(),
                                             pc.cu_k.as<std::int32_t>(), f.c.t, pc.q.get(),
                                             pc.k.get(), pc.v.get(), out, nullptr, kStream);
                    },
                    [out] { return out; }, true,
                    "packed [" + std::to_string(pc.total_q) + ", H, D], " +
                        std::to_string(pc.vp.cu_seqlens_q.size() - 1) + " segments");
              }};
}
#endif

// A plugin (maskcheck bench --plugin) on the CPU: its attention_forward on the case's buffers, q,
// k and v converted once where it stores them wider than the case's dtype.
AttnTarget plugin_target(std::shared_ptr<const Implementation> plugin) {
  return {.device = Device::cpu,
          .impl = plugin->name(),
          .skip =
              [plugin](const AttnCase& c) {
                std::string why = takes(*plugin, Op::attention, c.t);
                if (why.empty())
                  if (const Support s = plugin->supports_attention(make_problem(c), c.t, false); !s)
                    why = s.reason;
                return why;
              },
          .build =
              [plugin](AttnFixture& f, const std::string& name) {
                const Storage st = plugin->storage(f.c.t);
                auto inputs = std::make_shared<PluginInputs>();
                const void* q = inputs->in(f.q, f.c.t, st.q, f.p.q_numel());
                const void* k = inputs->in(f.k, f.c.t, st.k, f.p.kv_numel());
                const void* v = inputs->in(f.v, f.c.t, st.v, f.p.kv_numel());
                Buffer& out = f.outs[plugin->name()] = Buffer(
                    Device::cpu, static_cast<std::size_t>(f.p.q_numel()) * dtype_bytes(st.out));
                out.fill(0xFF);
                void* o = out.get();
                std::shared_ptr<plugin::PreparedCall> call =
                    plugin::prepare_attention(*plugin, f.p, f.c.t, q, k, v, o);
                return finish(
                    f, name, false, [call, inputs] { call->run(); }, [o] { return o; }, false,
                    plugin->description(), st.out);
              }};
}

#if MASKCHECK_BENCH_GGML
// ggml on the CPU (ggml_impl.hpp's Peer): one graph built once on the case's buffers, q converted
// once to the f32 ggml takes; ggml_flash's output ([B, L, H, D], as llama.cpp uses it) is permuted
// to the padded layout after the timed runs, for the check only.
AttnTarget ggml_target(ggml_adapters::Kind kind, const char* impl) {
  return {.device = Device::cpu,
          .impl = impl,
          .skip = [](const AttnCase& c) -> std::string {
            return c.mask == MaskKind::modifiers
                       ? "the ggml adapters take no score modifiers (ggml's own ALiBi and "
                         "soft-cap follow other conventions)"
                       : "";
          },
          .build =
              [kind, impl_name = std::string(impl)](AttnFixture& f, const std::string& name) {
                const AttentionProblem& p = f.p;
                auto q32 = std::make_shared<Buffer>();
                const void* q = f.q.get();
                if (f.c.t != DType::f32) {
                  *q32 = converted(f.q.get(), f.c.t, DType::f32, p.q_numel());
                  q = q32->get();
                }
                const auto bytes = static_cast<std::size_t>(p.q_numel()) * sizeof(float);
                Buffer& raw = f.outs[impl_name + "/ggml"] = Buffer(Device::cpu, bytes);
                raw.fill(0xFF);
                Buffer& out = f.outs[impl_name] = Buffer(Device::cpu, bytes);
                out.fill(0xFF);
                auto peer = std::make_shared<ggml_adapters::Peer>(kind, p, f.c.t, q, f.k.get(),
                                                                  f.v.get(), raw.get(), 0);
                const bool permuted = kind == ggml_adapters::Kind::flash_attn_ext;
                return finish(
                    f, name, false, [peer, q32] { peer->run(); },
                    [&p, &raw, &out, permuted]() -> const void* {
                      if (!permuted) return raw.get();
                      const std::int64_t B = p.mask.B, H = p.H, Lq = p.mask.Lq, D = p.D;
                      const float* src = raw.as<const float>();
                      float* dst = out.as<float>();
                      for (std::int64_t b = 0; b < B; ++b)
                        for (std::int64_t i = 0; i < Lq; ++i)
                          for (std::int64_t h = 0; h < H; ++h)
                            std::memcpy(dst + ((b * H + h) * Lq + i) * D,
                                        src + ((b * Lq + i) * H + h) * D,
                                        static_cast<std::size_t>(D) * sizeof(float));
                      return out.get();
                    },
                    false, peer->description(), DType::f32);
              }};
}
#endif

// Every implementation, one registration each, in the order of their rows.
std::vector<AttnTarget> targets() {
  std::vector<AttnTarget> t;
  t.push_back(maskcheck_target(Device::cpu, [](const AttnFixture& f, void* out) {
    cpu::attention_forward(f.p.shape(), f.mask->view(), f.c.t, f.q.get(), f.k.get(), f.v.get(), out,
                           nullptr);
  }));
#if MASKCHECK_BENCH_TORCH
  t.push_back(torch_target(Device::cpu, "torch_sdpa", torch_peers::SdpaBackend::dispatch,
                           torch_peers::Layout::padded));
#endif
  t.push_back(reference_target());
#if MASKCHECK_BENCH_GGML
  t.push_back(ggml_target(ggml_adapters::Kind::flash_attn_ext, "ggml_flash"));
  t.push_back(ggml_target(ggml_adapters::Kind::mul_mat_softmax, "ggml_mul_mat"));
#endif
  for (const auto& plugin : plugins()) t.push_back(plugin_target(plugin));
#if MASKCHECK_BENCH_CUDA
  t.push_back(maskcheck_target(Device::cuda, [](const AttnFixture& f, void* out) {
    cuda::attention_forward(f.p.shape(), f.mask->view(), f.c.t, f.q.get(), f.k.get(), f.v.get(),
                            out, nullptr, kStream);
  }));
  t.push_back(cuda_varlen_target());
#if MASKCHECK_BENCH_TORCH
  namespace tp = torch_peers;
  t.push_back(
      torch_target(Device::cuda, "torch_flash", tp::SdpaBackend::flash, tp::Layout::padded));
  t.push_back(
      torch_target(Device::cuda, "torch_flash_varlen", tp::SdpaBackend::flash, tp::Layout::packed));
  t.push_back(torch_target(Device::cuda, "torch_efficient", tp::SdpaBackend::efficient,
                           tp::Layout::padded));
  t.push_back(
      torch_target(Device::cuda, "torch_cudnn", tp::SdpaBackend::cudnn, tp::Layout::padded));
  t.push_back(torch_target(Device::cuda, "torch_math", tp::SdpaBackend::math, tp::Layout::padded));
#endif
#endif
  return t;
}

}  // namespace

MASKCHECK_BENCH_OPERATION(attention, cases, targets, make_fixture);

}  // namespace maskcheck::bench
