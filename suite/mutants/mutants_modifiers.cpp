// Mutants of attention's score modifiers (problems.hpp's ScoreModifiers): the bugs that
// soft-capping, ALiBi and learned sink logits have produced in real kernels. Each is a naive fp64
// attention whose modifier arithmetic carries one bug; a problem without modifiers runs the
// reference, so the mutants meet only the cases that draw modifiers.
#include <algorithm>
#include <cmath>
#include <limits>

#include "maskcheck/reference/predicate.hpp"
#include "maskcheck/reference/reference.hpp"
#include "mutants_internal.hpp"

namespace maskcheck::mutants {
namespace {

enum class Bug : std::uint8_t {
  softcap_after_mask,        // masked scores -inf turned into -cap: masked keys leak
  softcap_ignored,           // no capping
  softcap_before_scale,      // cap * tanh(dot / cap), then times the scale
  softcap_overflowing_tanh,  // tanh(x) = (e^2x - 1) / (e^2x + 1) in f32: inf / inf = NaN
  alibi_sign,                // s += slope |j - diag|: far keys favoured
  alibi_query_index,         // |j - i| in padded coordinates, not from the query's diagonal
  alibi_kv_head,             // the slope of index h / group (the kv head) for query head h
  alibi_before_softcap,      // the bias added before the cap instead of after it
  sink_ignored,              // the sink logit dropped
  sink_empty_row_lse,        // a row without a visible key gets lse = sink instead of -inf
  sink_scaled,               // the sink logit multiplied by the scale like a score
  sink_as_key,               // the sink's weight given to the row's first visible key's value
};

class ModifierBug : public Named {
 public:
  ModifierBug(std::string id, std::string how, Bug bug)
      : Named(std::move(id), std::move(how)), bug_(bug) {}

  AttentionResult attention(const AttentionProblem& p, DType t, std::span<const double> q,
                            std::span<const double> k, std::span<const double> v,
                            bool want_lse) const override {
    if (!p.mods.any()) return ReferenceImplementation::attention(p, t, q, k, v, want_lse);
    validate_attention_inputs(p, q.size(), k.size(), v.size());
    const std::int64_t B = p.mask.B, H = p.H, Lq = p.mask.Lq, Lk = p.mask.Lk, D = p.D;
    const std::int64_t group = H / p.Hkv;
    const double scale = p.effective_scale();
    const ScoreModifiers& mods = p.mods;
    const double cap = mods.softcap;
    const FlatMask flat(p.mask);
    const MaskView view = flat.view();
    const double inf = std::numeric_limits<double>::infinity();
    AttentionResult r;
    r.out.assign(static_cast<std::size_t>(p.q_numel()), 0.0);
    if (want_lse) r.lse.assign(static_cast<std::size_t>(p.lse_numel()), -inf);
    std::vector<double> s(static_cast<std::size_t>(Lk));
    std::vector<std::uint8_t> used(s.size());
    for (std::int64_t b = 0; b < B; ++b)
      for (std::int64_t h = 0; h < H; ++h) {
        const std::int64_t hk = h / group;
        for (std::int64_t i = 0; i < Lq; ++i) {
          const RowKeys keys = row_keys(view, b, i);
          const QuerySegment seg = query_segment(view, b, i);
          if (!seg.valid) continue;
          const std::int64_t diag = query_diagonal(view, b, i);
          const double* qi = q.data() + ((b * H + h) * Lq + i) * D;
          double m = -inf;
          std::int64_t first = -1;
          for (std::int64_t j = 0; j < Lk; ++j) {
            const bool vis = keys.contains(j);
            used[j] = vis || (bug_ == Bug::softcap_after_mask && cap != 0);
            if (!used[j]) continue;
            if (vis && first < 0) first = j;
            if (!vis) {  // the -inf of the mask, soft-capped
              s[j] = -cap;
              m = std::max(m, s[j]);
              continue;
            }
            const double* kj = k.data() + ((b * p.Hkv + hk) * Lk + j) * D;
            double dot = 0;
            for (std::int64_t d = 0; d < D; ++d) dot += qi[d] * kj[d];
            double x = scale * dot;
            const std::int64_t dist =
                bug_ == Bug::alibi_query_index ? std::abs(j - i) : std::abs(j - diag);
            double slope = 0;
            if (!mods.alibi_slopes.empty())
              slope =
                  mods.alibi_slopes[static_cast<std::size_t>(bug_ == Bug::alibi_kv_head ? hk : h)];
            if (bug_ == Bug::alibi_sign) slope = -slope;
            if (bug_ == Bug::alibi_before_softcap) x -= slope * static_cast<double>(dist);
            if (cap != 0) {
              switch (bug_) {
                case Bug::softcap_ignored:
                  break;
                case Bug::softcap_before_scale:
                  x = scale * cap * std::tanh(dot / cap);
                  break;
                case Bug::softcap_overflowing_tanh: {
                  const float e = std::exp(2.0f * static_cast<float>(x / cap));
                  x = cap * static_cast<double>((e - 1.0f) / (e + 1.0f));
                  break;
                }
                default:
                  x = cap * std::tanh(x / cap);
              }
            }
            if (bug_ != Bug::alibi_before_softcap) x -= slope * static_cast<double>(dist);
            s[j] = x;
            m = std::max(m, x);
          }
          const bool any = first >= 0 || (bug_ == Bug::softcap_after_mask && cap != 0 && Lk > 0);
          bool sink = !mods.sink_logits.empty() && bug_ != Bug::sink_ignored;
          double sink_logit = sink ? mods.sink_logits[static_cast<std::size_t>(h)] : 0.0;
          if (bug_ == Bug::sink_scaled) sink_logit *= scale;
          if (!any) {
            if (want_lse && sink && bug_ == Bug::sink_empty_row_lse)
              r.lse[static_cast<std::size_t>((b * H + h) * Lq + i)] = sink_logit;
            continue;
          }
          if (sink) m = std::max(m, sink_logit);
          double sum = sink ? std::exp(sink_logit - m) : 0.0;
          for (std::int64_t j = 0; j < Lk; ++j)
            if (used[j]) sum += std::exp(s[j] - m);
          double* oi = r.out.data() + ((b * H + h) * Lq + i) * D;
          for (std::int64_t j = 0; j < Lk; ++j) {
            if (!used[j]) continue;
            double w = std::exp(s[j] - m) / sum;
            if (bug_ == Bug::sink_as_key && sink && j == first) w += std::exp(sink_logit - m) / sum;
            const double* vj = v.data() + ((b * p.Hkv + hk) * Lk + j) * D;
            for (std::int64_t d = 0; d < D; ++d) oi[d] += w * vj[d];
          }
          for (std::int64_t d = 0; d < D; ++d) oi[d] = round_to(t, oi[d]);
          if (want_lse) r.lse[static_cast<std::size_t>((b * H + h) * Lq + i)] = m + std::log(sum);
        }
      }
    return r;
  }

