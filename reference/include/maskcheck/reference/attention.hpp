// Reference masked attention forward, the textbook formula with the mask materialized first.
//   q: [B, H, Lq, D], k, v: [B, Hkv, Lk, D], keep: [B, Lq, Lk]
//   out: [B, H, Lq, D], lse: [B, H, Lq] (optional, may be empty)
//   s_j = scale * <q_i, k_j> for visible j only (masked keys are never read)
//   p_j = exp(s_j - m) / sum_j exp(s_j - m),  out_i = sum_j p_j v_j,  lse_i = m + log(sum)
// A query with no visible key gets out = 0 and lse = -inf. Head h reads kv head h / (H / Hkv).
// Score modifiers (problems.hpp's ScoreModifiers) in their order: s_j = softcap tanh(s_j /
// softcap), then s_j -= slope_h |j - diag(i)|, on visible keys only; the sink logit joins the
// denominator (and the max m) of rows with a visible key.
// Complexity: O(B H Lq Lk D) time, O(Lk) scratch. Accumulation in A; scores, probabilities and
// outputs pass through S, as a framework computing in S would store them.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

#include "maskcheck/reference/masks.hpp"
#include "maskcheck/reference/numeric.hpp"
#include "maskcheck/reference/predicate.hpp"
#include "maskcheck/reference/problems.hpp"

namespace maskcheck::ref {

// Soft-capping then ALiBi (ScoreModifiers 1 and 2) on a score s of head h whose key lies
// `distance` keys from the query's diagonal.
template <class A>
A modified_score(const ScoreModifiers& mods, std::int64_t h, A s, std::int64_t distance) {
  if (mods.softcap != 0)
    s = static_cast<A>(mods.softcap) * std::tanh(s / static_cast<A>(mods.softcap));
  if (!mods.alibi_slopes.empty())
    s -= static_cast<A>(mods.alibi_slopes[static_cast<std::size_t>(h)]) * static_cast<A>(distance);
  return s;
}

// diagonals: [B, Lq] the key on each query's diagonal (ALiBi's reference point), or empty: from
// p.mask (query_diagonal). A caller that runs some rows of a larger problem as a problem of their
// own (keep holding their rows' visibility) passes the rows' diagonals in the larger one.
template <class S, class A>
void attention_forward(const AttentionProblem& p, std::span<const std::uint8_t> keep,
                       std::span<const S> q, std::span<const S> k, std::span<const S> v,
                       std::span<S> out, std::span<A> lse,
                       std::span<const std::int64_t> diagonals = {}) {
  p.validate();
  const std::int64_t B = p.mask.B, H = p.H, Hkv = p.Hkv, Lq = p.mask.Lq, Lk = p.mask.Lk, D = p.D;
  require_size("keep", keep.size(), checked_numel("keep", {B, Lq, Lk}));
  require_size("q", q.size(), p.q_numel());
  require_size("k", k.size(), p.kv_numel());
  require_size("v", v.size(), p.kv_numel());
  require_size("out", out.size(), p.q_numel());
  if (!lse.empty()) require_size("lse", lse.size(), p.lse_numel());
  if (!diagonals.empty()) require_size("diagonals", diagonals.size(), B * Lq);
  const A scale = static_cast<A>(p.effective_scale());
  const std::int64_t group = H / Hkv;
  const ScoreModifiers& mods = p.mods;
  const FlatMask flat(p.mask);  // the queries' diagonals (ALiBi)
  std::vector<A> s(static_cast<std::size_t>(Lk));
  std::vector<A> acc(static_cast<std::size_t>(D));
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t h = 0; h < H; ++h) {
      const std::int64_t hk = h / group;
      for (std::int64_t i = 0; i < Lq; ++i) {
        const std::uint8_t* kr = keep.data() + (b * Lq + i) * Lk;
        const S* qi = q.data() + ((b * H + h) * Lq + i) * D;
        S* oi = out.data() + ((b * H + h) * Lq + i) * D;
        const std::int64_t diag = !mods.any()          ? 0
                                  : !diagonals.empty() ? diagonals[b * Lq + i]
                                                       : query_diagonal(flat.view(), b, i);
        A m = -std::numeric_limits<A>::infinity();
        bool any = false;
        for (std::int64_t j = 0; j < Lk; ++j) {
          if (!kr[j]) continue;
          const S* kj = k.data() + ((b * Hkv + hk) * Lk + j) * D;
          A dot = 0;
          for (std::int64_t d = 0; d < D; ++d) dot += load<A>(qi[d]) * load<A>(kj[d]);
          s[j] = round_score<S, A>(scale * dot);
          if (mods.any())
            s[j] = round_score<S, A>(modified_score(mods, h, s[j], j > diag ? j - diag : diag - j));
          m = std::max(m, s[j]);
          any = true;
        }
        const bool sink = any && !mods.sink_logits.empty();
        const A sink_logit =
            sink ? static_cast<A>(mods.sink_logits[static_cast<std::size_t>(h)]) : A(0);
        if (sink) m = std::max(m, sink_logit);
        A sum = sink ? std::exp(sink_logit - m) : A(0);
        for (std::int64_t j = 0; j < Lk; ++j)
          if (kr[j]) sum += std::exp(s[j] - m);
        std::fill(acc.begin(), acc.end(), A(0));
        for (std::int64_t j = 0; j < Lk; ++j) {
          if (!kr[j]) continue;
          const A pj = round_through<S, A>(std::exp(s[j] - m) / sum);
          const S* vj = v.data() + ((b * Hkv + hk) * Lk + j) * D;
          for (std::int64_t d = 0; d < D; ++d) acc[d] += pj * load<A>(vj[d]);
        }
        for (std::int64_t d = 0; d < D; ++d) oi[d] = store<S>(any ? acc[d] : A(0));
        if (!lse.empty())
          lse[(b * H + h) * Lq + i] = any ? m + std::log(sum) : -std::numeric_limits<A>::infinity();
      }
    }
}

