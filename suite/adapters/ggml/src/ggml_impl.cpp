// ggml as implementations under test and as benchmark peers (ggml_impl.hpp). Every call builds
// one ggml graph over host buffers (Peer): the inputs in the storage the adapter declares, the
// additive mask materialized from maskcheck's keep-mask, ggml's CPU backend computing it with a
// threadpool of its own. Shapes reach ggml in its axis order, innermost first: maskcheck's
// [B, H, Lq, D] is ggml's {D, Lq, H, B}, the same memory.
#include "maskcheck/adapters/ggml_impl.hpp"

#include <ggml-cpu.h>
#include <ggml.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <span>
#include <stdexcept>
#include <thread>

#include "maskcheck/reference/masks.hpp"
#include "maskcheck/suite/reference_impl.hpp"

namespace maskcheck::ggml_adapters {

namespace {

// ggml reports through its log callback on stderr; the adapters say what went wrong themselves.
void quiet_ggml() {
  static const bool quiet = [] {
    ggml_log_set([](ggml_log_level, const char*, void*) {}, nullptr);
    ggml_cpu_init();
    return true;
  }();
  (void)quiet;
}

ggml_type type_of(DType t) {
  switch (t) {
    case DType::f32:
      return GGML_TYPE_F32;
    case DType::f16:
      return GGML_TYPE_F16;
    case DType::bf16:
      return GGML_TYPE_BF16;
    case DType::f64:
      break;
  }
  throw std::invalid_argument("ggml has no f64 kernels");
}

int default_threads() {
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

// Host memory for ggml tensors, 64-byte aligned.
class Memory {
 public:
  void* get(std::size_t bytes) {
    void* p = std::aligned_alloc(64, (std::max<std::size_t>(bytes, 1) + 63) / 64 * 64);
    if (!p) throw std::bad_alloc();
    blocks_.emplace_back(p);
    return p;
  }

 private:
  struct Free {
    void operator()(void* p) const { std::free(p); }
  };
  std::vector<std::unique_ptr<void, Free>> blocks_;
};

// The additive mask of a problem for ggml: 0 where maskcheck's predicate lets query q see key k,
// -inf elsewhere, ggml shape {Lk, Lq, 1, B} (maskcheck's [B, Lq, Lk], shared by every head), in
// f32 or f16.
void* additive_mask(const MaskSpec& m, DType t, Memory& mem) {
  const auto keep = ref::build_keep_mask(m);
  void* p = mem.get(keep.size() * dtype_bytes(t));
  const double inf = std::numeric_limits<double>::infinity();
  for (std::size_t i = 0; i < keep.size(); ++i) {
    if (t == DType::f16)
      static_cast<half*>(p)[i] = half(keep[i] ? 0.0 : -inf);
    else
      static_cast<float*>(p)[i] = keep[i] ? 0.0f : -std::numeric_limits<float>::infinity();
  }
  return p;
}

}  // namespace

std::string ggml_version() {
  std::string cpu;
  if (ggml_cpu_has_avx512()) cpu += " AVX512";
  if (ggml_cpu_has_avx2()) cpu += " AVX2";
  if (ggml_cpu_has_f16c()) cpu += " F16C";
  if (ggml_cpu_has_fma()) cpu += " FMA";
  return std::string("ggml ") + ::ggml_version() + " (commit " + ggml_commit() +
         (cpu.empty() ? "" : ", CPU:" + cpu) + ")";
}

// ---- one graph -------------------------------------------------------------------------------

struct Peer::Impl {
  Kind kind;
  int threads = 1;
  std::string what;
  Memory mem;
  ggml_context* ctx = nullptr;
  ggml_cgraph* graph = nullptr;
  ggml_threadpool* pool = nullptr;
  ggml_cplan plan{};

