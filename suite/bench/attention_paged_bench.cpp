// Decode over a paged KV cache on the CPU (problems.hpp's PagedKv): one query per sequence, keys
// and values in pages of 16 tokens in shuffled order, grouped-query heads 8:1, as a serving
// engine's decode step reads them.
//
// Names: cpu/attention_paged/<dtype>/D<d>/Lk<l>/page16/gqa8/<impl>, impl
//   maskcheck         cpu::attention_forward_paged: each key tile gathered from its pages while
//                     the kernel packs it
//   torch_gather_sdpa index_select of the pages into [B, Hkv, Lk, D], then
//                     at::scaled_dot_product_attention with the boolean keep-mask and enable_gqa
//                     (torch_peers.hpp's PagedSdpaPeer), the gather inside the timed run
// Cases: f32 and bf16, D 128, Lk 4096, 8192 and 32768 with B * Lk = 32768 keys (B 8, 4, 1),
// H 32, Hkv 4, causal (bottom-right: the query sees its whole sequence), 25 % mean padding of the
// key lengths, the pages of all sequences shuffled among 8 unused ones. CI (MASKCHECK_CI=1): f32
// and bf16, D 64, Lk 256, B 2, H 8, Hkv 1.
// Counters: bytes_per_second over the minimal traffic (each valid key and value read once, q read
// and out written once) and, as decode is memory-bound, its fraction of the triad probe.
#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "check.hpp"
#include "harness.hpp"
#include "maskcheck/kernels/cpu.hpp"
#include "maskcheck/reference/attention.hpp"

