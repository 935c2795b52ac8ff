// Mutants of masked attention's arithmetic rather than its mask: the row softmax without its
// max, a finite "masked" threshold, accumulation in the storage dtype, long-row paths (split-KV
// merge, the last tile of a long row), and scales read wrongly. Each is a bug
// shipped in attention kernels that random zero-mean data of moderate size does not show: it needs
// a large common offset of the scores, long rows of same-sign values, or a scale other than
// 1/sqrt(D).
#include <algorithm>
#include <cmath>
#include <limits>

#include "maskcheck/reference/masks.hpp"
#include "maskcheck/reference/numeric.hpp"
#include "mutants_internal.hpp"

namespace maskcheck::mutants {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// One query row: the scaled scores of its visible keys (in key order) and what a row softmax
// returns for them.
struct RowSoftmax {
  std::vector<double> p;  // weights, one per visible key (empty row: none)
  double lse = -kInf;
};

// The reference's attention loop (storage S, double arithmetic) with the row softmax, and the
// accumulation of sum_j p_j v_j, left to the mutant. `softmax(scores, scale)` gets the scaled
// scores; `accumulate(p, values)` returns out_d for one d.
class RowBug : public Named {
 public:
  using Named::Named;
  AttentionResult attention(const AttentionProblem& p, DType t, std::span<const double> q,
                            std::span<const double> k, std::span<const double> v,
                            bool want_lse) const override {
    p.validate();
    const auto keep = ref::build_keep_mask(p.mask);
    return dispatch_dtype(t, [&](auto tag) {
      using S = decltype(tag);
      const std::int64_t B = p.mask.B, H = p.H, Hkv = p.Hkv, Lq = p.mask.Lq, Lk = p.mask.Lk,
                         D = p.D, group = H / Hkv;
      const double scale = p.effective_scale();
      const auto qs = to_storage_vec<S>(q), ks = to_storage_vec<S>(k), vs = to_storage_vec<S>(v);
      std::vector<S> out(qs.size());
      std::vector<double> lse(want_lse ? static_cast<std::size_t>(p.lse_numel()) : 0);
      std::vector<double> s, col;
      std::vector<std::int64_t> keys;
      for (std::int64_t b = 0; b < B; ++b)
        for (std::int64_t h = 0; h < H; ++h)
          for (std::int64_t i = 0; i < Lq; ++i) {
            s.clear();
            keys.clear();
            const std::int64_t qi = ((b * H + h) * Lq + i) * D;
            for (std::int64_t j = 0; j < Lk; ++j) {
              if (!keep[(b * Lq + i) * Lk + j]) continue;
              const std::int64_t kj = ((b * Hkv + h / group) * Lk + j) * D;
              double dot = 0;
              for (std::int64_t d = 0; d < D; ++d)
                dot += to_double(qs[qi + d]) * to_double(ks[kj + d]);
              s.push_back(dot);
              keys.push_back(kj);
            }
            RowSoftmax r = softmax(s, scale, t);
            for (double& pj : r.p) pj = to_double(to_storage<S>(pj));  // stored as the reference
            for (std::int64_t d = 0; d < D; ++d) {
              col.clear();
              for (const std::int64_t kj : keys) col.push_back(to_double(vs[kj + d]));
              out[qi + d] = to_storage<S>(r.p.empty() ? 0.0 : accumulate(r.p, col, t));
            }
            if (want_lse) lse[(b * H + h) * Lq + i] = r.lse;
          }
      return AttentionResult{to_double_vec(out), lse};
    });
  }
  // The packed layout through the padded one, so that both carry the same bug.
  AttentionResult attention_varlen(const VarlenAttentionProblem& p, DType t,
                                   std::span<const double> q, std::span<const double> k,
                                   std::span<const double> v, bool want_lse) const override {
    const AttentionProblem pp = p.padded();
    const std::int64_t B = pp.mask.B, Lq = pp.mask.Lq, Lk = pp.mask.Lk, D = p.D;
    // packed [T, heads, D] -> padded [B, heads, L, D]
    auto to_padded = [&](std::span<const double> x, const std::vector<std::int32_t>& cu,
                         std::int64_t heads, std::int64_t L) {
      std::vector<double> out(static_cast<std::size_t>(B * heads * L * D), 0.0);
      for (std::int64_t b = 0; b < B; ++b)
        for (std::int64_t tok = cu[b]; tok < cu[b + 1]; ++tok)
          for (std::int64_t h = 0; h < heads; ++h)
            std::copy_n(x.begin() + (tok * heads + h) * D, D,
                        out.begin() + ((b * heads + h) * L + (tok - cu[b])) * D);
      return out;
    };
    const auto qp = to_padded(q, p.cu_seqlens_q, p.H, Lq);
    const auto kp = to_padded(k, p.cu_seqlens_k, p.Hkv, Lk);
    const auto vp = to_padded(v, p.cu_seqlens_k, p.Hkv, Lk);
    const AttentionResult r = attention(pp, t, qp, kp, vp, want_lse);
    AttentionResult packed;
    packed.out.resize(q.size());
    if (want_lse) packed.lse.resize(static_cast<std::size_t>(p.H * p.total_q()));
    for (std::int64_t b = 0; b < B; ++b)
      for (std::int64_t tok = p.cu_seqlens_q[b]; tok < p.cu_seqlens_q[b + 1]; ++tok)
        for (std::int64_t h = 0; h < p.H; ++h) {
          const std::int64_t row = (b * p.H + h) * Lq + (tok - p.cu_seqlens_q[b]);
          std::copy_n(r.out.begin() + row * D, D, packed.out.begin() + (tok * p.H + h) * D);
          if (want_lse) packed.lse[h * p.total_q() + tok] = r.lse[row];
        }
    return packed;
  }