  Impl(Kind k, int n_threads, std::size_t tensors) : kind(k), threads(n_threads) {
    quiet_ggml();
    ggml_init_params ip{};
    ip.mem_size = tensors * ggml_tensor_overhead() + ggml_graph_overhead() + 1024;
    ip.mem_buffer = nullptr;
    ip.no_alloc = true;  // tensor data lives in the caller's buffers or in `mem`
    ctx = ggml_init(ip);
    if (!ctx) throw std::runtime_error("ggml_init failed");
  }
  ~Impl() {
    if (pool) ggml_threadpool_free(pool);
    if (ctx) ggml_free(ctx);
  }

  // A tensor {ne0, ne1, ne2, ne3} of type t over `data` (allocated here when null).
  ggml_tensor* tensor(DType t, std::int64_t ne0, std::int64_t ne1, std::int64_t ne2,
                      std::int64_t ne3, const void* data) {
    ggml_tensor* x = ggml_new_tensor_4d(ctx, type_of(t), ne0, ne1, ne2, ne3);
    x->data = data ? const_cast<void*>(data) : mem.get(ggml_nbytes(x));
    return x;
  }

  // The graph of `out` (its data at `out_data`), intermediate results allocated, planned.
  void finish(ggml_tensor* out, void* out_data) {
    graph = ggml_new_graph(ctx);
    ggml_build_forward_expand(graph, out);
    out->data = out_data;
    for (int i = 0; i < ggml_graph_n_nodes(graph); ++i) {
      ggml_tensor* node = ggml_graph_node(graph, i);
      if (!node->data) node->data = mem.get(ggml_nbytes(node));
    }
    ggml_threadpool_params params = ggml_threadpool_params_default(threads);
    // Idle workers sleep instead of polling for the next graph: a benchmark keeps this pool alive
    // while other implementations' rows of the same case run on the same cores.
    params.poll = 0;
    pool = ggml_threadpool_new(&params);
    if (!pool) throw std::runtime_error("ggml_threadpool_new failed");
    plan = ggml_graph_plan(graph, threads, pool);
    if (plan.work_size > 0) plan.work_data = static_cast<std::uint8_t*>(mem.get(plan.work_size));
  }
};

namespace {

// Why an adapter does not take a problem ("" when it does).
std::string attention_unsupported(Kind kind, const AttentionProblem& p, DType t, bool want_lse) {
  p.validate();
  if (want_lse) return "ggml's attention returns no log-sum-exp";
  if (t == DType::f64) return "ggml has no f64 kernels";
  if (p.mask.B == 0 || p.H == 0)
    return "an empty batch or head axis: ggml divides by it (the broadcast factors of K, V and the "
           "mask) and the process dies of SIGFPE (repro/empty_axis_sigfpe.c)";
  if (kind == Kind::mul_mat_softmax && (p.mask.Lk == 0 || p.D == 0))
    return "an empty key axis or head dim: ggml_mul_mat asserts !ggml_is_transposed(a) (an operand "
           "whose first axis is empty reads as transposed) and aborts";
  return "";
}

std::string softmax_unsupported(const SoftmaxProblem& p, DType t) {
  p.validate();
  if (t != DType::f32 && t != DType::f16)
    return "ggml_soft_max_ext takes f32 scores with an f32 or f16 mask (f16 cases: the mask in "
           "f16)";
  if (p.mask.B == 0)
    return "an empty batch axis: ggml_soft_max_ext checks a->ne[3] % mask->ne[3] and the process "
           "dies of SIGFPE (repro/empty_axis_sigfpe.c)";
  return "";
}

}  // namespace

Peer::Peer(Kind kind, const AttentionProblem& p, DType t, const void* q, const void* k,
           const void* v, void* out, int threads) {
  if (const std::string why = attention_unsupported(kind, p, t, false); !why.empty())
    throw std::invalid_argument(why);
  if (kind == Kind::soft_max_ext) throw std::invalid_argument("soft_max_ext is not attention");
  impl_ = std::make_unique<Impl>(kind, threads > 0 ? threads : default_threads(), 16);
  Impl& g = *impl_;
  const std::int64_t B = p.mask.B, H = p.H, Hkv = p.Hkv, Lq = p.mask.Lq, Lk = p.mask.Lk, D = p.D;
  const auto scale = static_cast<float>(p.effective_scale());
  ggml_tensor* qt = g.tensor(DType::f32, D, Lq, H, B, q);
  ggml_tensor* kt = g.tensor(t, D, Lk, Hkv, B, k);
  if (kind == Kind::flash_attn_ext) {
    ggml_tensor* vt = g.tensor(t, D, Lk, Hkv, B, v);
    ggml_tensor* mask =
        g.tensor(DType::f16, Lk, Lq, 1, B, additive_mask(p.mask, DType::f16, g.mem));
    ggml_tensor* o = ggml_flash_attn_ext(g.ctx, qt, kt, vt, mask, scale, 0.0f, 0.0f);
    ggml_flash_attn_ext_set_prec(o, GGML_PREC_F32);
    g.finish(o, out);
    g.what = "ggml_flash_attn_ext(q f32, k and v " + std::string(to_string(t)) +
             ", mask f16 {Lk, Lq, 1, B}), output {D, H, Lq, B} f32";
  } else {
    // V as llama.cpp's cache holds it without flash attention: transposed, {Lk, D, Hkv, B}.
    const std::size_t es = dtype_bytes(t);
    auto* vt_data =
        static_cast<std::byte*>(g.mem.get(static_cast<std::size_t>(B * Hkv * Lk * D) * es));
    const auto* vs = static_cast<const std::byte*>(v);
    for (std::int64_t bh = 0; bh < B * Hkv; ++bh)
      for (std::int64_t j = 0; j < Lk; ++j)
        for (std::int64_t d = 0; d < D; ++d)
          std::memcpy(vt_data + static_cast<std::size_t>((bh * D + d) * Lk + j) * es,
                      vs + static_cast<std::size_t>((bh * Lk + j) * D + d) * es, es);
    ggml_tensor* vt = g.tensor(t, Lk, D, Hkv, B, vt_data);
    ggml_tensor* mask =
        g.tensor(DType::f32, Lk, Lq, 1, B, additive_mask(p.mask, DType::f32, g.mem));
    ggml_tensor* kq = ggml_mul_mat(g.ctx, kt, qt);  // {Lk, Lq, H, B}
    kq = ggml_soft_max_ext(g.ctx, kq, mask, scale, 0.0f);
    ggml_tensor* o = ggml_mul_mat(g.ctx, vt, kq);  // {D, Lq, H, B}
    g.finish(o, out);
    g.what = "ggml_mul_mat(k " + std::string(to_string(t)) +
             ", q f32) -> ggml_soft_max_ext(mask f32 {Lk, Lq, 1, B}) -> ggml_mul_mat(v^T " +
             std::string(to_string(t)) + " {Lk, D, Hkv, B}, kq)";
  }
}

Peer::Peer(const SoftmaxProblem& p, DType t, const void* x, void* y, int threads) {
  if (const std::string why = softmax_unsupported(p, t); !why.empty())
    throw std::invalid_argument(why);
  impl_ = std::make_unique<Impl>(Kind::soft_max_ext, threads > 0 ? threads : default_threads(), 8);
  Impl& g = *impl_;
  const std::int64_t B = p.mask.B, H = p.H, Lq = p.mask.Lq, Lk = p.mask.Lk;
  const DType mask_t = t == DType::f16 ? DType::f16 : DType::f32;
  ggml_tensor* xt = g.tensor(DType::f32, Lk, Lq, H, B, x);
  ggml_tensor* mask = g.tensor(mask_t, Lk, Lq, 1, B, additive_mask(p.mask, mask_t, g.mem));
  g.finish(ggml_soft_max_ext(g.ctx, xt, mask, static_cast<float>(p.scale), 0.0f), y);
  g.what =
      "ggml_soft_max_ext(x f32, mask " + std::string(to_string(mask_t)) + " {Lk, Lq, 1, B}, scale)";
}

Peer::~Peer() = default;

void Peer::run() {
  const ggml_status s = ggml_graph_compute(impl_->graph, &impl_->plan);
  if (s != GGML_STATUS_SUCCESS)
    throw std::runtime_error(impl_->what + ": ggml_graph_compute returned " +
                             ggml_status_to_string(s));
}

std::string Peer::description() const {
  return impl_->what + ", " + std::to_string(impl_->threads) + " threads, " + ggml_version();
}

// ---- the implementations ----------------------------------------------------------------------

namespace {

template <class S>
std::vector<S> stored(std::span<const double> x) {
  return to_storage_vec<S>(x);
}
// Host doubles (exact in t) as the bytes of dtype t.
std::vector<std::byte> bytes_of(std::span<const double> x, DType t) {
  return dispatch_dtype(t, [&](auto tag) {
    using S = decltype(tag);
    const auto s = to_storage_vec<S>(x);
    std::vector<std::byte> b(s.size() * sizeof(S));
    if (!b.empty()) std::memcpy(b.data(), s.data(), b.size());
    return b;
  });
}
std::vector<double> doubles(const std::vector<float>& x) {
  return {x.begin(), x.end()};
}

// Threads of ggml's pool under verification: fixed, so that verdicts do not depend on the machine's
// core count (ggml splits a long decode row over its threads, and f16 rounding follows the split),
// and more than one, so that the split paths run. The benchmark peers use every core.
constexpr int kVerifyThreads = 2;

class GgmlImplementation final : public Implementation {
 public:
  explicit GgmlImplementation(Kind kind) : kind_(kind) {}

