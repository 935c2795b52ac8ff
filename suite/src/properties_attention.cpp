// Properties of masked attention forward.
#include <rapidcheck.h>
#include <algorithm>
#include <bit>
#include <cmath>
#include <functional>
#include <limits>
#include <optional>
#include <sstream>
#include <string>

#include "maskcheck/reference/attention.hpp"
#include "maskcheck/reference/predicate.hpp"
#include "maskcheck/suite/properties.hpp"
#include "maskcheck/suite/reference_impl.hpp"

namespace maskcheck {
namespace {

bool draw(const Implementation& impl, const CaseLimits& lim, AttentionCase& c) {
  c = *gen_attention_case(lim).as("case");
  if (!supported(impl.supports_attention(c.problem, c.dtype, c.want_lse))) return false;
  tag_case(c.problem.mask, c.dtype);
  if (c.problem.Hkv != c.problem.H) tag_case({"gqa"});
  const ScoreModifiers& mods = c.problem.mods;
  if (mods.softcap != 0) tag_case({"softcap"});
  if (!mods.alibi_slopes.empty()) tag_case({"alibi"});
  if (!mods.sink_logits.empty()) tag_case({"sink-logits"});
  return true;
}

AttentionResult run(const Implementation& impl, const AttentionCase& c, const AttentionProblem& p,
                    const AttentionData& d) {
  return impl.attention(p, c.dtype, d.q, d.k, d.v, c.want_lse);
}

// Finite garbage for keys that are masked for some queries only (+-max/2, random N(0, 1e3)).
// Non-finite values are left to paddingContentsCannotLeak: a tiled kernel multiplies P (0
// exactly for a masked pair) by V for every key of a tile, and 0 * NaN = NaN, so NaN at a key that
// another row of the tile may see would reach rows that cannot see it. Padding is invisible to
// every row and may hold anything.

// Offsets of row (b, h, q) of out [B, H, Lq, D] and of lse [B, H, Lq].
struct Rows {
  const AttentionProblem& p;
  std::int64_t out(std::int64_t b, std::int64_t h, std::int64_t q) const {
    return ((b * p.H + h) * p.mask.Lq + q) * p.D;
  }
  std::int64_t lse(std::int64_t b, std::int64_t h, std::int64_t q) const {
    return (b * p.H + h) * p.mask.Lq + q;
  }
  std::int64_t kv(std::int64_t b, std::int64_t h, std::int64_t k) const {
    return ((b * p.Hkv + h) * p.mask.Lk + k) * p.D;
  }
};

// Copies the rows (b, *, q) for the selected queries into flat vectors (out, lse).
struct Selected {
  std::vector<double> out, lse;
};
template <class Pred>
Selected select_rows(const AttentionProblem& p, const AttentionResult& r, Pred keep_row) {
  Selected s;
  const Rows rows{p};
  for (std::int64_t b = 0; b < p.mask.B; ++b)
    for (std::int64_t h = 0; h < p.H; ++h)
      for (std::int64_t q = 0; q < p.mask.Lq; ++q) {
        if (!keep_row(b, q)) continue;
        s.out.insert(s.out.end(), r.out.begin() + rows.out(b, h, q),
                     r.out.begin() + rows.out(b, h, q) + p.D);
        if (!r.lse.empty()) s.lse.push_back(r.lse[rows.lse(b, h, q)]);
      }
  return s;
}

void expect_exact_rows(const Selected& got, const Selected& want, std::int64_t D) {
  expect(check_exact(
      "out (selected rows)",
      Shape{{"row", "d"}, {std::int64_t(want.out.size()) / std::max<std::int64_t>(D, 1), D}},
      got.out, want.out));
  expect(check_exact("lse (selected rows)", Shape{{"row"}, {std::int64_t(want.lse.size())}},
                     got.lse, want.lse));
}

// The exact, naive and rounding-bound results of the run a consistency property compares
// against, laid out like `want` (computed only when the plain dtype floor fails).
using Expected = std::function<AttentionExpectation()>;

// Two runs of the implementation on equivalent problems agree: within the dtype floor, or, when
// that fails, within twice what check_close allows a run of this computation (tolerance.hpp's
// Conditioning: ill-conditioned rows of large data stored in fp16 legitimately differ by more
// than the floor). `want_name` names the run compared against in the failure.
void expect_consistent(const std::string& what, const AttentionResult& got,
                       const AttentionResult& want, const Shape& out_shape, const Shape& lse_shape,
                       DType t, std::string_view want_name, const Expected& expected) {
  std::optional<AttentionExpectation> e;
  auto check = [&](const std::string& name, const Shape& shape, const std::vector<double>& g,
                   const std::vector<double>& w, bool lse) {
    CheckResult r = check_consistent(name, shape, g, w, t, want_name);
    if (!r.ok && expected) {
      if (!e) e = expected();
      const auto& ew = lse ? e->want.lse : e->want.out;
      const auto& en = lse ? e->naive.lse : e->naive.out;
      const auto& er = lse ? e->rounding.lse : e->rounding.out;
      if (ew.size() == w.size()) {
        const Conditioning cond = conditioning(ew, en, t, er);
        r = check_consistent(name, shape, g, w, t, want_name, &cond);
      }
    }
    expect(r);
  };
  check(what + " out", out_shape, got.out, want.out, false);
  if (!want.lse.empty()) check(what + " lse", lse_shape, got.lse, want.lse, true);
}

void expect_consistent(const std::string& what, const AttentionResult& got,
                       const AttentionResult& want, const AttentionProblem& p, DType t,
                       std::string_view want_name, const Expected& expected) {
  expect_consistent(what, got, want, attention_out_shape(p), attention_lse_shape(p), t, want_name,
                    expected);
}

// f applied to each of an expectation's three results (a slice of rows, a shift of layout).
template <class F>
AttentionExpectation map_expectation(const AttentionExpectation& e, F&& f) {
  return {f(e.want), f(e.naive), f(e.rounding)};
}

Expected expectation_of(const AttentionProblem& p, DType t, const AttentionData& d, bool want_lse) {
  return [=] { return attention_expectation(p, t, d.q, d.k, d.v, want_lse); };
}

MaskSpec sequence_alone(const MaskSpec& m, std::int64_t b) {
  MaskSpec s = m;
  s.B = 1;
  s.q_lens =
      m.q_lens.empty() ? std::vector<std::int32_t>{} : std::vector<std::int32_t>{m.q_lens[b]};
  s.k_lens =
      m.k_lens.empty() ? std::vector<std::int32_t>{} : std::vector<std::int32_t>{m.k_lens[b]};
  if (m.has_documents()) {
    s.cu_seqlens_q = {m.cu_seqlens_q[b]};
    s.cu_seqlens_k = {m.cu_seqlens_k[b]};
  }
  if (!m.prefix_lens.empty()) s.prefix_lens = {m.prefix_lens[b]};
  return s;
}

// maskedKeysCannotLeak on case c: finite garbage in K and V at a random quarter of the keys and
// at every padded key changes no bit of the rows that see none of them.
void check_masked_keys_cannot_leak(const Implementation& impl, const AttentionCase& c) {
  const auto d = make_data(c);
  const Garbage kind =
      draw_garbage({Garbage::half_max, Garbage::neg_half_max, Garbage::random_1e3});
  const auto poison_seed = *rc::gen::arbitrary<std::uint64_t>().as("poisoned keys seed");
  const AttentionProblem& p = c.problem;
  const MaskSpec& m = p.mask;
  // Poison each key with probability 1/4, and every padded key.
  DataRng rng(poison_seed);
  std::vector<std::uint8_t> poisoned(m.B * m.Lk, 0);
  for (std::int64_t b = 0; b < m.B; ++b)
    for (std::int64_t k = 0; k < m.Lk; ++k) {
      const std::int64_t k0 = valid_begin(m.padding, m.Lk, m.k_len(b));
      poisoned[b * m.Lk + k] = rng.below(4) == 0 || k < k0 || k >= k0 + m.k_len(b);
    }
  auto dirty = d;
  const Rows rows{p};
  for (std::int64_t b = 0; b < m.B; ++b)
    for (std::int64_t h = 0; h < p.Hkv; ++h)
      for (std::int64_t k = 0; k < m.Lk; ++k)
        if (poisoned[b * m.Lk + k])
          for (std::int64_t e = 0; e < p.D; ++e) {
            dirty.k[rows.kv(b, h, k) + e] = garbage_value(kind, c.dtype, rng);
            dirty.v[rows.kv(b, h, k) + e] = garbage_value(kind, c.dtype, rng);
          }
  const FlatMask flat(m);
  auto blind = [&](std::int64_t b, std::int64_t q) {
    bool clean = true;
    row_keys(flat.view(), b, q).for_each([&](std::int64_t k) {
      if (poisoned[b * m.Lk + k]) clean = false;
    });
    return clean;
  };
  expect_exact_rows(select_rows(p, run(impl, c, p, dirty), blind),
                    select_rows(p, run(impl, c, p, d), blind), p.D);
}

}  // namespace

void add_attention_properties(std::vector<Property>& out) {
  out.push_back(
      {"attention.agreesWithReference", Op::attention,
       "output and log-sum-exp agree with the fp64 reference (FlashAttention rule, or each "
       "element's rounding bound)",
       [](const Implementation& impl, const CaseLimits& lim) {
         AttentionCase c;
         if (!draw(impl, lim, c)) return;
         const auto d = make_data(c);
         const auto got = run(impl, c, c.problem, d);
         const auto e = attention_expectation(c.problem, c.dtype, d.q, d.k, d.v, c.want_lse);
         expect(check_close("out", attention_out_shape(c.problem), got.out, e.want.out, e.naive.out,
                            c.dtype, e.rounding.out));
         if (c.want_lse)
           expect(check_close("lse", attention_lse_shape(c.problem), got.lse, e.want.lse,
                              e.naive.lse, c.dtype, e.rounding.lse));
       }});

  out.push_back(
      {"attention.rowsSumToOneOrAreZero", Op::attention,
       "with V = 1 every row with a visible key outputs 1; a row with none outputs exactly 0 and "
       "log-sum-exp -inf",
       [](const Implementation& impl, const CaseLimits& lim) {
         AttentionCase c;
         if (!draw(impl, lim, c)) return;
         c.problem.mods.sink_logits.clear();  // a sink lowers the sum (sinkLogitsLowerRowSums)
         auto d = make_data(c);
         std::fill(d.v.begin(), d.v.end(), 1.0);
         const auto got = run(impl, c, c.problem, d);
         const auto naive =
             reference_attention(c.problem, c.dtype, d.q, d.k, d.v, c.want_lse, Precision::naive);
         const FlatMask flat(c.problem.mask);
         const Rows rows{c.problem};
         std::vector<double> want(got.out.size(), 0.0);
         std::vector<double> want_empty_lse, got_empty_lse;
         for (std::int64_t b = 0; b < c.problem.mask.B; ++b)
           for (std::int64_t h = 0; h < c.problem.H; ++h)
             for (std::int64_t q = 0; q < c.problem.mask.Lq; ++q) {
               const bool empty = visible_keys(flat.view(), b, q).empty();
               for (std::int64_t e = 0; e < c.problem.D; ++e)
                 want[rows.out(b, h, q) + e] = empty ? 0.0 : 1.0;
               if (empty && c.want_lse) {
                 want_empty_lse.push_back(-std::numeric_limits<double>::infinity());
                 got_empty_lse.push_back(got.lse[rows.lse(b, h, q)]);
               }
             }
         // Fully masked rows must be +0.0 exactly: a zero-tolerance view of those entries.
         std::vector<double> got_empty, zeros;
         for (std::size_t i = 0; i < want.size(); ++i)
           if (want[i] == 0.0) {
             got_empty.push_back(got.out[i]);
             zeros.push_back(0.0);
           }
         // The rule against the naive run, or each element's first-order rounding bound: a row
         // of thousands of keys is one draw of the rounding lottery for the naive run too (a
         // correct f32 kernel landed at 2.3x its error on a 6112-key row).
         const auto bound = attention_rounding_bound(c.problem, c.dtype, d.q, d.k, d.v, c.want_lse);
         expect(check_close("out", attention_out_shape(c.problem), got.out, want, naive.out,
                            c.dtype, bound.out));
         expect(check_exact("out of fully masked rows", Shape{{"i"}, {std::int64_t(zeros.size())}},
                            got_empty, zeros));
         expect(check_exact("lse of fully masked rows",
                            Shape{{"i"}, {std::int64_t(want_empty_lse.size())}}, got_empty_lse,
                            want_empty_lse));
       }});

  out.push_back(
      {"attention.shiftInvariant", Op::attention,
       "adding a constant c (+1024, -1024, -8192, -1e4 or -1e5) to every score of every row (a "
       "key component held at 1, the query's moved by c / scale) leaves the output unchanged and "
       "moves the log-sum-exp by c: the shifted run agrees with the fp64 reference of the "
       "unshifted problem, its log-sum-exp plus c (f32 and f64, scales over their range)",
       [](const Implementation& impl, const CaseLimits& lim) {
         CaseLimits l = lim;
         std::erase_if(l.dtypes, [](DType t) { return t != DType::f32 && t != DType::f64; });
         if (l.dtypes.empty()) {
           tag_case({"skipped: shift invariance is checked in f32 and f64 only"});
           return;
         }
         AttentionCase c;
         if (!draw(impl, l, c)) return;
         c.problem.mods.softcap = 0;  // neither the cap nor the sink moves with the scores
         c.problem.mods.sink_logits.clear();
         AttentionProblem& p = c.problem;
         c.want_lse = lim.attention_lse;
         if (p.effective_scale() == 0) p.scale = 1.0;  // a zero scale has nothing to shift
         const double shift = draw_one_of({-1024.0, 1024.0, -8192.0, -1e4, -1e5}, "shift");
         const double scale = p.effective_scale();
         auto base = make_data(c);
         const Rows rows{p};
         // The last head-dim component of every key is 1, so moving a query's last component by
         // shift / scale moves each of its scores by scale * (its moved component - its old one).
         for (std::int64_t b = 0; b < p.mask.B; ++b)
           for (std::int64_t h = 0; h < p.Hkv; ++h)
             for (std::int64_t k = 0; k < p.mask.Lk; ++k) base.k[rows.kv(b, h, k) + p.D - 1] = 1.0;
         auto shifted = base;
         std::vector<double> moved(static_cast<std::size_t>(p.lse_numel()));
         for (std::int64_t b = 0; b < p.mask.B; ++b)
           for (std::int64_t h = 0; h < p.H; ++h)
             for (std::int64_t q = 0; q < p.mask.Lq; ++q) {
               double& x = shifted.q[rows.out(b, h, q) + p.D - 1];
               const double before = x;
               x = round_to(c.dtype, x + shift / scale);
               moved[rows.lse(b, h, q)] = scale * (x - before);  // exact: the effective shift
             }
         if (!supported(impl.supports_attention(p, c.dtype, c.want_lse))) return;
         const auto got = run(impl, c, p, shifted);
         const auto truth =
             reference_attention(p, c.dtype, base.q, base.k, base.v, c.want_lse, Precision::exact);
         const auto e =
             attention_expectation(p, c.dtype, shifted.q, shifted.k, shifted.v, c.want_lse);
         expect(check_close("out (scores shifted by c)", attention_out_shape(p), got.out, truth.out,
                            e.naive.out, c.dtype, e.rounding.out));
         if (c.want_lse) {
           std::vector<double> want = truth.lse;
           for (std::size_t i = 0; i < want.size(); ++i) want[i] += moved[i];  // -inf stays
           expect(check_close("lse (scores shifted by c)", attention_lse_shape(p), got.lse, want,
                              e.naive.lse, c.dtype, e.rounding.lse));
         }
       }});

  out.push_back(
      {"attention.constantValuesAreReproduced", Op::attention,
       "with every value vector the same constant c, each row that sees a key outputs c in every "
       "element and a row that sees none outputs exactly 0: the weighted sum of thousands of "
       "same-sign terms shows accumulation in too narrow a type, which random values cancel",
       [](const Implementation& impl, const CaseLimits& lim) {
         AttentionCase c;
         if (!draw(impl, lim, c)) return;
         c.problem.mods.sink_logits.clear();  // a sink lowers the sum (sinkLogitsLowerRowSums)
         const AttentionProblem& p = c.problem;
         const double value = round_to(c.dtype, draw_one_of({1.7, -3.25, 0.1, 300.0}, "value"));
         auto d = make_data(c);
         std::fill(d.v.begin(), d.v.end(), value);
         const auto got = run(impl, c, p, d);
         const auto e = attention_expectation(p, c.dtype, d.q, d.k, d.v, false);
         const FlatMask flat(p.mask);
         const Rows rows{p};
         std::vector<double> want(got.out.size(), value);
         for (std::int64_t b = 0; b < p.mask.B; ++b)
           for (std::int64_t q = 0; q < p.mask.Lq; ++q)
             if (visible_keys(flat.view(), b, q).empty())
               for (std::int64_t h = 0; h < p.H; ++h)
                 std::fill_n(want.begin() + rows.out(b, h, q), p.D, 0.0);
         expect(check_close("out (every value " + std::to_string(value) + ")",
                            attention_out_shape(p), got.out, want, e.naive.out, c.dtype,
                            e.rounding.out));
       }});

  out.push_back(
      {"attention.everyVisibleKeyCounts", Op::attention,
       "with q = 0 every visible key weighs exactly 1/n; V marks a few keys per head dim (the "
       "first and last valid keys of each sequence and document, the ends and starts of 64- and "
       "128-key tiles), so a visible key that a loop bound skips or counts twice moves its "
       "row's output by a large fraction, at any length and in every dtype",
       [](const Implementation& impl, const CaseLimits& lim) {
         AttentionCase c;
         if (!draw(impl, lim, c)) return;
         const AttentionProblem& p = c.problem;
         const MaskSpec& m = p.mask;
         auto d = make_data(c);
         std::fill(d.q.begin(), d.q.end(), 0.0);
         std::fill(d.v.begin(), d.v.end(), 0.0);
         // Dim e % 3 == 0: sequence and document edges (the last keys a decode row sees);
         // 1: the last key of each 64- and 128-key tile; 2: the first key of each tile. Each
         // marked value is about n / (marks a row sees), so that outputs are near 1.
         const Rows rows{p};
         for (std::int64_t b = 0; b < m.B; ++b) {
           const std::int64_t kl = m.k_len(b), k0 = valid_begin(m.padding, m.Lk, kl);
           std::vector<std::uint8_t> edge(static_cast<std::size_t>(m.Lk), 0);
           auto mark_edges = [&](std::int64_t lo, std::int64_t hi) {  // [lo, hi) of valid keys
             if (hi <= lo) return;
             edge[k0 + lo] = 1;
             for (std::int64_t j = std::max(lo, hi - 4); j < hi; ++j) edge[k0 + j] = 1;
           };
           mark_edges(0, kl);
           if (m.has_documents())
             for (std::size_t i = 0; i + 1 < m.cu_seqlens_k[b].size(); ++i)
               mark_edges(m.cu_seqlens_k[b][i], m.cu_seqlens_k[b][i + 1]);
           const double tile_value = std::exp2(std::round(std::log2(std::max(kl, 1L) / 32.0 + 1)));
           for (std::int64_t h = 0; h < p.Hkv; ++h)
             for (std::int64_t j = 0; j < m.Lk; ++j)
               for (std::int64_t e = 0; e < p.D; ++e) {
                 const std::int64_t r = j - k0;  // position within the valid keys
                 double x = 0;
                 switch (e % 3) {
                   case 0:
                     x = edge[j] ? std::exp2(std::round(std::log2(std::max(kl, 1L) / 6.0 + 1)))
                                 : 0.0;
                     break;
                   case 1:
                     x = (r + 1) % 64 == 0 || (j + 1) % 128 == 0 ? tile_value : 0.0;
                     break;
                   default:
                     x = r % 64 == 0 || j % 128 == 0 ? tile_value : 0.0;
                 }
                 d.v[rows.kv(b, h, j) + e] = round_to(c.dtype, x);
               }
         }
         const auto got = run(impl, c, p, d);
         const auto e = attention_expectation(p, c.dtype, d.q, d.k, d.v, c.want_lse);
         expect(check_close("out (q = 0, marked keys in V)", attention_out_shape(p), got.out,
                            e.want.out, e.naive.out, c.dtype, e.rounding.out));
         if (c.want_lse)
           expect(check_close("lse (q = 0: log n)", attention_lse_shape(p), got.lse, e.want.lse,
                              e.naive.lse, c.dtype, e.rounding.lse));
       }});

  out.push_back(
      {"attention.sinksSurviveTheWindow", Op::attention,
       "attention sinks under a sliding window: with q = 0 (every visible key weighs 1/n) and "
       "V marking the first S keys of each segment, every row that sees a key puts between 1/n "
       "and S/n of its weight on them (a dropped sink gives 0), and rows that see none output 0",
       [](const Implementation& impl, const CaseLimits& lim) {
         AttentionCase c;
         if (!draw(impl, lim, c)) return;
         AttentionProblem& p = c.problem;
         p.mask = with_sinks(p.mask);
         p.mods = {};  // q = 0 makes every score 0 only without ALiBi; sink logits take weight
         if (!supported(impl.supports_attention(p, c.dtype, c.want_lse))) return;
         const MaskSpec& m = p.mask;
         const std::int64_t S = m.sink_tokens;
         auto d = make_data(c);
         std::fill(d.q.begin(), d.q.end(), 0.0);
         std::fill(d.v.begin(), d.v.end(), 0.0);
         const auto first = segment_first_keys(m, S);
         const Rows rows{p};
         for (std::int64_t b = 0; b < m.B; ++b)
           for (std::int64_t h = 0; h < p.Hkv; ++h)
             for (std::int64_t k = 0; k < m.Lk; ++k) {
               d.v[rows.kv(b, h, k)] = first[b * m.Lk + k];
               if (p.D > 1) d.v[rows.kv(b, h, k) + 1] = 1.0;  // the row's total weight
             }
         const auto got = run(impl, c, p, d);
         const FlatMask flat(m);
         const double tol = 1.0 / 32;  // far above any dtype's rounding of n / n or 1 / n
         std::ostringstream bad;
         int failures = 0;
         for (std::int64_t b = 0; b < m.B; ++b)
           for (std::int64_t h = 0; h < p.H; ++h)
             for (std::int64_t q = 0; q < m.Lq; ++q) {
               const double* o = got.out.data() + rows.out(b, h, q);
               const bool empty = visible_keys(flat.view(), b, q).empty();
               // n: the row's visible keys from its log-sum-exp (log n with q = 0), else <= Lk.
               const double n = c.want_lse && !empty
                                    ? std::exp(got.lse[rows.lse(b, h, q)])
                                    : static_cast<double>(std::max<std::int64_t>(m.Lk, 1));
               std::string why;
               if (empty) {
                 if (o[0] != 0 || (p.D > 1 && o[1] != 0)) why = "a row without keys is not 0";
               } else if (!(o[0] >= (1 - tol) / n)) {
                 why = "the sinks got no weight (less than one key's 1/n)";
               } else if (c.want_lse && !(o[0] <= (1 + tol) * static_cast<double>(S) / n)) {
                 why = "the sinks got more than S/n";
               } else if (p.D > 1 && !(std::fabs(o[1] - 1) <= tol)) {
                 why = "the row's weights do not sum to 1";
               }
               if (why.empty()) continue;
               if (++failures <= 3)
                 bad << "\n  (b=" << b << ", h=" << h << ", q=" << q << "): " << why
                     << ": out[0] = " << o[0] << (p.D > 1 ? ", out[1] = " : "")
                     << (p.D > 1 ? std::to_string(o[1]) : "") << ", n = " << n;
             }
         expect(failures == 0, "attention sinks (sink_tokens=" + std::to_string(S) +
                                   ", window.left=" + std::to_string(m.window->left) +
                                   "): " + std::to_string(failures) + " rows wrong" + bad.str());
       }});

  out.push_back(
      {"attention.maskedKeysCannotLeak", Op::attention,
       "huge or random finite values in K and V at any set of key positions change no bit of the "
       "rows that cannot see those keys (padding, future tokens, outside the window, other "
       "documents)",
       [](const Implementation& impl, const CaseLimits& lim) {
         AttentionCase c;
         if (!draw(impl, lim, c)) return;
         check_masked_keys_cannot_leak(impl, c);
       }});

  out.push_back(
      {"attention.paddingContentsCannotLeak", Op::attention,
       "NaN in every padded position of Q, K and V changes no bit of any output; padded queries "
       "output exactly 0 with log-sum-exp -inf",
       [](const Implementation& impl, const CaseLimits& lim) {
         AttentionCase c;
         if (!draw(impl, lim, c)) return;
         const auto d = make_data(c);
         const AttentionProblem& p = c.problem;
         const MaskSpec& m = p.mask;
         const double nan = std::numeric_limits<double>::quiet_NaN();
         auto dirty = d;
         const Rows rows{p};
         for (std::int64_t b = 0; b < m.B; ++b) {
           const std::int64_t q0 = valid_begin(m.padding, m.Lq, m.q_len(b));
           const std::int64_t k0 = valid_begin(m.padding, m.Lk, m.k_len(b));
           for (std::int64_t q = 0; q < m.Lq; ++q)
             if (q < q0 || q >= q0 + m.q_len(b))
               for (std::int64_t h = 0; h < p.H; ++h)
                 for (std::int64_t e = 0; e < p.D; ++e) dirty.q[rows.out(b, h, q) + e] = nan;
           for (std::int64_t k = 0; k < m.Lk; ++k)
             if (k < k0 || k >= k0 + m.k_len(b))
               for (std::int64_t h = 0; h < p.Hkv; ++h)
                 for (std::int64_t e = 0; e < p.D; ++e) {
                   dirty.k[rows.kv(b, h, k) + e] = nan;
                   dirty.v[rows.kv(b, h, k) + e] = nan;
                 }
         }
         const auto clean = run(impl, c, p, d);
         const auto got = run(impl, c, p, dirty);
         expect(check_exact("out", attention_out_shape(p), got.out, clean.out));
         if (c.want_lse) expect(check_exact("lse", attention_lse_shape(p), got.lse, clean.lse));
         auto padded_query = [&](std::int64_t b, std::int64_t q) {
           const std::int64_t q0 = valid_begin(m.padding, m.Lq, m.q_len(b));
           return q < q0 || q >= q0 + m.q_len(b);
         };
         const Selected pad = select_rows(p, got, padded_query);
         Selected want;
         want.out.assign(pad.out.size(), 0.0);
         want.lse.assign(pad.lse.size(), -std::numeric_limits<double>::infinity());
         expect_exact_rows(pad, want, p.D);
       }});

  out.push_back({"attention.causalIsUnboundedLeftWindow", Op::attention,
                 "causal equals the window (unbounded, 0) under the same alignment",
                 [](const Implementation& impl, const CaseLimits& lim) {
                   AttentionCase c;
                   if (!draw(impl, lim, c)) return;
                   const auto d = make_data(c);
                   AttentionProblem causal = c.problem, window = c.problem;
                   causal.mask.causal = true;
                   window.mask.causal = false;
                   causal.mask.prefix_lens.clear();  // prefix-LM relaxes causal only
                   window.mask.prefix_lens.clear();
                   Window w = c.problem.mask.window.value_or(Window{});
                   w.right = std::min<std::int64_t>(w.right, 0);
                   window.mask.window = w;
                   expect_consistent("window (inf, 0) vs causal", run(impl, c, window, d),
                                     run(impl, c, causal, d), c.problem, c.dtype, "causal run",
                                     expectation_of(causal, c.dtype, d, c.want_lse));
                 }});

  out.push_back({"attention.wideWindowIsNoWindow", Op::attention,
                 "a window wider than Lq + Lk on both sides changes nothing",
                 [](const Implementation& impl, const CaseLimits& lim) {
                   AttentionCase c;
                   if (!draw(impl, lim, c)) return;
                   const auto d = make_data(c);
                   AttentionProblem wide = c.problem, none = c.problem;
                   none.mask.window.reset();
                   const std::int64_t w = c.problem.mask.Lq + c.problem.mask.Lk;
                   wide.mask.window = Window{w, w};
                   expect_consistent("wide window vs none", run(impl, c, wide, d),
                                     run(impl, c, none, d), c.problem, c.dtype, "unwindowed run",
                                     expectation_of(none, c.dtype, d, c.want_lse));
                 }});

  out.push_back(
      {"attention.visibleSliceEqualsUnmasked", Op::attention,
       "each query row equals unmasked attention over exactly its visible keys (sliding window "
       "== full attention on the sliced keys)",
       [](const Implementation& impl, const CaseLimits& lim) {
         AttentionCase c;
         if (!draw(impl, lim, c)) return;
         c.problem.mods.alibi_slopes.clear();  // the sliced row has another diagonal
         const auto d = make_data(c);
         const AttentionProblem& p = c.problem;
         const MaskSpec& m = p.mask;
         const auto full = run(impl, c, p, d);
         const FlatMask flat(m);
         const Rows rows{p};
         const int picks = *rc::gen::inRange(1, 4).as("rows checked");
         for (int i = 0; i < picks; ++i) {
           if (m.B == 0 || m.Lq == 0) return;
           const std::int64_t b = *rc::gen::inRange<std::int64_t>(0, m.B).as("b");
           const std::int64_t q = *rc::gen::inRange<std::int64_t>(0, m.Lq).as("q");
           const RowKeys r = row_keys(flat.view(), b, q);  // (attention sinks, then the window)
           if (r.empty()) continue;
           AttentionProblem alone = p;
           alone.mask = MaskSpec{};
           alone.mask.B = 1;
           alone.mask.Lq = 1;
           alone.mask.Lk = r.size();
           alone.scale = p.effective_scale();
           AttentionData s;
           for (std::int64_t h = 0; h < p.H; ++h)
             s.q.insert(s.q.end(), d.q.begin() + rows.out(b, h, q),
                        d.q.begin() + rows.out(b, h, q) + p.D);
           for (std::int64_t h = 0; h < p.Hkv; ++h) {
             for (const KeyRange& part : {r.sinks, r.keys}) {
               if (part.empty()) continue;
               s.k.insert(s.k.end(), d.k.begin() + rows.kv(b, h, part.begin),
                          d.k.begin() + rows.kv(b, h, part.end));
               s.v.insert(s.v.end(), d.v.begin() + rows.kv(b, h, part.begin),
                          d.v.begin() + rows.kv(b, h, part.end));
             }
           }
           const auto got = run(impl, c, alone, s);
           AttentionResult want;
           for (std::int64_t h = 0; h < p.H; ++h) {
             want.out.insert(want.out.end(), full.out.begin() + rows.out(b, h, q),
                             full.out.begin() + rows.out(b, h, q) + p.D);
             if (c.want_lse) want.lse.push_back(full.lse[rows.lse(b, h, q)]);
           }
           expect_consistent("row (b=" + std::to_string(b) + ", q=" + std::to_string(q) + ")", got,
                             want, alone, c.dtype, "masked full run",
                             expectation_of(alone, c.dtype, s, c.want_lse));
         }
       }});

  out.push_back(
      {"attention.prefixLmIsBidirectionalPrefixThenCausal", Op::attention,
       "prefix-LM: a query whose diagonal lies in the prefix equals bidirectional attention over "
       "the prefix keys, every other query plain causal attention",
       [](const Implementation& impl, const CaseLimits& lim) {
         AttentionCase c;
         if (!draw(impl, lim, c)) return;
         c.problem.mods.alibi_slopes.clear();  // the cut prefix has another diagonal
         const PrefixSplit s = prefix_split(c.problem.mask, draw_prefix_lens(c.problem.mask));
         c.problem.mask = s.prefix;
         AttentionProblem causal = c.problem, bidirectional = c.problem;
         causal.mask = s.causal;
         bidirectional.mask = s.bidirectional;
         for (const AttentionProblem* p : {&c.problem, &causal, &bidirectional})
           if (!supported(impl.supports_attention(*p, c.dtype, c.want_lse))) return;
         tag_case(s.prefix, c.dtype);
         const auto d = make_data(c);
         const auto got = run(impl, c, c.problem, d);
         auto want = run(impl, c, causal, d);
         const auto prefix_rows = run(impl, c, bidirectional, d);
         const Rows rows{c.problem};
         for (std::int64_t b = 0; b < s.prefix.B; ++b)
           for (std::int64_t q = 0; q < s.prefix.Lq; ++q) {
             if (!s.in_prefix(b, q)) continue;
             for (std::int64_t h = 0; h < c.problem.H; ++h) {
               std::copy_n(prefix_rows.out.begin() + rows.out(b, h, q), c.problem.D,
                           want.out.begin() + rows.out(b, h, q));
               if (c.want_lse) want.lse[rows.lse(b, h, q)] = prefix_rows.lse[rows.lse(b, h, q)];
             }
           }
         expect_consistent("prefix-LM vs causal and bidirectional-prefix rows", got, want,
                           c.problem, c.dtype, "causal / bidirectional runs",
                           expectation_of(c.problem, c.dtype, d, c.want_lse));
       }});

  out.push_back({"attention.chunkedEqualsDocuments", Op::attention,
                 "chunked self-attention equals attention over documents of the chunk's length",
                 [](const Implementation& impl, const CaseLimits& lim) {
                   AttentionCase c;
                   if (!draw(impl, lim, c)) return;
                   const auto s = chunk_split(c.problem.mask, draw_chunk(c.problem.mask));
                   if (!s) return;  // Lq != Lk
                   c.problem.mask = s->chunked;
                   AttentionProblem documents = c.problem;
                   documents.mask = s->documents;
                   if (!supported(impl.supports_attention(c.problem, c.dtype, c.want_lse)) ||
                       !supported(impl.supports_attention(documents, c.dtype, c.want_lse)))
                     return;
                   tag_case(s->chunked, c.dtype);
                   const auto d = make_data(c);
                   expect_consistent("chunks vs documents", run(impl, c, c.problem, d),
                                     run(impl, c, documents, d), c.problem, c.dtype,
                                     "documents run",
                                     expectation_of(documents, c.dtype, d, c.want_lse));
                 }});

  out.push_back(
      {"attention.documentsRunAlone", Op::attention,
       "with packed documents each document's rows equal that document run alone",
       [](const Implementation& impl, const CaseLimits& lim) {
         AttentionCase c;
         if (!draw(impl, lim, c)) return;
         const AttentionProblem& p = c.problem;
         const MaskSpec& m = p.mask;
         if (!m.has_documents()) return;
         const auto d = make_data(c);
         const auto full = run(impl, c, p, d);
         const Rows rows{p};
         for (std::int64_t b = 0; b < m.B; ++b) {
           const std::int64_t q0 = valid_begin(m.padding, m.Lq, m.q_len(b));
           const std::int64_t k0 = valid_begin(m.padding, m.Lk, m.k_len(b));
           for (std::size_t doc = 0; doc + 1 < m.cu_seqlens_q[b].size(); ++doc) {
             const std::int64_t qs = q0 + m.cu_seqlens_q[b][doc], ks = k0 + m.cu_seqlens_k[b][doc];
             AttentionProblem alone = p;
             alone.mask = MaskSpec{};
             alone.mask.B = 1;
             alone.mask.Lq = m.cu_seqlens_q[b][doc + 1] - m.cu_seqlens_q[b][doc];
             alone.mask.Lk = m.cu_seqlens_k[b][doc + 1] - m.cu_seqlens_k[b][doc];
             alone.mask.causal = m.causal;
             alone.mask.window = m.window;
             alone.mask.alignment = m.alignment;
             if (!m.prefix_lens.empty()) alone.mask.prefix_lens = {m.prefix_lens[b]};
             alone.mask.chunk = m.chunk;  // prefixes, chunks and sinks count from each segment
             alone.mask.sink_tokens = m.sink_tokens;
             AttentionData s;
             AttentionResult want;
             for (std::int64_t h = 0; h < p.H; ++h) {
               s.q.insert(s.q.end(), d.q.begin() + rows.out(b, h, qs),
                          d.q.begin() + rows.out(b, h, qs + alone.mask.Lq));
               want.out.insert(want.out.end(), full.out.begin() + rows.out(b, h, qs),
                               full.out.begin() + rows.out(b, h, qs + alone.mask.Lq));
               if (c.want_lse)
                 want.lse.insert(want.lse.end(), full.lse.begin() + rows.lse(b, h, qs),
                                 full.lse.begin() + rows.lse(b, h, qs + alone.mask.Lq));
             }
             for (std::int64_t h = 0; h < p.Hkv; ++h) {
               s.k.insert(s.k.end(), d.k.begin() + rows.kv(b, h, ks),
                          d.k.begin() + rows.kv(b, h, ks + alone.mask.Lk));
               s.v.insert(s.v.end(), d.v.begin() + rows.kv(b, h, ks),
                          d.v.begin() + rows.kv(b, h, ks + alone.mask.Lk));
             }
             expect_consistent("document " + std::to_string(doc) + " of b=" + std::to_string(b),
                               run(impl, c, alone, s), want, alone, c.dtype, "batched run",
                               expectation_of(alone, c.dtype, s, c.want_lse));
           }
         }
       }});

  out.push_back({"attention.leftPaddingIsShiftedRightPadding", Op::attention,
                 "left padding gives the right-padded output shifted by the padding",
                 [](const Implementation& impl, const CaseLimits& lim) {
                   AttentionCase c;
                   if (!draw(impl, lim, c)) return;
                   const auto d = make_data(c);
                   AttentionProblem right = c.problem, left = c.problem;
                   right.mask.padding = PaddingSide::right;
                   left.mask.padding = PaddingSide::left;
                   const MaskSpec& m = c.problem.mask;
                   const AttentionProblem& p = c.problem;
                   const Rows rows{p};
                   // Right-padded data moved to left-padded positions (padding filled with zeros).
                   AttentionData dl{std::vector<double>(d.q.size(), 0.0),
                                    std::vector<double>(d.k.size(), 0.0),
                                    std::vector<double>(d.v.size(), 0.0)};
                   for (std::int64_t b = 0; b < m.B; ++b) {
                     const std::int64_t dq = m.Lq - m.q_len(b), dk = m.Lk - m.k_len(b);
                     for (std::int64_t h = 0; h < p.H; ++h)
                       for (std::int64_t q = 0; q < m.q_len(b); ++q)
                         std::copy_n(d.q.begin() + rows.out(b, h, q), p.D,
                                     dl.q.begin() + rows.out(b, h, q + dq));
                     for (std::int64_t h = 0; h < p.Hkv; ++h)
                       for (std::int64_t k = 0; k < m.k_len(b); ++k) {
                         std::copy_n(d.k.begin() + rows.kv(b, h, k), p.D,
                                     dl.k.begin() + rows.kv(b, h, k + dk));
                         std::copy_n(d.v.begin() + rows.kv(b, h, k), p.D,
                                     dl.v.begin() + rows.kv(b, h, k + dk));
                       }
                   }
                   const auto r = run(impl, c, right, d);
                   const auto l = run(impl, c, left, dl);
                   AttentionResult want{
                       std::vector<double>(r.out.size(), 0.0),
                       std::vector<double>(r.lse.size(), -std::numeric_limits<double>::infinity())};
                   for (std::int64_t b = 0; b < m.B; ++b) {
                     const std::int64_t dq = m.Lq - m.q_len(b);
                     for (std::int64_t h = 0; h < p.H; ++h)
                       for (std::int64_t q = 0; q < m.q_len(b); ++q) {
                         std::copy_n(r.out.begin() + rows.out(b, h, q), p.D,
                                     want.out.begin() + rows.out(b, h, q + dq));
                         if (c.want_lse)
                           want.lse[rows.lse(b, h, q + dq)] = r.lse[rows.lse(b, h, q)];
                       }
                   }
                   expect_consistent("left padded", l, want, p, c.dtype, "right-padded run",
                                     expectation_of(left, c.dtype, dl, c.want_lse));
                 }});

  out.push_back({"attention.independentOfBatchNeighbours", Op::attention,
                 "changing the other sequences of the batch changes no bit of a sequence's output",
                 [](const Implementation& impl, const CaseLimits& lim) {
                   AttentionCase c;
                   if (!draw(impl, lim, c)) return;
                   const auto d = make_data(c);
                   const AttentionProblem& p = c.problem;
                   const std::int64_t keep_b =
                       *rc::gen::inRange<std::int64_t>(0, p.mask.B).as("kept sequence");
                   auto other = d;
                   DataRng rng(c.data_seed ^ 0xbadc0ffee);
                   const std::int64_t nq = p.H * p.mask.Lq * p.D, nkv = p.Hkv * p.mask.Lk * p.D;
                   for (std::int64_t i = 0; i < std::int64_t(other.q.size()); ++i)
                     if (i / std::max<std::int64_t>(nq, 1) != keep_b)
                       other.q[i] = round_to(c.dtype, 2 * rng.normal());
                   for (std::int64_t i = 0; i < std::int64_t(other.k.size()); ++i)
                     if (i / std::max<std::int64_t>(nkv, 1) != keep_b) {
                       other.k[i] = round_to(c.dtype, 2 * rng.normal());
                       other.v[i] = round_to(c.dtype, 2 * rng.normal());
                     }
                   auto mine = [&](std::int64_t b, std::int64_t) { return b == keep_b; };
                   expect_exact_rows(select_rows(p, run(impl, c, p, other), mine),
                                     select_rows(p, run(impl, c, p, d), mine), p.D);
                 }});

  out.push_back(
      {"attention.extraPaddingChangesNothing", Op::attention,
       "a sequence run alone with extra padding gives the same valid rows as in its batch",
       [](const Implementation& impl, const CaseLimits& lim) {
         AttentionCase c;
         if (!draw(impl, lim, c)) return;
         const auto d = make_data(c);
         const AttentionProblem& p = c.problem;
         const MaskSpec& m = p.mask;
         const std::int64_t b = *rc::gen::inRange<std::int64_t>(0, m.B).as("sequence");
         const std::int64_t extra = *rc::gen::inRange<std::int64_t>(1, 18).as("extra padding");
         AttentionProblem alone = p;
         alone.mask = sequence_alone(m, b);
         alone.mask.Lq = m.Lq + extra;
         alone.mask.Lk = m.Lk + extra;
         alone.mask.q_lens = {static_cast<std::int32_t>(m.q_len(b))};
         alone.mask.k_lens = {static_cast<std::int32_t>(m.k_len(b))};
         const std::int64_t q0 = valid_begin(m.padding, m.Lq, m.q_len(b));
         const std::int64_t k0 = valid_begin(m.padding, m.Lk, m.k_len(b));
         const std::int64_t aq0 = valid_begin(m.padding, alone.mask.Lq, m.q_len(b));
         const std::int64_t ak0 = valid_begin(m.padding, alone.mask.Lk, m.k_len(b));
         const Rows rows{p}, arows{alone};
         DataRng rng(c.data_seed ^ 0x9add);
         AttentionData s;
         s.q.resize(alone.q_numel());
         s.k.resize(alone.kv_numel());
         s.v.resize(alone.kv_numel());
         for (auto* vec : {&s.q, &s.k, &s.v})
           for (auto& x : *vec) x = round_to(c.dtype, rng.normal());  // padding: arbitrary values
         for (std::int64_t h = 0; h < p.H; ++h)
           for (std::int64_t q = 0; q < m.q_len(b); ++q)
             std::copy_n(d.q.begin() + rows.out(b, h, q0 + q), p.D,
                         s.q.begin() + arows.out(0, h, aq0 + q));
         for (std::int64_t h = 0; h < p.Hkv; ++h)
           for (std::int64_t k = 0; k < m.k_len(b); ++k) {
             std::copy_n(d.k.begin() + rows.kv(b, h, k0 + k), p.D,
                         s.k.begin() + arows.kv(0, h, ak0 + k));
             std::copy_n(d.v.begin() + rows.kv(b, h, k0 + k), p.D,
                         s.v.begin() + arows.kv(0, h, ak0 + k));
           }
         const auto full = run(impl, c, p, d);
         // The valid rows of a result of the padded-alone problem, and of the batched one.
         auto alone_rows = [&](const AttentionResult& r) {
           AttentionResult sel;
           for (std::int64_t h = 0; h < p.H; ++h)
             for (std::int64_t q = 0; q < m.q_len(b); ++q) {
               sel.out.insert(sel.out.end(), r.out.begin() + arows.out(0, h, aq0 + q),
                              r.out.begin() + arows.out(0, h, aq0 + q) + p.D);
               if (c.want_lse) sel.lse.push_back(r.lse[arows.lse(0, h, aq0 + q)]);
             }
           return sel;
         };
         AttentionResult w;
         for (std::int64_t h = 0; h < p.H; ++h)
           for (std::int64_t q = 0; q < m.q_len(b); ++q) {
             w.out.insert(w.out.end(), full.out.begin() + rows.out(b, h, q0 + q),
                          full.out.begin() + rows.out(b, h, q0 + q) + p.D);
             if (c.want_lse) w.lse.push_back(full.lse[rows.lse(b, h, q0 + q)]);
           }
         const Shape so{{"h*q", "d"}, {p.H * m.q_len(b), p.D}}, sl{{"h*q"}, {p.H * m.q_len(b)}};
         expect_consistent("valid rows", alone_rows(run(impl, c, alone, s)), w, so, sl, c.dtype,
                           "batched run", [&] {
                             return map_expectation(
                                 attention_expectation(alone, c.dtype, s.q, s.k, s.v, c.want_lse),
                                 alone_rows);
                           });
       }});

  out.push_back({"attention.gqaEqualsRepeatedKv", Op::attention,
                 "grouped-query attention equals multi-head attention with K and V repeated",
                 [](const Implementation& impl, const CaseLimits& lim) {
                   AttentionCase c;
                   if (!draw(impl, lim, c)) return;
                   const AttentionProblem& p = c.problem;
                   if (p.Hkv == p.H) return;
                   const auto d = make_data(c);
                   AttentionProblem mha = p;
                   mha.Hkv = p.H;
                   const Rows rows{p}, mrows{mha};
                   AttentionData r{d.q, std::vector<double>(mha.kv_numel()),
                                   std::vector<double>(mha.kv_numel())};
                   const std::int64_t group = p.H / p.Hkv;
                   for (std::int64_t b = 0; b < p.mask.B; ++b)
                     for (std::int64_t h = 0; h < p.H; ++h)
                       for (std::int64_t k = 0; k < p.mask.Lk; ++k) {
                         std::copy_n(d.k.begin() + rows.kv(b, h / group, k), p.D,
                                     r.k.begin() + mrows.kv(b, h, k));
                         std::copy_n(d.v.begin() + rows.kv(b, h / group, k), p.D,
                                     r.v.begin() + mrows.kv(b, h, k));
                       }
                   expect_consistent("gqa vs repeated kv", run(impl, c, p, d), run(impl, c, mha, r),
                                     p, c.dtype, "repeated-kv run",
                                     expectation_of(mha, c.dtype, r, c.want_lse));
                 }});

  out.push_back(
      {"attention.varlenEqualsPadded", Op::attention,
       "the packed (varlen) layout with no padding, one sequence per document, gives the padded "
       "layout's valid rows",
       [](const Implementation& impl, const CaseLimits& lim) {
         AttentionCase c;
         if (!draw(impl, lim, c)) return;
         c.problem.mods = {};  // the packed layout takes no score modifiers
         const AttentionProblem& p = c.problem;
         const MaskSpec& m = p.mask;
         // The packed layout has no prefix-LM, chunk or sinks clause (VarlenAttentionProblem).
         if (m.has_prefix_or_chunk() || m.has_sink_tokens()) {
           tag_case(
               {"skipped: the packed layout (VarlenAttentionProblem) has no prefix-LM, chunk or "
                "attention-sinks clause"});
           return;
         }
         // Segments: each document, or each sequence's valid range without documents.
         struct Segment {
           std::int64_t b, q0, q_len, k0, k_len;
         };
         std::vector<Segment> segs;
         for (std::int64_t b = 0; b < m.B; ++b) {
           const std::int64_t q0 = valid_begin(m.padding, m.Lq, m.q_len(b));
           const std::int64_t k0 = valid_begin(m.padding, m.Lk, m.k_len(b));
           if (!m.has_documents()) {
             segs.push_back({b, q0, m.q_len(b), k0, m.k_len(b)});
             continue;
           }
           for (std::size_t d = 0; d + 1 < m.cu_seqlens_q[b].size(); ++d)
             segs.push_back(
                 {b, q0 + m.cu_seqlens_q[b][d], m.cu_seqlens_q[b][d + 1] - m.cu_seqlens_q[b][d],
                  k0 + m.cu_seqlens_k[b][d], m.cu_seqlens_k[b][d + 1] - m.cu_seqlens_k[b][d]});
         }
         VarlenAttentionProblem vp;
         vp.H = p.H;
         vp.Hkv = p.Hkv;
         vp.D = p.D;
         vp.causal = m.causal;
         vp.alignment = m.alignment;
         vp.window = m.window;
         vp.scale = p.effective_scale();
         vp.cu_seqlens_q = {0};
         vp.cu_seqlens_k = {0};
         for (const auto& sg : segs) {
           vp.cu_seqlens_q.push_back(static_cast<std::int32_t>(vp.cu_seqlens_q.back() + sg.q_len));
           vp.cu_seqlens_k.push_back(static_cast<std::int32_t>(vp.cu_seqlens_k.back() + sg.k_len));
         }
         if (!supported(impl.supports_attention_varlen(vp, c.dtype, c.want_lse))) return;
         const auto d = make_data(c);
         const Rows rows{p};
         const std::int64_t Tq = vp.total_q(), Tk = vp.total_k();
         std::vector<double> qp(Tq * p.H * p.D), kp(Tk * p.Hkv * p.D), vpk(Tk * p.Hkv * p.D);
         for (std::size_t s = 0; s < segs.size(); ++s) {
           const Segment& sg = segs[s];
           for (std::int64_t i = 0; i < sg.q_len; ++i)
             for (std::int64_t h = 0; h < p.H; ++h)
               std::copy_n(d.q.begin() + rows.out(sg.b, h, sg.q0 + i), p.D,
                           qp.begin() + ((vp.cu_seqlens_q[s] + i) * p.H + h) * p.D);
           for (std::int64_t j = 0; j < sg.k_len; ++j)
             for (std::int64_t h = 0; h < p.Hkv; ++h) {
               std::copy_n(d.k.begin() + rows.kv(sg.b, h, sg.k0 + j), p.D,
                           kp.begin() + ((vp.cu_seqlens_k[s] + j) * p.Hkv + h) * p.D);
               std::copy_n(d.v.begin() + rows.kv(sg.b, h, sg.k0 + j), p.D,
                           vpk.begin() + ((vp.cu_seqlens_k[s] + j) * p.Hkv + h) * p.D);
             }
         }
         const auto got = impl.attention_varlen(vp, c.dtype, qp, kp, vpk, c.want_lse);
         const auto full = run(impl, c, p, d);
         // The padded layout's valid rows in the packed layout.
         auto packed = [&](const AttentionResult& r) {
           AttentionResult w{std::vector<double>(qp.size()),
                             std::vector<double>(c.want_lse ? Tq * p.H : 0)};
           for (std::size_t s = 0; s < segs.size(); ++s) {
             const Segment& sg = segs[s];
             for (std::int64_t i = 0; i < sg.q_len; ++i)
               for (std::int64_t h = 0; h < p.H; ++h) {
                 std::copy_n(r.out.begin() + rows.out(sg.b, h, sg.q0 + i), p.D,
                             w.out.begin() + ((vp.cu_seqlens_q[s] + i) * p.H + h) * p.D);
                 if (c.want_lse)
                   w.lse[h * Tq + vp.cu_seqlens_q[s] + i] = r.lse[rows.lse(sg.b, h, sg.q0 + i)];
               }
           }
           return w;
         };
         expect_consistent("varlen", got, packed(full), Shape{{"t", "h", "d"}, {Tq, p.H, p.D}},
                           Shape{{"h", "t"}, {p.H, Tq}}, c.dtype, "padded run", [&] {
                             return map_expectation(
                                 attention_expectation(p, c.dtype, d.q, d.k, d.v, c.want_lse),
                                 packed);
                           });
       }});

  out.push_back({"attention.deterministic", Op::attention,
                 "two runs on the same inputs are bitwise identical",
                 [](const Implementation& impl, const CaseLimits& lim) {
                   AttentionCase c;
                   if (!draw(impl, lim, c)) return;
                   const auto d = make_data(c);
                   const auto a = run(impl, c, c.problem, d), b = run(impl, c, c.problem, d);
                   expect(check_exact("out", attention_out_shape(c.problem), b.out, a.out));
                   if (c.want_lse)
                     expect(check_exact("lse", attention_lse_shape(c.problem), b.lse, a.lse));
                 }});
}

// The score modifiers (problems.hpp's ScoreModifiers). Each property gives every case the
// modifier it is about (an implementation that does not apply it is skipped with the central
// reason); the rest of the catalogue meets modifiers in the cases the generators draw.
void add_attention_modifier_properties(std::vector<Property>& out) {
  out.push_back(
      {"attention.sinkLogitsLowerRowSums", Op::attention,
       "with V = 1 and a learned sink logit per head, every row with a visible key outputs "
       "exactly the weight its keys keep, 1 - e^(sink - lse), below 1 by the sink's share; a row "
       "with none still outputs exactly 0 and log-sum-exp -inf",
       [](const Implementation& impl, const CaseLimits& lim) {
         AttentionCase c;
         if (!draw(impl, lim, c)) return;
         AttentionProblem& p = c.problem;
         if (p.mods.sink_logits.empty()) {
           const double centre = draw_one_of({0.0, 2.0, -4.0, 10.0}, "sink centre");
           for (std::int64_t h = 0; h < p.H; ++h)
             p.mods.sink_logits.push_back(centre +
                                          *rc::gen::inRange(-200, 201).as("sink offset") / 100.0);
         }
         if (!supported(impl.supports_attention(p, c.dtype, c.want_lse))) return;
         auto d = make_data(c);
         std::fill(d.v.begin(), d.v.end(), 1.0);
         const auto got = run(impl, c, p, d);
         const auto exact = reference_attention(p, c.dtype, d.q, d.k, d.v, true, Precision::exact);
         const auto e = attention_expectation(p, c.dtype, d.q, d.k, d.v, c.want_lse);
         const FlatMask flat(p.mask);
         const Rows rows{p};
         std::vector<double> want(got.out.size(), 0.0), got_empty, zeros, got_empty_lse;
         for (std::int64_t b = 0; b < p.mask.B; ++b)
           for (std::int64_t h = 0; h < p.H; ++h)
             for (std::int64_t q = 0; q < p.mask.Lq; ++q) {
               const bool empty = visible_keys(flat.view(), b, q).empty();
               // The weight the row's keys keep: 1 - e^(sink - lse), lse with the sink.
               const double kept =
                   empty ? 0.0 : -std::expm1(p.mods.sink_logits[h] - exact.lse[rows.lse(b, h, q)]);
               for (std::int64_t i = 0; i < p.D; ++i) {
                 want[rows.out(b, h, q) + i] = kept;
                 if (empty) {
                   got_empty.push_back(got.out[rows.out(b, h, q) + i]);
                   zeros.push_back(0.0);
                 }
               }
               if (empty && c.want_lse) got_empty_lse.push_back(got.lse[rows.lse(b, h, q)]);
             }
         expect(check_close("out (V = 1: the weight the keys keep)", attention_out_shape(p),
                            got.out, want, e.naive.out, c.dtype, e.rounding.out));
         expect(check_exact("out of fully masked rows", Shape{{"i"}, {std::int64_t(zeros.size())}},
                            got_empty, zeros));
         expect(check_exact(
             "lse of fully masked rows", Shape{{"i"}, {std::int64_t(got_empty_lse.size())}},
             got_empty_lse,
             std::vector<double>(got_empty_lse.size(), -std::numeric_limits<double>::infinity())));
       }});

  out.push_back(
      {"attention.softcapKeepsMaskedKeysAtZero", Op::attention,
       "with logit soft-capping, huge or random finite values in K and V at any set of key "
       "positions still change no bit of the rows that cannot see those keys (capping after the "
       "mask turns its -inf into -cap and lets them in)",
       [](const Implementation& impl, const CaseLimits& lim) {
         AttentionCase c;
         if (!draw(impl, lim, c)) return;
         if (c.problem.mods.softcap == 0)
           c.problem.mods.softcap = draw_one_of({1.0, 5.0, 30.0, 50.0}, "softcap");
         if (!supported(impl.supports_attention(c.problem, c.dtype, c.want_lse))) return;
         check_masked_keys_cannot_leak(impl, c);
       }});

  out.push_back(
      {"attention.softcapSaturates", Op::attention,
       "with logit soft-capping and Q scaled by 2^40, every visible score saturates at +-cap "
       "(tanh of a huge argument is +-1): the output and log-sum-exp agree with the fp64 "
       "reference, where a tanh evaluated as a ratio of exponentials gives inf / inf = NaN (f32, "
       "bf16, f64)",
       [](const Implementation& impl, const CaseLimits& lim) {
         CaseLimits l = lim;
         std::erase_if(l.dtypes, [](DType t) { return t == DType::f16; });
         if (l.dtypes.empty()) {
           tag_case({"skipped: 2^40 q overflows f16"});
           return;
         }
         AttentionCase c;
         if (!draw(impl, l, c)) return;
         AttentionProblem& p = c.problem;
         if (p.mods.softcap == 0) p.mods.softcap = draw_one_of({1.0, 5.0, 30.0, 50.0}, "softcap");
         if (p.effective_scale() == 0) p.scale = 1.0;  // a zero scale has nothing to saturate
         if (!supported(impl.supports_attention(p, c.dtype, c.want_lse))) return;
         auto d = make_data(c);
         if (c.style == DataStyle::huge) {  // huge data times 2^40 leaves the dtype's range
           tag_case({"skipped: huge data times 2^40 overflows"});
           return;
         }
         for (double& x : d.q) x = std::ldexp(x, 40);  // exact: a power of two
         // Rows whose every visible score saturates whatever the f32 rounding of its dot: the
         // exact dot clears the dot's rounding error (D u sum |q_d k_d|, 16x over) and puts
         // scale * dot / cap past 20. A dot that cancels to about 0 (integer data) has no
         // defined side to saturate to, and its row is left out.
         const Rows rows{p};
         const FlatMask flat(p.mask);
         const double scale = p.effective_scale(), u = unit_roundoff(DType::f32);
         auto saturated = [&](std::int64_t b, std::int64_t q) {
           const RowKeys r = row_keys(flat.view(), b, q);
           bool all = true;
           for (std::int64_t h = 0; h < p.H; ++h)
             r.for_each([&](std::int64_t j) {
               double dot = 0, mag = 0;
               for (std::int64_t e = 0; e < p.D; ++e) {
                 const double x =
                     d.q[rows.out(b, h, q) + e] * d.k[rows.kv(b, h / (p.H / p.Hkv), j) + e];
                 dot += x;
                 mag += std::fabs(x);
               }
               if (std::fabs(dot) <= 16 * static_cast<double>(p.D) * u * mag ||
                   std::fabs(scale * dot) <= 20 * p.mods.softcap)
                 all = false;
             });
           return all;
         };
         const auto got = run(impl, c, p, d);
         const auto e = attention_expectation(p, c.dtype, d.q, d.k, d.v, c.want_lse);
         const Selected g = select_rows(p, got, saturated), w = select_rows(p, e.want, saturated),
                        n = select_rows(p, e.naive, saturated),
                        rb = select_rows(p, e.rounding, saturated);
         if (w.out.empty() && w.lse.empty()) {
           tag_case({"skipped: no row whose scores all saturate"});
           return;
         }
         const std::int64_t nrows = static_cast<std::int64_t>(w.out.size()) / p.D;
         expect(check_close("out (rows whose scores saturate)", Shape{{"row", "d"}, {nrows, p.D}},
                            g.out, w.out, n.out, c.dtype, rb.out));
         if (c.want_lse)
           expect(check_close("lse (rows whose scores saturate)",
                              Shape{{"row"}, {static_cast<std::int64_t>(w.lse.size())}}, g.lse,
                              w.lse, n.lse, c.dtype, rb.lse));
       }});

  out.push_back(
      {"attention.alibiEqualsPositionDimension", Op::attention,
       "causal ALiBi equals attention without it over one more head dimension, the query's "
       "holding slope_h / scale and the key's its position j: slope_h j differs from "
       "-slope_h |j - diag| by a constant per row (f32 and f64)",
       [](const Implementation& impl, const CaseLimits& lim) {
         CaseLimits l = lim;
         std::erase_if(l.dtypes, [](DType t) { return t != DType::f32 && t != DType::f64; });
         if (l.dtypes.empty()) {
           tag_case({"skipped: key positions are exact in f32 and f64 only"});
           return;
         }
         AttentionCase c;
         if (!draw(impl, l, c)) return;
         AttentionProblem& p = c.problem;
         // Causal, so every visible key lies at or before the diagonal; no cap or sink (neither
         // commutes with a shift of the row's scores); powers of two for the scale and slopes,
         // so that the query's extra component slope / scale is exact.
         p.mask.causal = true;
         p.mask.prefix_lens.clear();
         p.mods.softcap = 0;
         p.mods.sink_logits.clear();
         p.scale = std::exp2(std::round(std::log2(1 / std::sqrt(double(p.D)))));
         p.mods.alibi_slopes.clear();
         for (std::int64_t h = 0; h < p.H; ++h)
           p.mods.alibi_slopes.push_back(
               std::exp2(-*rc::gen::inRange(1, 9).as("ALiBi slope exponent")));
         AttentionProblem folded = p;
         folded.mods = {};
         folded.D = p.D + 1;
         if (!supported(impl.supports_attention(p, c.dtype, c.want_lse)) ||
             !supported(impl.supports_attention(folded, c.dtype, c.want_lse)))
           return;
         tag_case(p.mask, c.dtype);
         const auto d = make_data(c);
         const Rows rows{p}, frows{folded};
         AttentionData f;
         f.q.assign(static_cast<std::size_t>(folded.q_numel()), 0.0);
         f.k.assign(static_cast<std::size_t>(folded.kv_numel()), 0.0);
         f.v.assign(f.k.size(), 0.0);
         const double scale = *p.scale;
         for (std::int64_t b = 0; b < p.mask.B; ++b) {
           for (std::int64_t h = 0; h < p.H; ++h)
             for (std::int64_t q = 0; q < p.mask.Lq; ++q) {
               std::copy_n(d.q.begin() + rows.out(b, h, q), p.D, f.q.begin() + frows.out(b, h, q));
               f.q[frows.out(b, h, q) + p.D] = p.mods.alibi_slopes[h] / scale;
             }
           for (std::int64_t h = 0; h < p.Hkv; ++h)
             for (std::int64_t j = 0; j < p.mask.Lk; ++j) {
               std::copy_n(d.k.begin() + rows.kv(b, h, j), p.D, f.k.begin() + frows.kv(b, h, j));
               std::copy_n(d.v.begin() + rows.kv(b, h, j), p.D, f.v.begin() + frows.kv(b, h, j));
               f.k[frows.kv(b, h, j) + p.D] = static_cast<double>(j);
             }
         }
         const auto got = run(impl, c, p, d);
         const auto fold = run(impl, c, folded, f);
         // A folded result's rows without the extra output column, its lse moved back by the
         // row's constant slope_h diag.
         const FlatMask flat(p.mask);
         auto unfold = [&](const AttentionResult& r, bool shift = true) {
           AttentionResult u;
           u.out.assign(got.out.size(), 0.0);
           u.lse = r.lse;
           for (std::int64_t b = 0; b < p.mask.B; ++b)
             for (std::int64_t h = 0; h < p.H; ++h)
               for (std::int64_t q = 0; q < p.mask.Lq; ++q) {
                 std::copy_n(r.out.begin() + frows.out(b, h, q), p.D,
                             u.out.begin() + rows.out(b, h, q));
                 if (shift && !u.lse.empty() && !visible_keys(flat.view(), b, q).empty())
                   u.lse[rows.lse(b, h, q)] -=
                       p.mods.alibi_slopes[h] *
                       static_cast<double>(query_diagonal(flat.view(), b, q));
               }
           return u;
         };
         expect_consistent("ALiBi vs position dimension", got, unfold(fold), p, c.dtype,
                           "run with the position dimension", [&] {
                             const auto e =
                                 attention_expectation(folded, c.dtype, f.q, f.k, f.v, c.want_lse);
                             // A rounding bound is a magnitude: not shifted.
                             return AttentionExpectation{unfold(e.want), unfold(e.naive),
                                                         unfold(e.rounding, false)};
                           });
       }});
}

// A paged KV cache (problems.hpp's PagedKv) holding the keys and values of `d` for problem p:
// pages of `page_size` tokens in a random order among `extra` unused ones, table entries past a
// sequence's pages -1 or a random page, and every slot no key fills (unused pages, the tail of a
// sequence's last page) holding `garbage`.
struct PagedData {
  PagedKv kv;
  std::vector<double> k_cache, v_cache;
  std::vector<std::uint8_t> used;  // [num_pages * page_size]: a slot some key fills
};
PagedData make_paged(const AttentionProblem& p, const AttentionData& d, std::int64_t page_size,
                     std::int64_t extra, std::uint64_t seed, double garbage) {
  const MaskSpec& m = p.mask;
  PagedData out;
  PagedKv& kv = out.kv;
  kv.page_size = page_size;
  kv.max_pages = PagedKv::pages_of(m.Lk, page_size);
  std::int64_t total = 0;
  for (std::int64_t b = 0; b < m.B; ++b) total += PagedKv::pages_of(m.k_len(b), page_size);
  kv.num_pages = total + extra;
  DataRng rng(seed);
  std::vector<std::int32_t> order(static_cast<std::size_t>(kv.num_pages));
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = static_cast<std::int32_t>(i);
  for (std::size_t i = order.size(); i > 1; --i)
    std::swap(order[i - 1],
              order[static_cast<std::size_t>(rng.below(static_cast<std::int64_t>(i)))]);
  kv.block_table.assign(static_cast<std::size_t>(m.B * kv.max_pages), -1);
  std::size_t next = 0;
  for (std::int64_t b = 0; b < m.B; ++b)
    for (std::int64_t i = 0; i < kv.max_pages; ++i) {
      auto& e = kv.block_table[static_cast<std::size_t>(b * kv.max_pages + i)];
      if (i < PagedKv::pages_of(m.k_len(b), page_size))
        e = order[next++];
      else if (kv.num_pages > 0 && rng.below(2) == 0)
        e = static_cast<std::int32_t>(rng.below(kv.num_pages));  // never read
    }
  const std::int64_t Hkv = p.Hkv, D = p.D;
  out.k_cache.assign(static_cast<std::size_t>(kv.cache_numel(p)), garbage);
  out.v_cache = out.k_cache;
  out.used.assign(static_cast<std::size_t>(kv.num_pages * page_size), 0);
  const Rows rows{p};
  for (std::int64_t b = 0; b < m.B; ++b)
    for (std::int64_t j = 0; j < m.k_len(b); ++j) {
      const std::int64_t slot = kv.slot(b, j);
      out.used[static_cast<std::size_t>(slot)] = 1;
      for (std::int64_t h = 0; h < Hkv; ++h) {
        std::copy_n(d.k.begin() + rows.kv(b, h, j), D, out.k_cache.begin() + (slot * Hkv + h) * D);
        std::copy_n(d.v.begin() + rows.kv(b, h, j), D, out.v_cache.begin() + (slot * Hkv + h) * D);
      }
    }
  return out;
}

void add_attention_paged_properties(std::vector<Property>& out) {
  out.push_back(
      {"attention.splitKvMergesToUnsplit", Op::attention,
       "the keys split into chunks at any points (empty chunks and chunks no row sees included), "
       "each chunk's output and log-sum-exp merged by the log-sum-exp rule (a sink logit as one "
       "more chunk with output 0), give the unsplit output and log-sum-exp; a chunk where a row "
       "sees no key must give log-sum-exp -inf and output 0, never NaN",
       [](const Implementation& impl, const CaseLimits& lim) {
         AttentionCase c;
         if (!draw(impl, lim, c)) return;
         const AttentionProblem& p = c.problem;
         if (!impl.attention_lse()) {
           tag_case({"skipped: split-KV merging needs the log-sum-exp"});
           return;
         }
         c.want_lse = true;
         if (!supported(impl.supports_attention(p, c.dtype, true)) ||
             !supported(impl.supports_attention_chunk(p, c.dtype)))
           return;
         const MaskSpec& m = p.mask;
         const auto chunks = *rc::gen::inRange<int>(1, 6).as("chunks");
         std::vector<std::int64_t> cuts{0, m.Lk};
         for (int i = 1; i < chunks; ++i)
           cuts.push_back(*rc::gen::inRange<std::int64_t>(0, m.Lk + 1).as("cut"));
         std::sort(cuts.begin(), cuts.end());
         const auto d = make_data(c);
         std::vector<AttentionResult> parts;
         for (std::size_t i = 0; i + 1 < cuts.size(); ++i)
           parts.push_back(impl.attention_chunk(p, c.dtype, d.q, d.k, d.v, cuts[i], cuts[i + 1]));
         const Rows rows{p};
         const FlatMask flat(m);
         const bool sinks = !p.mods.sink_logits.empty();
         std::vector<double> got_lse_bad, empty_out;
         AttentionResult merged;
         merged.out.assign(static_cast<std::size_t>(p.q_numel()), 0.0);
         merged.lse.assign(static_cast<std::size_t>(p.lse_numel()), 0.0);
         for (std::int64_t b = 0; b < m.B; ++b)
           for (std::int64_t h = 0; h < p.H; ++h)
             for (std::int64_t q = 0; q < m.Lq; ++q) {
               std::vector<double> outs, lses;
               for (const auto& part : parts) {
                 const double l = part.lse[rows.lse(b, h, q)];
                 outs.insert(outs.end(), part.out.begin() + rows.out(b, h, q),
                             part.out.begin() + rows.out(b, h, q) + p.D);
                 lses.push_back(l);
                 // A chunk where the row sees no key: lse -inf (NaN and +inf are no lse) and an
                 // output of exact zeros (the merge gives it weight 0, so check it here).
                 if (std::isnan(l) || l == std::numeric_limits<double>::infinity()) {
                   got_lse_bad.push_back(l);
                 } else if (l == -std::numeric_limits<double>::infinity()) {
                   empty_out.insert(empty_out.end(), part.out.begin() + rows.out(b, h, q),
                                    part.out.begin() + rows.out(b, h, q) + p.D);
                 }
               }
               if (sinks && !visible_keys(flat.view(), b, q).empty()) {
                 outs.insert(outs.end(), static_cast<std::size_t>(p.D), 0.0);
                 lses.push_back(p.mods.sink_logits[static_cast<std::size_t>(h)]);
               }
               double lse = 0;
               ref::merge_partials<double>(outs, lses,
                                           std::span<double>(merged.out.data() + rows.out(b, h, q),
                                                             static_cast<std::size_t>(p.D)),
                                           lse);
               merged.lse[rows.lse(b, h, q)] = lse;
             }
         tag_case({"split-kv", std::to_string(parts.size()) + " chunks"});
         expect(got_lse_bad.empty(),
                std::to_string(got_lse_bad.size()) +
                    " chunk rows with log-sum-exp NaN or +inf (a chunk without a visible key has "
                    "-inf), the first " +
                    (got_lse_bad.empty() ? std::string() : std::to_string(got_lse_bad[0])));
         expect(check_exact("out of chunk rows that see no key",
                            Shape{{"i"}, {static_cast<std::int64_t>(empty_out.size())}}, empty_out,
                            std::vector<double>(empty_out.size(), 0.0)));
         expect_consistent("merged split-KV chunks", merged, run(impl, c, p, d), p, c.dtype,
                           "unsplit run", expectation_of(p, c.dtype, d, true));
       }});

  out.push_back(
      {"attention.pagedEqualsContiguous", Op::attention,
       "attention over a paged KV cache (pages of 1 to 256 tokens in any order, unused pages and "
       "table entries among them) equals attention over the same keys laid out contiguously; "
       "NaN, then huge values, in every slot no key fills (unused pages, the tail of the last "
       "page) change no bit",
       [](const Implementation& impl, const CaseLimits& lim) {
         AttentionCase c;
         if (!draw(impl, lim, c)) return;
         AttentionProblem& p = c.problem;
         p.mask.padding = PaddingSide::right;  // a cache holds each sequence's keys from 0
         const auto page_size =
             static_cast<std::int64_t>(draw_one_of({16, 1, 2, 3, 64, 256}, "page size"));
         const auto extra = *rc::gen::inRange<std::int64_t>(0, 4).as("unused pages");
         const auto seed = *rc::gen::arbitrary<std::uint64_t>().as("page order seed");
         const auto d = make_data(c);
         const double nan = std::numeric_limits<double>::quiet_NaN();
         const PagedData paged = make_paged(p, d, page_size, extra, seed, nan);
         if (!supported(impl.supports_attention(p, c.dtype, c.want_lse)) ||
             !supported(impl.supports_attention_paged(p, paged.kv, c.dtype, c.want_lse)))
           return;
         tag_case({"paged", "page=" + std::to_string(page_size)});
         const auto got = impl.attention_paged(p, paged.kv, c.dtype, d.q, paged.k_cache,
                                               paged.v_cache, c.want_lse);
         expect_consistent("paged vs contiguous", got, run(impl, c, p, d), p, c.dtype,
                           "contiguous run", expectation_of(p, c.dtype, d, c.want_lse));
         // The unfilled slots' contents: another garbage changes no bit.
         PagedData other = paged;
         for (std::size_t s = 0; s < other.used.size(); ++s)
           if (!other.used[s])
             for (std::int64_t e = 0; e < p.Hkv * p.D; ++e) {
               const std::size_t i = s * static_cast<std::size_t>(p.Hkv * p.D) + e;
               other.k_cache[i] = round_to(c.dtype, max_finite(c.dtype) / 2);
               other.v_cache[i] = round_to(c.dtype, -max_finite(c.dtype) / 2);
             }
         const auto again = impl.attention_paged(p, other.kv, c.dtype, d.q, other.k_cache,
                                                 other.v_cache, c.want_lse);
         expect(check_exact("out (other garbage in unfilled slots)", attention_out_shape(p),
                            again.out, got.out));
         if (c.want_lse)
           expect(check_exact("lse (other garbage in unfilled slots)", attention_lse_shape(p),
                              again.lse, got.lse));
       }});
}

}  // namespace maskcheck