template <class S, class A>
void attention_forward(const AttentionProblem& p, std::span<const S> q, std::span<const S> k,
                       std::span<const S> v, std::span<S> out, std::span<A> lse) {
  const auto keep = build_keep_mask(p.mask);
  attention_forward<S, A>(p, std::span<const std::uint8_t>(keep), q, k, v, out, lse);
}

// Reference masked attention backward: the gradients of out = softmax(q k^T * scale + mask) v
// with respect to q, k and v, given dout = dL/dout, by the textbook formulas with the mask
// materialized first.
//   q, dout, dq: [B, H, Lq, D]; k, v, dk, dv: [B, Hkv, Lk, D]; keep: [B, Lq, Lk]
//   per row i and visible key j:  p_ij = softmax_j(s_ij),  dp_ij = <dout_i, v_j>,
//   delta_i = sum_j p_ij dp_ij (= <dout_i, out_i>),  ds_ij = p_ij (dp_ij - delta_i),
//   dq_i = scale sum_j ds_ij k_j,  dk_j = scale sum_i ds_ij q_i,  dv_j = sum_i p_ij dout_i
// with the dk and dv sums over every query head of the key's kv head (GQA). Masked pairs take no
// part: a key no query sees gets dk = dv = 0 exactly, a query with no visible key gets dq = 0
// exactly and contributes nothing, and masked or padded q, k, v and dout are never read. The
// log-sum-exp output is not differentiated (its gradient is not part of the contract).
// Complexity: O(B H Lq Lk D) time, O(Lk + D) scratch besides dk and dv accumulators in A.
// Accumulation in A; probabilities and ds pass through S (a framework computing in S stores them).
template <class S, class A>
void attention_backward(const AttentionProblem& p, std::span<const std::uint8_t> keep,
                        std::span<const S> q, std::span<const S> k, std::span<const S> v,
                        std::span<const S> dout, std::span<S> dq, std::span<S> dk,
                        std::span<S> dv) {
  p.validate();
  const std::int64_t B = p.mask.B, H = p.H, Hkv = p.Hkv, Lq = p.mask.Lq, Lk = p.mask.Lk, D = p.D;
  require_size("keep", keep.size(), checked_numel("keep", {B, Lq, Lk}));
  require_size("q", q.size(), p.q_numel());
  require_size("k", k.size(), p.kv_numel());
  require_size("v", v.size(), p.kv_numel());
  require_size("dout", dout.size(), p.q_numel());
  require_size("dq", dq.size(), p.q_numel());
  require_size("dk", dk.size(), p.kv_numel());
  require_size("dv", dv.size(), p.kv_numel());
  if (p.mods.any())
    throw_invalid("mods", p.mods.describe(), "attention backward takes no score modifiers (yet)");
  const A scale = static_cast<A>(p.effective_scale());
  const std::int64_t group = H / Hkv;
  std::vector<A> s(static_cast<std::size_t>(Lk)), pr(s.size()), dp(s.size());
  std::vector<A> acc(static_cast<std::size_t>(D));
  std::vector<A> dka(static_cast<std::size_t>(p.kv_numel())), dva(dka.size());
  std::vector<std::uint8_t> seen(static_cast<std::size_t>(B * Hkv * Lk), 0);
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t h = 0; h < H; ++h) {
      const std::int64_t hk = h / group;
      for (std::int64_t i = 0; i < Lq; ++i) {
        const std::uint8_t* kr = keep.data() + (b * Lq + i) * Lk;
        const std::int64_t row = ((b * H + h) * Lq + i) * D;
        const S* qi = q.data() + row;
        const S* gi = dout.data() + row;
        A m = -std::numeric_limits<A>::infinity();
        bool any = false;
        for (std::int64_t j = 0; j < Lk; ++j) {
          if (!kr[j]) continue;
          const S* kj = k.data() + ((b * Hkv + hk) * Lk + j) * D;
          A dot = 0;
          for (std::int64_t d = 0; d < D; ++d) dot += load<A>(qi[d]) * load<A>(kj[d]);
          s[j] = round_score<S, A>(scale * dot);
          m = std::max(m, s[j]);
          any = true;
        }
        std::fill(acc.begin(), acc.end(), A(0));
        if (any) {
          A sum = 0;
          for (std::int64_t j = 0; j < Lk; ++j)
            if (kr[j]) sum += std::exp(s[j] - m);
          A delta = 0;
          for (std::int64_t j = 0; j < Lk; ++j) {
            if (!kr[j]) continue;
            const S* vj = v.data() + ((b * Hkv + hk) * Lk + j) * D;
            pr[j] = round_through<S, A>(std::exp(s[j] - m) / sum);
            A dot = 0;
            for (std::int64_t d = 0; d < D; ++d) dot += load<A>(gi[d]) * load<A>(vj[d]);
            dp[j] = round_through<S, A>(dot);
            delta += pr[j] * dp[j];
          }
          for (std::int64_t j = 0; j < Lk; ++j) {
            if (!kr[j]) continue;
            const std::int64_t kv = ((b * Hkv + hk) * Lk + j) * D;
            seen[static_cast<std::size_t>(kv / std::max<std::int64_t>(D, 1))] = 1;
            const A ds = round_through<S, A>(pr[j] * (dp[j] - delta));
            for (std::int64_t d = 0; d < D; ++d) {
              acc[d] += ds * load<A>(k[kv + d]);
              dka[kv + d] += ds * load<A>(qi[d]);
              dva[kv + d] += pr[j] * load<A>(gi[d]);
            }
          }
        }
        // +0.0 for a row that sees no key (scale * 0 would be -0.0 for a negative scale).
        for (std::int64_t d = 0; d < D; ++d) dq[row + d] = store<S>(any ? scale * acc[d] : A(0));
      }
    }
  for (std::size_t i = 0; i < dka.size(); ++i) {
    const bool any = seen[i / static_cast<std::size_t>(std::max<std::int64_t>(D, 1))] != 0;
    dk[i] = store<S>(any ? scale * dka[i] : A(0));  // +0.0 for a key no query sees
    dv[i] = store<S>(any ? dva[i] : A(0));
  }
}