  std::string name() const override {
    switch (kind_) {
      case Kind::soft_max_ext:
        return "ggml:soft_max_ext";
      case Kind::flash_attn_ext:
        return "ggml:flash_attn_ext";
      case Kind::mul_mat_softmax:
        return "ggml:mul_mat_softmax";
    }
    return "ggml:?";
  }
  std::string description() const override {
    switch (kind_) {
      case Kind::soft_max_ext:
        return "ggml_soft_max_ext(x, additive mask, scale): x and y f32, the mask f32 (f32 cases) "
               "or f16 (f16 cases), " +
               ggml_version();
      case Kind::flash_attn_ext:
        return "ggml_flash_attn_ext(q, k, v, additive mask, scale): the output f32, q (rounded by "
               "ggml to K's type), K and V in the case's dtype (f16 as llama.cpp's KV cache, bf16, "
               "f32), the mask f16, " +
               ggml_version();
      case Kind::mul_mat_softmax:
        return "llama.cpp without flash attention: ggml_mul_mat(k, q), ggml_soft_max_ext(kq, "
               "additive mask f32, scale), ggml_mul_mat(v^T, kq); the output f32, q (rounded by "
               "ggml_mul_mat to K's type), K and V^T in the "
               "case's dtype, " +
               ggml_version();
    }
    return ggml_version();
  }
  std::vector<maskcheck::Op> ops() const override {
    return {kind_ == Kind::soft_max_ext ? maskcheck::Op::softmax : maskcheck::Op::attention};
  }
  std::vector<DType> dtypes(maskcheck::Op) const override {
    if (kind_ == Kind::soft_max_ext) return {DType::f32, DType::f16};
    return {DType::f32, DType::f16, DType::bf16};
  }
  // Honest storage: ggml takes q as an f32 tensor, but its CPU kernels round it to K's type
  // before the dot products (flash_attn_ext's one-query path converts q with K's vec_dot
  // from_float, mul_mat converts src1 to src0's vec_dot type), so q is declared in the case's
  // dtype t like K and V; only the output is wider (f32).
  Storage storage(DType t) const override {
    Storage s = Storage::of(t);
    if (kind_ == Kind::soft_max_ext) {
      s.x = s.y = DType::f32;
      s.mask = t == DType::f16 ? DType::f16 : DType::f32;
    } else if (t != DType::f64) {
      s.out = DType::f32;
      s.mask = kind_ == Kind::flash_attn_ext ? DType::f16 : DType::f32;
    }
    return s;
  }
  bool third_party() const override { return true; }
  bool attention_lse() const override { return false; }
  Support supports_softmax(const SoftmaxProblem& p, DType t) const override {
    if (kind_ != Kind::soft_max_ext) return Implementation::supports_softmax(p, t);
    const std::string why = softmax_unsupported(p, t);
    return why.empty() ? Support::yes() : Support::no(why);
  }
  std::vector<double> softmax(const SoftmaxProblem& p, DType t,
                              std::span<const double> x) const override {
    if (kind_ != Kind::soft_max_ext) unsupported(maskcheck::Op::softmax);
    require(supports_softmax(p, t));
    require_size("x", x.size(), p.numel());
    const auto xf = stored<float>(x);
    std::vector<float> y(xf.size());
    Peer g(p, t, xf.data(), y.data(), kVerifyThreads);
    g.run();
    return doubles(y);
  }

