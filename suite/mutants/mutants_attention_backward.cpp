// Mutants of attention backward: the reference's forward with a backward that carries one bug
// that backward kernels have shipped with (the causal flag ignored in the backward only, dK and dV
// not reduced over a GQA group, NaN gradients of fully masked rows, a tile tail off by one, a
// forgotten softmax normalization or delta term, an unscaled dK, padding dropped from one pass,
// atomics-style non-deterministic accumulation). Each meets the attention.backward.* properties.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>

#include "maskcheck/reference/masks.hpp"
#include "maskcheck/reference/numeric.hpp"
#include "mutants_internal.hpp"

namespace maskcheck::mutants {
namespace {

enum class Bug {
  causal_ignored,   // the backward builds its mask with causal = false
  gqa_not_summed,   // dk, dv of a kv head take its first query head's contributions only
  empty_row_nan,    // a row with no visible key: p = exp(s - lse) with lse = -inf -> dq NaN
  tail_dropped,     // the last visible key of a row whose count is not a multiple of 16
                    // contributes nothing to dk, dv (a SIMD tail off by one)
  dv_unnormalized,  // dv uses exp(s - m) without dividing by the row's sum
  delta_forgotten,  // ds = p dp: the delta_i = <dout_i, out_i> term is dropped
  dk_unscaled,      // dk misses the softmax scale
  dv_padding,       // the dv pass ignores key padding (padded keys get p dout)
  nondeterministic  // dq sums its keys in f32 in an order that alternates between calls
};

class BackwardBug : public Named {
 public:
  BackwardBug(std::string id, std::string how, Bug bug)
      : Named(std::move(id), std::move(how)), bug_(bug) {}

  AttentionGradients attention_backward(const AttentionProblem& p, DType t,
                                        std::span<const double> q, std::span<const double> k,
                                        std::span<const double> v,
                                        std::span<const double> dout) const override {
    validate_attention_inputs(p, q.size(), k.size(), v.size(), dout.size());
    return dispatch_dtype(t, [&](auto tag) {
      using S = decltype(tag);
      const auto round = [](const std::vector<double>& x) {
        std::vector<double> r(x.size());
        for (std::size_t i = 0; i < x.size(); ++i) r[i] = to_double(to_storage<S>(x[i]));
        return r;
      };
      // The inputs as the storage holds them.
      const auto qs = round(std::vector<double>(q.begin(), q.end()));
      const auto ks = round(std::vector<double>(k.begin(), k.end()));
      const auto vs = round(std::vector<double>(v.begin(), v.end()));
      const auto gs = round(std::vector<double>(dout.begin(), dout.end()));
      AttentionGradients g = compute(p, qs, ks, vs, gs);
      return AttentionGradients{round(g.dq), round(g.dk), round(g.dv)};
    });
  }