 private:
  Bug bug_;
};

}  // namespace

void add_attention_modifier_mutants(std::vector<Mutant>& out) {
  const Op op = Op::attention;
  auto add = [&](std::string bug, std::string id, std::string how, Bug b) {
    out.push_back(entry<ModifierBug>(op, std::move(bug), std::move(id), std::move(how), b));
  };
  add("soft-capping applied after the mask", "softcap-after-mask",
      "the mask's -inf goes through cap * tanh(s / cap) and comes out -cap: every masked key "
      "(future tokens, other documents, padding) gets weight e^(-cap - m)",
      Bug::softcap_after_mask);
  add("soft-capping ignored", "softcap-ignored", "the scores are not capped", Bug::softcap_ignored);
  add("soft-capping before the scale", "softcap-before-scale",
      "scale * cap * tanh(<q, k> / cap): the raw dot is capped, then scaled",
      Bug::softcap_before_scale);
  add("soft-capping through an overflowing tanh", "softcap-overflowing-tanh",
      "tanh(x) computed as (e^2x - 1) / (e^2x + 1) in f32: inf / inf = NaN once s / cap passes 44",
      Bug::softcap_overflowing_tanh);
  add("ALiBi bias with the wrong sign", "alibi-sign",
      "s += slope * |j - diag|: the farthest keys weigh most", Bug::alibi_sign);
  add("ALiBi distance from the padded query index", "alibi-query-index",
      "|j - i| in padded positions instead of the distance from the query's diagonal: wrong "
      "whenever Lq != Lk, with left padding or inside packed documents",
      Bug::alibi_query_index);
  add("ALiBi slope of the kv head", "alibi-kv-head",
      "query head h takes slope[h / group], the index of its kv head, under grouped-query "
      "attention",
      Bug::alibi_kv_head);
  add("ALiBi bias added before soft-capping", "alibi-before-softcap",
      "cap * tanh((s - slope |j - diag|) / cap): the documented order is cap, then bias",
      Bug::alibi_before_softcap);
  add("sink logit dropped", "sink-ignored", "the learned sink logit never joins the denominator",
      Bug::sink_ignored);
  add("sink logit gives empty rows a log-sum-exp", "sink-empty-row-lse",
      "a row without a visible key outputs 0 but log-sum-exp = sink instead of -inf",
      Bug::sink_empty_row_lse);
  add("sink logit multiplied by the scale", "sink-scaled",
      "the sink logit is scaled like a q.k dot before it joins the denominator", Bug::sink_scaled);
  add("sink weight given to a real key", "sink-as-key",
      "the sink's share of the row is added to its first visible key's weight, so the row's "
      "weights still sum to 1",
      Bug::sink_as_key);
}

}  // namespace maskcheck::mutants