  Support attention_support(const AttentionProblem& p, DType t, bool want_lse) const override {
    if (kind_ == Kind::soft_max_ext) return Implementation::attention_support(p, t, want_lse);
    const std::string why = attention_unsupported(kind_, p, t, want_lse);
    return why.empty() ? Support::yes() : Support::no(why);
  }
  AttentionResult attention(const AttentionProblem& p, DType t, std::span<const double> q,
                            std::span<const double> k, std::span<const double> v,
                            bool want_lse) const override {
    if (kind_ == Kind::soft_max_ext) unsupported(maskcheck::Op::attention);
    require(supports_attention(p, t, want_lse));
    validate_attention_inputs(p, q.size(), k.size(), v.size());
    const auto qf = stored<float>(q);
    const auto kb = bytes_of(k, t), vb = bytes_of(v, t);
    std::vector<float> out(qf.size());
    Peer g(kind_, p, t, qf.data(), kb.data(), vb.data(), out.data(), kVerifyThreads);
    g.run();
    AttentionResult r;
    if (kind_ == Kind::mul_mat_softmax) {
      r.out = doubles(out);
      return r;
    }
    // flash_attn_ext writes {D, H, Lq, B}: maskcheck's [B, H, Lq, D] is a permutation of it.
    const std::int64_t B = p.mask.B, H = p.H, Lq = p.mask.Lq, D = p.D;
    r.out.resize(out.size());
    for (std::int64_t b = 0; b < B; ++b)
      for (std::int64_t i = 0; i < Lq; ++i)
        for (std::int64_t h = 0; h < H; ++h)
          for (std::int64_t d = 0; d < D; ++d)
            r.out[static_cast<std::size_t>(((b * H + h) * Lq + i) * D + d)] =
                out[static_cast<std::size_t>(((b * Lq + i) * H + h) * D + d)];
    return r;
  }
  Support supports_attention_varlen(const VarlenAttentionProblem&, DType, bool) const override {
    return Support::no(
        "ggml has no packed (varlen) attention: llama.cpp batches sequences with a "
        "mask over one padded KV cache");
  }

 private:
  static void require(const Support& s) {
    if (!s) throw Unsupported(s.reason);
  }
  Kind kind_;
};

}  // namespace

std::vector<std::shared_ptr<const Implementation>> make_ggml_implementations() {
  return {std::make_shared<GgmlImplementation>(Kind::soft_max_ext),
          std::make_shared<GgmlImplementation>(Kind::flash_attn_ext),
          std::make_shared<GgmlImplementation>(Kind::mul_mat_softmax)};
}

}  // namespace maskcheck::ggml_adapters