template <class S, class A>
void attention_backward(const AttentionProblem& p, std::span<const S> q, std::span<const S> k,
                        std::span<const S> v, std::span<const S> dout, std::span<S> dq,
                        std::span<S> dk, std::span<S> dv) {
  const auto keep = build_keep_mask(p.mask);
  attention_backward<S, A>(p, std::span<const std::uint8_t>(keep), q, k, v, dout, dq, dk, dv);
}

// Packed (varlen) layout: each sequence run alone through the padded reference.
//   q, out: [T_q, H, D], k, v: [T_k, Hkv, D], lse: [H, T_q] (optional)
template <class S, class A>
void attention_forward_varlen(const VarlenAttentionProblem& p, std::span<const S> q,
                              std::span<const S> k, std::span<const S> v, std::span<S> out,
                              std::span<A> lse) {
  p.validate();
  const std::int64_t H = p.H, Hkv = p.Hkv, D = p.D;
  require_size("q", q.size(), checked_numel("q", {p.total_q(), H, D}));
  require_size("k", k.size(), checked_numel("k", {p.total_k(), Hkv, D}));
  require_size("v", v.size(), checked_numel("v", {p.total_k(), Hkv, D}));
  require_size("out", out.size(), checked_numel("out", {p.total_q(), H, D}));
  if (!lse.empty()) require_size("lse", lse.size(), checked_numel("lse", {H, p.total_q()}));
  for (std::int64_t b = 0; b < p.batch(); ++b) {
    const std::int64_t q0 = p.cu_seqlens_q[b], k0 = p.cu_seqlens_k[b];
    AttentionProblem one;
    one.H = H;
    one.Hkv = Hkv;
    one.D = D;
    one.scale = p.scale;
    one.mask.Lq = p.cu_seqlens_q[b + 1] - q0;
    one.mask.Lk = p.cu_seqlens_k[b + 1] - k0;
    one.mask.causal = p.causal;
    one.mask.alignment = p.alignment;
    one.mask.window = p.window;
    // [rows, heads, D] -> [heads, rows, D] and back.
    std::vector<S> qs(static_cast<std::size_t>(one.q_numel())),
        ks(static_cast<std::size_t>(one.kv_numel())), vs(ks.size()), os(qs.size());
    std::vector<A> ls(lse.empty() ? 0 : static_cast<std::size_t>(one.lse_numel()));
    for (std::int64_t h = 0; h < H; ++h)
      for (std::int64_t i = 0; i < one.mask.Lq; ++i)
        for (std::int64_t d = 0; d < D; ++d)
          qs[(h * one.mask.Lq + i) * D + d] = q[((q0 + i) * H + h) * D + d];
    for (std::int64_t h = 0; h < Hkv; ++h)
      for (std::int64_t j = 0; j < one.mask.Lk; ++j)
        for (std::int64_t d = 0; d < D; ++d) {
          ks[(h * one.mask.Lk + j) * D + d] = k[((k0 + j) * Hkv + h) * D + d];
          vs[(h * one.mask.Lk + j) * D + d] = v[((k0 + j) * Hkv + h) * D + d];
        }
    attention_forward<S, A>(one, std::span<const S>(qs), std::span<const S>(ks),
                            std::span<const S>(vs), std::span<S>(os), std::span<A>(ls));
    for (std::int64_t h = 0; h < H; ++h)
      for (std::int64_t i = 0; i < one.mask.Lq; ++i) {
        for (std::int64_t d = 0; d < D; ++d)
          out[((q0 + i) * H + h) * D + d] = os[(h * one.mask.Lq + i) * D + d];
        if (!lse.empty()) lse[h * p.total_q() + q0 + i] = ls[h * one.mask.Lq + i];
      }
  }
}

