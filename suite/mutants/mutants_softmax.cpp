// Mutants of the masked softmax: masking in the wrong place, finite additive masks, and an online
// softmax whose running max is clamped to 0.
#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>

#include "maskcheck/reference/predicate.hpp"
#include "maskcheck/reference/reference.hpp"
#include "mutants_internal.hpp"

namespace maskcheck::mutants {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// torch.softmax(x * scale + add, -1) as a framework computes it: the scores are rounded to the
// storage type and every key is read; a row whose scores are all -inf comes out NaN.
template <class S>
void framework_softmax(const SoftmaxProblem& p, std::span<const double> add, std::span<const S> x,
                       std::span<S> y) {
  const std::int64_t rows = p.mask.B * p.H * p.mask.Lq, Lk = p.mask.Lk;
  for (std::int64_t r = 0; r < rows; ++r) {
    const std::int64_t b = r / (p.H * p.mask.Lq), q = r % p.mask.Lq;
    const double* a = add.data() + (b * p.mask.Lq + q) * Lk;
    std::vector<double> s(static_cast<std::size_t>(Lk));
    double m = -kInf;
    for (std::int64_t k = 0; k < Lk; ++k) {
      s[k] = ref::round_through<S, double>(p.scale * ref::load<double>(x[r * Lk + k]) + a[k]);
      m = std::max(m, s[k]);
    }
    double sum = 0;
    for (std::int64_t k = 0; k < Lk; ++k) sum += std::exp(s[k] - m);
    for (std::int64_t k = 0; k < Lk; ++k) y[r * Lk + k] = ref::store<S>(std::exp(s[k] - m) / sum);
  }
}

// Mask applied after the softmax: softmax over every key, then the masked weights are zeroed
// and the row is not renormalized.
class MaskAfterSoftmax : public Named {
 public:
  using Named::Named;
  std::vector<double> softmax(const SoftmaxProblem& p, DType t,
                              std::span<const double> x) const override {
    p.validate();
    const auto keep = ref::build_keep_mask(p.mask);
    const std::vector<std::uint8_t> all(keep.size(), 1);
    auto y = softmax_in_storage(t, x, [&](auto tag, auto xs, auto ys) {
      ref::masked_softmax<decltype(tag), double>(p, all, xs, ys);
    });
    const std::int64_t per_head = p.mask.Lq * p.mask.Lk;
    for (std::size_t i = 0; i < y.size(); ++i) {
      const auto flat = static_cast<std::int64_t>(i);
      const std::int64_t b = flat / (p.H * per_head);
      if (!keep[b * per_head + flat % per_head]) y[i] = 0.0;
    }
    return y;
  }
};

// An additive mask, additive(mask, dtype), added to the scores in the storage dtype; the rows go
// through framework_softmax.
class AdditiveMask : public Named {
 public:
  using AddFn = std::vector<double> (*)(const MaskSpec&, DType);
  AdditiveMask(std::string id, std::string how, AddFn additive)
      : Named(std::move(id), std::move(how)), additive_(additive) {}
  std::vector<double> softmax(const SoftmaxProblem& p, DType t,
                              std::span<const double> x) const override {
    p.validate();
    const auto add = additive_(p.mask, t);
    return softmax_in_storage(t, x,
                              [&](auto, auto xs, auto ys) { framework_softmax(p, add, xs, ys); });
  }