 protected:
  // dots: the unscaled <q, k_j> of the visible keys. The correct row softmax.
  virtual RowSoftmax softmax(const std::vector<double>& dots, double scale, DType) const {
    RowSoftmax r;
    if (dots.empty()) return r;
    double m = -kInf, sum = 0;
    for (double x : dots) m = std::max(m, scale * x);
    for (double x : dots) sum += std::exp(scale * x - m);
    for (double x : dots) r.p.push_back(std::exp(scale * x - m) / sum);
    r.lse = m + std::log(sum);
    return r;
  }
  virtual double accumulate(const std::vector<double>& p, const std::vector<double>& v,
                            DType) const {
    double acc = 0;
    for (std::size_t j = 0; j < p.size(); ++j) acc += p[j] * v[j];
    return acc;
  }
};

// Softmax and log-sum-exp from exp(s) directly, without subtracting the row max: right while
// every score is small, inf / inf = NaN once a score passes 709, 0 / 0 once all are below -745.
class ExpWithoutMax : public RowBug {
 public:
  using RowBug::RowBug;

 protected:
  RowSoftmax softmax(const std::vector<double>& dots, double scale, DType) const override {
    RowSoftmax r;
    if (dots.empty()) return r;
    double sum = 0;
    for (double x : dots) sum += std::exp(scale * x);
    for (double x : dots) r.p.push_back(std::exp(scale * x) / sum);
    r.lse = std::log(sum);
    return r;
  }
};

// Only the log-sum-exp without the max: log(sum exp(s)), +inf or -inf for large common offsets
// while the output, normalized with the max, stays right.
class LseWithoutMax : public RowBug {
 public:
  using RowBug::RowBug;

 protected:
  RowSoftmax softmax(const std::vector<double>& dots, double scale, DType t) const override {
    RowSoftmax r = RowBug::softmax(dots, scale, t);
    if (dots.empty()) return r;
    double sum = 0;
    for (double x : dots) sum += std::exp(scale * x);
    r.lse = std::log(sum);
    return r;
  }
};

// A kernel that marks masked scores with a finite -1e4 (fp16-safe) and later treats every score
// at or below -1e4 as masked: a row whose scores all sit below -1e4 comes out empty.
class FiniteMaskThreshold : public RowBug {
 public:
  using RowBug::RowBug;