 private:
  AttentionGradients compute(const AttentionProblem& p, const std::vector<double>& q,
                             const std::vector<double>& k, const std::vector<double>& v,
                             const std::vector<double>& g) const {
    const std::int64_t B = p.mask.B, H = p.H, Hkv = p.Hkv, Lq = p.mask.Lq, Lk = p.mask.Lk, D = p.D;
    MaskSpec spec = p.mask;
    if (bug_ == Bug::causal_ignored) {
      spec.causal = false;
      spec.prefix_lens.clear();  // (prefix-LM needs causal)
    }
    const auto keep = ref::build_keep_mask(spec);
    MaskSpec unpadded = p.mask;
    unpadded.k_lens.clear();
    unpadded.cu_seqlens_k.clear();
    unpadded.cu_seqlens_q.clear();
    const auto keep_dv = bug_ == Bug::dv_padding ? ref::build_keep_mask(unpadded) : keep;
    const double scale = p.effective_scale();
    const std::int64_t group = H / Hkv;
    const bool flip = bug_ == Bug::nondeterministic && (calls_.fetch_add(1) % 2 == 1);
    AttentionGradients r{std::vector<double>(q.size(), 0.0), std::vector<double>(k.size(), 0.0),
                         std::vector<double>(v.size(), 0.0)};
    std::vector<double> s(static_cast<std::size_t>(Lk)), pr(s.size()), dp(s.size());
    for (std::int64_t b = 0; b < B; ++b)
      for (std::int64_t h = 0; h < H; ++h) {
        const std::int64_t hk = h / group;
        for (std::int64_t i = 0; i < Lq; ++i) {
          const std::uint8_t* kr = keep.data() + (b * Lq + i) * Lk;
          const std::uint8_t* kd = keep_dv.data() + (b * Lq + i) * Lk;
          const std::int64_t row = ((b * H + h) * Lq + i) * D;
          double m = -std::numeric_limits<double>::infinity();
          std::int64_t n = 0, last = -1;
          for (std::int64_t j = 0; j < Lk; ++j) {
            if (!kr[j] && !kd[j]) continue;
            double dot = 0;
            for (std::int64_t d = 0; d < D; ++d)
              dot += q[row + d] * k[((b * Hkv + hk) * Lk + j) * D + d];
            s[j] = scale * dot;
            if (kr[j]) {
              m = std::max(m, s[j]);
              ++n;
              last = j;
            }
          }
          if (n == 0) {
            if (bug_ == Bug::empty_row_nan)
              for (std::int64_t d = 0; d < D; ++d)
                r.dq[row + d] = std::numeric_limits<double>::quiet_NaN();
            continue;
          }
          double sum = 0;
          for (std::int64_t j = 0; j < Lk; ++j)
            if (kr[j]) sum += std::exp(s[j] - m);
          double delta = 0;
          for (std::int64_t j = 0; j < Lk; ++j) {
            if (!kr[j] && !kd[j]) continue;
            pr[j] = std::exp(std::min(s[j] - m, 0.0)) / sum;
            double dot = 0;
            for (std::int64_t d = 0; d < D; ++d)
              dot += g[row + d] * v[((b * Hkv + hk) * Lk + j) * D + d];
            dp[j] = dot;
            if (kr[j]) delta += pr[j] * dp[j];
          }
          if (bug_ == Bug::delta_forgotten) delta = 0;
          float dq32[512] = {};
          const std::int64_t D32 = std::min<std::int64_t>(D, 512);
          for (std::int64_t jj = 0; jj < Lk; ++jj) {
            const std::int64_t j = flip ? Lk - 1 - jj : jj;
            const std::int64_t kv = ((b * Hkv + hk) * Lk + j) * D;
            if (kd[j] && !kr[j])  // dv_padding: a padded key takes part in dv only
              for (std::int64_t d = 0; d < D; ++d) r.dv[kv + d] += pr[j] * g[row + d];
            if (!kr[j]) continue;
            const double ds = pr[j] * (dp[j] - delta);
            for (std::int64_t d = 0; d < D; ++d) {
              if (bug_ == Bug::nondeterministic && d < D32)
                dq32[d] += static_cast<float>(ds * k[kv + d]);
              else
                r.dq[row + d] += ds * k[kv + d];
            }
            const bool drop = (bug_ == Bug::gqa_not_summed && h % group != 0) ||
                              (bug_ == Bug::tail_dropped && j == last && n % 16 != 0);
            if (drop) continue;
            const double pv = bug_ == Bug::dv_unnormalized ? pr[j] * sum : pr[j];
            for (std::int64_t d = 0; d < D; ++d) {
              r.dk[kv + d] += (bug_ == Bug::dk_unscaled ? 1.0 : scale) * ds * q[row + d];
              r.dv[kv + d] += pv * g[row + d];
            }
          }
          for (std::int64_t d = 0; d < D; ++d) {
            if (bug_ == Bug::nondeterministic && d < D32) r.dq[row + d] = dq32[d];
            r.dq[row + d] *= scale;
          }
        }
      }
    return r;
  }

  Bug bug_;
  mutable std::atomic<std::uint64_t> calls_{0};
};

Mutant backward(std::string bug, std::string id, std::string how, Bug b) {
  return in_entry(Mutant::Entry::backward, entry<BackwardBug>(Op::attention, std::move(bug),
                                                              std::move(id), std::move(how), b));
}

}  // namespace

void add_attention_backward_mutants(std::vector<Mutant>& out) {
  out.push_back(backward("causal ignored in the backward only", "bwd-causal-ignored",
                         "the backward builds its mask without the causal clause (the forward "
                         "is right): future keys receive gradient",
                         Bug::causal_ignored));
  out.push_back(backward("dK, dV not summed over the GQA group", "bwd-gqa-not-summed",
                         "dk and dv of a kv head take only its first query head's contributions",
                         Bug::gqa_not_summed));
  out.push_back(backward("dQ of fully masked rows from a NaN log-sum-exp", "bwd-empty-row-nan",
                         "a row with no visible key recomputes p = exp(s - lse) with lse = -inf "
                         "and writes NaN into dq",
                         Bug::empty_row_nan));
  out.push_back(backward("tile tail off by one in dK, dV", "bwd-tail-dropped",
                         "the last visible key of a row whose key count is not a multiple of 16 "
                         "gets no dk, dv contribution (a vector tail loop that stops one short)",
                         Bug::tail_dropped));
  out.push_back(backward("dV from unnormalized probabilities", "bwd-dv-unnormalized",
                         "dv accumulates exp(s - max) instead of exp(s - max) / sum",
                         Bug::dv_unnormalized));
  out.push_back(backward("delta term forgotten", "bwd-delta-forgotten",
                         "ds = p dp: the delta_i = <dout_i, out_i> subtraction of the softmax "
                         "backward is dropped",
                         Bug::delta_forgotten));
  out.push_back(backward("dK without the softmax scale", "bwd-dk-unscaled",
                         "dk = sum_i ds_ij q_i, missing the factor scale", Bug::dk_unscaled));
  out.push_back(backward("key padding ignored in the dV pass", "bwd-dv-padding",
                         "the dv pass builds its mask without key padding (or documents): "
                         "padded keys receive p dout",
                         Bug::dv_padding));
  out.push_back(backward("non-deterministic dQ accumulation", "bwd-nondeterministic",
                         "dq sums its keys in f32 in an order that alternates between calls, as "
                         "atomics do: two runs differ in the last bits",
                         Bug::nondeterministic));
}

}  // namespace maskcheck::mutants