 private:
  AddFn additive_;
};

// -1e4 (the "fp16-safe" constant) instead of -inf: a masked logit above about 1e4 + the row's
// visible max outweighs the visible keys, and a fully masked row attends uniformly.
std::vector<double> minus_1e4(const MaskSpec& m, DType t) {
  return ref::encode_mask(ref::build_keep_mask(m), MaskEncoding::additive_1e4, t);
}

// Hugging Face style: a key-padding mask and the structural mask (which also masks padding),
// each finfo(dtype).min where masked, added in the dtype. Where both mask, min + min overflows
// to -inf: a row masked twice everywhere is NaN, a fully masked row with keys masked once
// attends uniformly to them.
std::vector<double> finite_min_sum(const MaskSpec& m, DType t) {
  const auto keep = ref::build_keep_mask(m);
  const double low = lowest(t);
  std::vector<double> add(keep.size());
  for (std::int64_t b = 0; b < m.B; ++b) {
    const std::int64_t k0 = valid_begin(m.padding, m.Lk, m.k_len(b));
    for (std::int64_t q = 0; q < m.Lq; ++q)
      for (std::int64_t k = 0; k < m.Lk; ++k) {
        const std::int64_t i = (b * m.Lq + q) * m.Lk + k;
        const double padding = (k < k0 || k >= k0 + m.k_len(b)) ? low : 0.0;
        const double structure = keep[i] ? 0.0 : low;
        add[i] = round_to(t, padding + structure);
      }
  }
  return add;
}

// An online softmax over key tiles of 16, visited from the last tile to the first as
// FlashAttention 2 does. A tile with no visible key leaves the running max at -inf, and the
// guard against exp(-inf - -inf) = NaN clamps it to 0 and keeps it: 0 stays the running max, so
// a row whose visible scores are all far below 0 underflows (fp32 statistics below about -87)
// and divides 0 by 0.
class OnlineMaxClampedToZero : public Named {
 public:
  using Named::Named;
  std::vector<double> softmax(const SoftmaxProblem& p, DType t,
                              std::span<const double> x) const override {
    p.validate();
    const auto keep = ref::build_keep_mask(p.mask);
    return softmax_in_storage(t, x, [&](auto tag, auto xs, auto ys) {
      using S = decltype(tag);
      using A = std::conditional_t<std::is_same_v<S, double>, double, float>;  // as a kernel
      run<S, A>(p, keep, xs, ys);
    });
  }

 private:
  static constexpr std::int64_t kTile = 16;

  template <class S, class A>
  static void run(const SoftmaxProblem& p, const std::vector<std::uint8_t>& keep,
                  std::span<const S> x, std::span<S> y) {
    const std::int64_t Lq = p.mask.Lq, Lk = p.mask.Lk, rows = p.mask.B * p.H * Lq;
    const A scale = static_cast<A>(p.scale), inf = std::numeric_limits<A>::infinity();
    for (std::int64_t r = 0; r < rows; ++r) {
      const std::uint8_t* kr = keep.data() + ((r / (p.H * Lq)) * Lq + r % Lq) * Lk;
      auto s = [&](std::int64_t k) { return scale * ref::load<A>(x[r * Lk + k]); };
      A m = -inf, l = 0;
      for (std::int64_t t0 = (std::max<std::int64_t>(Lk, 1) - 1) / kTile * kTile; t0 >= 0;
           t0 -= kTile) {
        const std::int64_t t1 = std::min(t0 + kTile, Lk);
        A m_new = m;
        for (std::int64_t k = t0; k < t1; ++k)
          if (kr[k]) m_new = std::max(m_new, s(k));
        if (m_new == -inf) m_new = 0;  // the bug: the guard's 0 is stored as the running max
        A sum = 0;
        for (std::int64_t k = t0; k < t1; ++k)
          if (kr[k]) sum += std::exp(s(k) - m_new);
        l = l * std::exp(m - m_new) + sum;
        m = m_new;
      }
      for (std::int64_t k = 0; k < Lk; ++k)
        y[r * Lk + k] = ref::store<S>(kr[k] ? std::exp(s(k) - m) / l : A(0));
    }
  }
};

// A multi-block softmax for long rows (4096 keys or more): each block of 2048 keys takes its
// own max and sum, and the blocks are combined by adding their sums without rescaling each by
// exp(m_block - m); every block normalizes against its own max.
class MultiBlockRowUnscaled : public Named {
 public:
  using Named::Named;
  std::vector<double> softmax(const SoftmaxProblem& p, DType t,
                              std::span<const double> x) const override {
    p.validate();
    const auto keep = ref::build_keep_mask(p.mask);
    return softmax_in_storage(t, x, [&](auto tag, auto xs, auto ys) {
      using S = decltype(tag);
      const std::int64_t Lq = p.mask.Lq, Lk = p.mask.Lk, rows = p.mask.B * p.H * Lq;
      for (std::int64_t r = 0; r < rows; ++r) {
        const std::uint8_t* kr = keep.data() + ((r / (p.H * Lq)) * Lq + r % Lq) * Lk;
        auto s = [&](std::int64_t k) { return p.scale * ref::load<double>(xs[r * Lk + k]); };
        std::vector<std::int64_t> vis;
        for (std::int64_t k = 0; k < Lk; ++k)
          if (kr[k]) vis.push_back(k);
        const std::size_t block = vis.size() >= 4096 ? 2048 : std::max<std::size_t>(vis.size(), 1);
        std::vector<double> e(static_cast<std::size_t>(Lk), 0.0);
        double total = 0;
        for (std::size_t b0 = 0; b0 < vis.size(); b0 += block) {
          const std::size_t b1 = std::min(vis.size(), b0 + block);
          double m = -kInf;
          for (std::size_t j = b0; j < b1; ++j) m = std::max(m, s(vis[j]));
          for (std::size_t j = b0; j < b1; ++j) {
            e[vis[j]] = std::exp(s(vis[j]) - m);
            total += e[vis[j]];
          }
        }
        for (std::int64_t k = 0; k < Lk; ++k)
          ys[r * Lk + k] = ref::store<S>(kr[k] ? e[k] / total : 0.0);
      }
    });
  }
};

// A scale of 0 read as "not given" (`scale or 1.0`): the row gets softmax(x) instead of the
// uniform weights a zero scale means.
class ZeroScaleIsOne : public Named {
 public:
  using Named::Named;
  std::vector<double> softmax(const SoftmaxProblem& p, DType t,
                              std::span<const double> x) const override {
    SoftmaxProblem wrong = p;
    if (wrong.scale == 0) wrong.scale = 1.0;
    return ReferenceImplementation::softmax(wrong, t, x);
  }
};

}  // namespace