 protected:
  RowSoftmax softmax(const std::vector<double>& dots, double scale, DType t) const override {
    std::vector<double> kept, idx;
    for (std::size_t j = 0; j < dots.size(); ++j)
      if (scale * dots[j] > -1e4) {
        kept.push_back(dots[j]);
        idx.push_back(static_cast<double>(j));
      }
    const RowSoftmax k = RowBug::softmax(kept, scale, t);
    RowSoftmax r;
    r.p.assign(dots.size(), 0.0);
    for (std::size_t j = 0; j < kept.size(); ++j) r.p[static_cast<std::size_t>(idx[j])] = k.p[j];
    r.lse = k.lse;
    if (kept.empty()) r.p.clear();  // "empty": zeros and -inf
    return r;
  }
};

// The weighted sum of V (or the softmax denominator) accumulated in the storage dtype: a running
// sum in bf16 or f16 stops growing once the terms fall below half its last bit, and thousands of
// same-sign terms drift far from the sum. Random zero-mean values cancel and hide it.
double storage_sum(DType t, const std::vector<double>& terms) {
  return dispatch_dtype(t, [&](auto tag) {
    using S = decltype(tag);
    S acc = to_storage<S>(0.0);
    for (double x : terms) acc = to_storage<S>(to_double(acc) + to_double(to_storage<S>(x)));
    return to_double(acc);
  });
}

class PvInStorage : public RowBug {
 public:
  using RowBug::RowBug;

 protected:
  double accumulate(const std::vector<double>& p, const std::vector<double>& v,
                    DType t) const override {
    std::vector<double> terms;
    for (std::size_t j = 0; j < p.size(); ++j) terms.push_back(p[j] * v[j]);
    return storage_sum(t, terms);
  }
};

// The same, only on a long-row (decode) path: rows of 512 visible keys or more accumulate P.V in
// the storage dtype, shorter rows are right. A kernel whose split-KV decode path keeps its
// accumulator in half precision; no row of a few hundred keys shows it.
class DecodePvInStorage : public PvInStorage {
 public:
  using PvInStorage::PvInStorage;

 protected:
  double accumulate(const std::vector<double>& p, const std::vector<double>& v,
                    DType t) const override {
    return p.size() < 512 ? RowBug::accumulate(p, v, t) : PvInStorage::accumulate(p, v, t);
  }
};

class DenominatorInStorage : public RowBug {
 public:
  using RowBug::RowBug;

 protected:
  RowSoftmax softmax(const std::vector<double>& dots, double scale, DType t) const override {
    RowSoftmax r;
    if (dots.empty()) return r;
    double m = -kInf;
    for (double x : dots) m = std::max(m, scale * x);
    std::vector<double> e;
    for (double x : dots) e.push_back(std::exp(scale * x - m));
    const double sum = storage_sum(t, e);
    for (double x : e) r.p.push_back(x / sum);
    r.lse = m + std::log(sum);
    return r;
  }
};

// A split-KV decode path for long rows (>= 512 keys): the keys in chunks of 256, each chunk's
// partial softmax merged, but by the chunks' sums alone, without rescaling each by
// exp(m_chunk - m): right only where every chunk has the same max.
class SplitKvMergeUnscaled : public RowBug {
 public:
  using RowBug::RowBug;

 protected:
  RowSoftmax softmax(const std::vector<double>& dots, double scale, DType t) const override {
    if (dots.size() < 512) return RowBug::softmax(dots, scale, t);
    RowSoftmax r;
    std::vector<double> chunk_max;
    double total = 0;
    for (std::size_t c0 = 0; c0 < dots.size(); c0 += 256) {
      const std::size_t c1 = std::min(dots.size(), c0 + 256);
      double m = -kInf;
      for (std::size_t j = c0; j < c1; ++j) m = std::max(m, scale * dots[j]);
      for (std::size_t j = c0; j < c1; ++j) {
        r.p.push_back(std::exp(scale * dots[j] - m));
        total += r.p.back();
      }
      chunk_max.push_back(m);
    }
    for (double& x : r.p) x /= total;
    r.lse = *std::max_element(chunk_max.begin(), chunk_max.end()) + std::log(total);
    return r;
  }
};

// A decode kernel's tile bound off by one for long rows: with 512 keys or more, a multiple of
// the 64-key tile, the last tile stops one key short (63 keys of 64).
class LastKeyOfLongRowDropped : public RowBug {
 public:
  using RowBug::RowBug;