namespace maskcheck::bench {

namespace {

struct PagedCase {
  Device device = Device::cpu;
  DType t = DType::f32;
  std::int64_t D = 128, Lk = 4096, B = 1, H = 32, Hkv = 4, page = 16;
  std::string key() const {
    return device_name(device) + "/attention_paged/" + dtype_name(t) + "/D" + std::to_string(D) +
           "/Lk" + std::to_string(Lk) + "/page" + std::to_string(page) + "/gqa" +
           std::to_string(H / Hkv);
  }
};

std::vector<PagedCase> cases(Device d) {
  std::vector<PagedCase> out;
  if (d != Device::cpu) return out;  // the CUDA kernels read no paged cache yet
  for (DType t : {DType::f32, DType::bf16}) {
    if (ci()) {
      out.push_back({Device::cpu, t, 64, 256, 2, 8, 1, 16});
      continue;
    }
    for (std::int64_t Lk : {4096, 8192, 32768})
      out.push_back({Device::cpu, t, 128, Lk, std::max<std::int64_t>(1, 32768 / Lk), 32, 4, 16});
  }
  return out;
}

struct PagedFixture : CaseImpls {
  PagedCase c;
  AttentionProblem p;
  PagedKv kv;
  std::unique_ptr<KernelMask> mask;
  Buffer q, k_cache, v_cache;
  std::map<std::string, Buffer> outs;
  RowReference ref;
  Work work;
  std::string shape;
};

std::unique_ptr<PagedFixture> make_fixture(const PagedCase& c) {
  auto f = std::make_unique<PagedFixture>();
  f->c = c;
  AttentionProblem& p = f->p;
  p.H = c.H;
  p.Hkv = c.Hkv;
  p.D = c.D;
  p.mask.B = c.B;
  p.mask.Lq = 1;
  p.mask.Lk = c.Lk;
  p.mask.causal = true;
  const std::uint64_t s = mix(seed(), case_stream(c.key()));
  Rng rng(s);
  p.mask.k_lens = draw_lengths(c.B, c.Lk, 25, rng);
  // The pages of every sequence, shuffled among 8 unused ones.
  PagedKv& kv = f->kv;
  kv.page_size = c.page;
  kv.max_pages = PagedKv::pages_of(c.Lk, c.page);
  std::int64_t used = 0;
  for (std::int64_t b = 0; b < c.B; ++b) used += PagedKv::pages_of(p.mask.k_len(b), c.page);
  kv.num_pages = used + 8;
  std::vector<std::int32_t> order(static_cast<std::size_t>(kv.num_pages));
  std::iota(order.begin(), order.end(), 0);
  for (std::size_t i = order.size(); i > 1; --i)
    std::swap(order[i - 1],
              order[static_cast<std::size_t>(rng.uniform(0, static_cast<std::int64_t>(i) - 1))]);
  kv.block_table.assign(static_cast<std::size_t>(c.B * kv.max_pages), -1);
  std::size_t next = 0;
  for (std::int64_t b = 0; b < c.B; ++b)
    for (std::int64_t i = 0; i < PagedKv::pages_of(p.mask.k_len(b), c.page); ++i)
      kv.block_table[static_cast<std::size_t>(b * kv.max_pages + i)] = order[next++];
  kv.validate(p);

  const DeviceHarness& d = device(c.device);
  f->mask = d.mask(p.mask);
  const std::size_t es = dtype_bytes(c.t);
  const std::int64_t cache = kv.cache_numel(p);
  f->q = Buffer(c.device, static_cast<std::size_t>(p.q_numel()) * es);
  f->k_cache = Buffer(c.device, static_cast<std::size_t>(cache) * es);
  f->v_cache = Buffer(c.device, static_cast<std::size_t>(cache) * es);
  d.fill_uniform(f->q.get(), c.t, p.q_numel(), mix(s, 1), -1.0, 1.0);
  d.fill_uniform(f->k_cache.get(), c.t, cache, mix(s, 2), -1.0, 1.0);
  d.fill_uniform(f->v_cache.get(), c.t, cache, mix(s, 3), -1.0, 1.0);
  // The reference's rows on the keys gathered from the pages.
  const HostTensor kc = to_host(c.device, f->k_cache.get(), c.t, cache);
  const HostTensor vc = to_host(c.device, f->v_cache.get(), c.t, cache);
  auto gathered = [&](const HostTensor& src) {
    HostTensor g{c.t, std::vector<std::byte>(static_cast<std::size_t>(p.kv_numel()) * es)};
    const std::size_t row = static_cast<std::size_t>(p.D) * es;
    for (std::int64_t b = 0; b < c.B; ++b)
      for (std::int64_t j = 0; j < p.mask.k_len(b); ++j) {
        const std::int64_t page =
            kv.block_table[static_cast<std::size_t>(b * kv.max_pages + j / c.page)];
        for (std::int64_t h = 0; h < p.Hkv; ++h)
          std::copy_n(
              src.bytes.data() +
                  static_cast<std::size_t>(((page * c.page + j % c.page) * p.Hkv + h)) * row,
              row, g.bytes.data() + static_cast<std::size_t>((b * p.Hkv + h) * c.Lk + j) * row);
      }
    return g;
  };
  f->ref = attention_rows(p, to_host(c.device, f->q.get(), c.t, p.q_numel()), gathered(kc),
                          gathered(vc), s);
  std::int64_t keys = 0;
  for (std::int64_t b = 0; b < c.B; ++b) keys += p.mask.k_len(b);
  f->work.bytes = static_cast<double>(es) * static_cast<double>(p.D) *
                  (2.0 * static_cast<double>(p.Hkv * keys) + 2.0 * static_cast<double>(p.H * c.B));
  f->work.useful_flops = 4.0 * static_cast<double>(p.D * p.H) * visible_pairs(p.mask);
  f->work.dense_flops = f->work.useful_flops;
  f->work.memory_bound = true;
  f->shape = "B=" + std::to_string(c.B) + " H=" + std::to_string(p.H) +
             " Hkv=" + std::to_string(p.Hkv) + " pages=" + std::to_string(kv.num_pages);
  return f;
}

// Runs once, checks out against the reference rows, records the check.
Prepared finish(PagedFixture& f, const std::string& name, const std::string& impl, bool ours,
                std::function<void(void*)> run, const std::string& notes) {
  Buffer& out = f.outs[impl] =
      Buffer(f.c.device, static_cast<std::size_t>(f.p.q_numel()) * dtype_bytes(f.c.t));
  out.fill(0xFF);
  void* o = out.get();
  Prepared pr;
  pr.run = [run, o] { run(o); };
  pr.run();
  const Readback got(f.c.device, o, f.c.t, f.p.q_numel());
  const std::int64_t H = f.p.H, D = f.p.D;
  pr.check = check_rows("out", f.ref, f.c.t,
                        [&](std::int64_t b, std::int64_t h, std::int64_t q, std::int64_t j) {
                          return got.at(((b * H + h) * 1 + q) * D + j);
                        });
  record_check(name, pr.check, ours);
  pr.work = f.work;
  pr.label = check_label(f.shape, notes, pr.check);
  return pr;
}

using PagedTarget = Target<PagedCase, PagedFixture>;

std::vector<PagedTarget> targets() {
  std::vector<PagedTarget> t;
  t.push_back({.device = Device::cpu,
               .impl = "maskcheck",
               .ours = true,
               .build = [](PagedFixture& f, const std::string& name) {
                 return finish(
                     f, name, "maskcheck", true,
                     [&f](void* out) {
                       const cpu::PagedKvView kv{f.kv.block_table.data(), f.kv.page_size,
                                                 f.kv.num_pages, f.kv.max_pages};
                       cpu::attention_forward_paged(f.p.shape(), f.mask->view(), kv, f.c.t,
                                                    f.q.get(), f.k_cache.get(), f.v_cache.get(),
                                                    out, nullptr);
                     },
                     device(f.c.device).kernels_note());
               }});
#if MASKCHECK_BENCH_TORCH
  t.push_back({.device = Device::cpu,
               .impl = "torch_gather_sdpa",
               .skip = [](const PagedCase& c) { return torch_unusable(c.device, c.t); },
               .build =
                   [](PagedFixture& f, const std::string& name) {
                     auto peer = std::make_shared<torch_peers::PagedSdpaPeer>(
                         f.p, f.kv, f.c.t, f.q.get(), f.k_cache.get(), f.v_cache.get());
                     return finish(
                         f, name, "torch_gather_sdpa", false,
                         [peer](void* out) {
                           peer->run();
                           peer->copy_output(out);
                         },
                         peer->description());
                   }});
#endif
  return t;
}

}  // namespace

MASKCHECK_BENCH_OPERATION(attention_paged, cases, targets, make_fixture);

}  // namespace maskcheck::bench