void add_softmax_mutants(std::vector<Mutant>& out) {
  const Op op = Op::softmax;
  out.push_back(entry<MaskAfterSoftmax>(
      op, "mask applied after softmax", "mask-after-softmax",
      "softmax over every key, then the masked weights are zeroed without renormalizing"));
  out.push_back(entry<AdditiveMask>(op, "-1e4 additive mask in fp16 with large logits",
                                    "additive-1e4-mask",
                                    "masked scores get -1e4 added in the storage dtype instead of "
                                    "being excluded: large masked logits leak, empty rows are "
                                    "uniform",
                                    minus_1e4));
  out.push_back(entry<AdditiveMask>(op, "finite-min + finite-min overflows to -inf",
                                    "finite-min-sum",
                                    "padding and structural masks of finfo(dtype).min are added: "
                                    "where both mask the sum overflows to -inf, giving NaN rows "
                                    "and uniform attention to keys masked once",
                                    finite_min_sum));
  out.push_back(entry<OnlineMaxClampedToZero>(
      op, "first tile fully masked, running max clamped to 0", "online-max-clamped-to-zero",
      "online softmax from the last key tile: a fully masked first tile clamps the running max "
      "to 0 and keeps it, so rows of very negative scores underflow to 0 / 0"));
  out.push_back(rare_draws(entry<MultiBlockRowUnscaled>(
      op, "multi-block softmax rows combined without rescaling", "multiblock-row-unscaled",
      "rows of 4096 keys or more are split into 2048-key blocks whose sums are added without "
      "rescaling each by exp(m_block - m); each block normalizes against its own max")));
  out.push_back(entry<ZeroScaleIsOne>(op, "softmax scale 0 taken as 1", "softmax-zero-scale-is-one",
                                      "a scale of exactly 0 is read as not given (scale or 1.0): "
                                      "softmax(x) where 0 means uniform weights"));
}

}  // namespace maskcheck::mutants