 protected:
  RowSoftmax softmax(const std::vector<double>& dots, double scale, DType t) const override {
    if (dots.size() < 512 || dots.size() % 64 != 0) return RowBug::softmax(dots, scale, t);
    std::vector<double> kept(dots.begin(), dots.end() - 1);
    RowSoftmax r = RowBug::softmax(kept, scale, t);
    r.p.push_back(0.0);
    return r;
  }
};

// Scales read wrongly: the magnitude of a negative scale (a kernel that folds the scale into
// log2 space through sqrt or log of it), and a scale of 0 taken as "not given" (the Python idiom
// `scale or 1 / sqrt(D)`), so a zero scale (uniform attention) gets the default.
class ScaleBug : public RowBug {
 public:
  using Fix = double (*)(double scale, std::int64_t D);
  ScaleBug(std::string id, std::string how, Fix fix)
      : RowBug(std::move(id), std::move(how)), fix_(fix) {}
  AttentionResult attention(const AttentionProblem& p, DType t, std::span<const double> q,
                            std::span<const double> k, std::span<const double> v,
                            bool want_lse) const override {
    AttentionProblem wrong = p;
    wrong.scale = fix_(p.effective_scale(), p.D);
    return RowBug::attention(wrong, t, q, k, v, want_lse);
  }

 private:
  Fix fix_;
};

double magnitude_of_scale(double scale, std::int64_t) {
  return std::fabs(scale);
}
double zero_scale_is_default(double scale, std::int64_t D) {
  return scale == 0 ? 1 / std::sqrt(static_cast<double>(D)) : scale;
}

}  // namespace

void add_attention_numerics_mutants(std::vector<Mutant>& out) {
  const Op op = Op::attention;
  out.push_back(entry<ExpWithoutMax>(
      op, "softmax without the row max", "exp-without-max",
      "weights exp(s_j) / sum exp(s) and log-sum-exp log(sum exp(s)) without subtracting the row "
      "max: NaN once a common offset pushes the scores past exp's range"));
  out.push_back(entry<LseWithoutMax>(
      op, "log-sum-exp without the row max", "lse-without-max",
      "the output is normalized with the max, the log-sum-exp is log(sum exp(s)): +-inf for "
      "scores offset by a large constant"));
  out.push_back(entry<FiniteMaskThreshold>(
      op, "finite mask value read back as a threshold", "finite-mask-threshold",
      "masked scores are marked -1e4 and every score <= -1e4 is taken as masked, so a row whose "
      "scores all lie below -1e4 comes out empty"));
  out.push_back(entry<PvInStorage>(
      op, "P.V accumulated in the storage dtype", "pv-in-storage",
      "sum_j p_j v_j accumulated in bf16/f16 (f32 in f32) instead of f32: the running sum stalls "
      "over long rows of same-sign values"));
  out.push_back(rare_draws(entry<DecodePvInStorage>(
      op, "P.V accumulated in the storage dtype on the long-row path", "decode-pv-in-storage",
      "rows of 512 visible keys or more (a split-KV decode path) accumulate sum_j p_j v_j in "
      "bf16/f16; shorter rows accumulate in f32")));
  out.push_back(entry<DenominatorInStorage>(
      op, "softmax denominator accumulated in the storage dtype", "denominator-in-storage",
      "sum_j exp(s_j - m) accumulated in bf16/f16: over thousands of keys the sum stops growing "
      "and every weight comes out too large"));
  out.push_back(rare_draws(entry<SplitKvMergeUnscaled>(
      op, "split-KV merge without the chunk maxima", "split-kv-merge-unscaled",
      "rows of 512 keys or more are split into 256-key chunks whose partial softmaxes are merged "
      "by their sums alone, without rescaling each by exp(m_chunk - m)")));
  out.push_back(rare_draws(entry<LastKeyOfLongRowDropped>(
      op, "last key of a long row dropped", "long-row-last-key-dropped",
      "for rows of 512 keys or more that are a multiple of the 64-key tile, the last tile stops "
      "one key short: 63 keys of 64")));
  out.push_back(entry<ScaleBug>(op, "negative scale read as its magnitude", "scale-magnitude",
                                "the softmax scale is applied as |scale|, so a negative scale "
                                "(reversed preference) attends to the wrong keys",
                                magnitude_of_scale));
  out.push_back(
      rare_draws(entry<ScaleBug>(op, "scale 0 taken as the default", "scale-zero-is-default",
                                 "a scale of exactly 0 is read as not given and replaced by "
                                 "1/sqrt(D), where 0 means uniform weights",
                                 zero_scale_is_default)));
}

}  // namespace maskcheck::mutants