// The contiguous keys (or values) [B, Hkv, Lk, D] of a paged cache [num_pages, page_size, Hkv, D]
// (problems.hpp's PagedKv): sequence b's logical key j read from its page; keys past k_len(b) are
// `fill` (their slots are never read). Validates kv against p and the cache's size.
template <class T>
std::vector<T> gather_paged(const AttentionProblem& p, const PagedKv& kv, std::span<const T> cache,
                            T fill = T(0)) {
  kv.validate(p);
  require_size("cache", cache.size(), kv.cache_numel(p));
  const std::int64_t B = p.mask.B, Hkv = p.Hkv, Lk = p.mask.Lk, D = p.D;
  std::vector<T> out(static_cast<std::size_t>(p.kv_numel()), fill);
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t j = 0; j < p.mask.k_len(b); ++j) {
      const std::int64_t slot = kv.slot(b, j);
      for (std::int64_t h = 0; h < Hkv; ++h)
        std::copy_n(cache.begin() + (slot * Hkv + h) * D, D,
                    out.begin() + ((b * Hkv + h) * Lk + j) * D);
    }
  return out;
}

// Split-KV merge (flash-decoding): one query row's partial results over disjoint chunks of its
// keys, each (out_c [D], lse_c) as attention_forward returns them for the chunk alone (out 0 and
// lse -inf for a chunk in which the row sees no key), merged into its attention over the union:
//   lse = m + log sum_c exp(lse_c - m),  out = sum_c exp(lse_c - lse) out_c,  m = max_c lse_c.
// A chunk with lse -inf takes no part (weight exactly 0: never exp(-inf - -inf) = NaN); when every
// chunk is empty the row is empty: out 0, lse -inf. outs: [C, D], lses: [C], out: [D].
// Complexity: O(C D). Accumulation in A.
template <class A>
void merge_partials(std::span<const A> outs, std::span<const A> lses, std::span<A> out, A& lse) {
  const std::size_t C = lses.size(), D = out.size();
  require_size("outs", outs.size(), static_cast<std::int64_t>(C * D));
  A m = -std::numeric_limits<A>::infinity();
  for (const A l : lses) m = std::max(m, l);
  std::fill(out.begin(), out.end(), A(0));
  if (m == -std::numeric_limits<A>::infinity()) {
    lse = m;
    return;
  }
  A sum = 0;
  for (const A l : lses)
    if (l != -std::numeric_limits<A>::infinity()) sum += std::exp(l - m);
  lse = m + std::log(sum);
  for (std::size_t c = 0; c < C; ++c) {
    if (lses[c] == -std::numeric_limits<A>::infinity()) continue;
    const A w = std::exp(lses[c] - lse);
    for (std::size_t d = 0; d < D; ++d) out[d] += w * outs[c * D + d];
  }
}

}  // namespace maskcheck::ref
