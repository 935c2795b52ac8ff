#include "maskcheck/suite/deviations.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "maskcheck/reference/attention.hpp"
#include "maskcheck/reference/masks.hpp"
#include "maskcheck/suite/cases.hpp"
#include "maskcheck/suite/properties.hpp"
#include "maskcheck/suite/reference_impl.hpp"

namespace maskcheck {

const std::vector<DeviationPolicy>& deviation_catalogue() {
  static const std::vector<DeviationPolicy> catalogue = {
      {"fully_masked_row_nan",
       {Op::softmax, Op::attention},
       "a query with no visible key is NaN in every element instead of zeros (softmax of an "
       "all -inf row: torch.softmax(x + mask), SDPA before PyTorch 2.5)"},
      {"empty_row_lse",
       {Op::attention},
       "the log-sum-exp of a fully masked row is +inf (FlashAttention) or 0 (PyTorch's CPU flash "
       "kernel) instead of -inf; NaN is never accepted"},
      {"all_ignored_mean_nan",
       {Op::cross_entropy},
       "cross-entropy with reduction mean over rows that are all ignored is NaN (0 / 0, "
       "torch.nn.functional.cross_entropy) instead of 0, and its gradient zero or NaN instead of "
       "zero"},
      {"top_left_causal",
       {Op::softmax, Op::attention},
       "causal masks and windows aligned top-left (k <= q, PyTorch is_causal=True) where "
       "bottom-right was asked for; visible only where a segment has q_len != k_len"},
  };
  return catalogue;
}

namespace {

thread_local std::map<std::string, int> t_ledger;

constexpr double kInf = std::numeric_limits<double>::infinity();

// 1 where query q of sequence b sees no key: [B, Lq].
std::vector<std::uint8_t> empty_rows(const MaskSpec& m) {
  const std::vector<std::uint8_t> keep = ref::build_keep_mask(m);
  std::vector<std::uint8_t> empty(static_cast<std::size_t>(m.B * m.Lq), 1);
  for (std::int64_t r = 0; r < m.B * m.Lq; ++r)
    for (std::int64_t k = 0; k < m.Lk && empty[r]; ++k)
      if (keep[r * m.Lk + k]) empty[r] = 0;
  return empty;
}

// Whether top-left and bottom-right alignment give different masks: a causal mask or a window,
// asked bottom-right, over some segment (a sequence's valid range or a document) with
// q_len != k_len.
bool alignment_matters(const MaskSpec& m) {
  if ((!m.causal && !m.window) || m.alignment != Alignment::bottom_right) return false;
  for (std::int64_t b = 0; b < m.B; ++b) {
    if (m.has_documents()) {
      const auto& cq = m.cu_seqlens_q[b];
      const auto& ck = m.cu_seqlens_k[b];
      for (std::size_t i = 0; i + 1 < cq.size(); ++i)
        if (cq[i + 1] - cq[i] != ck[i + 1] - ck[i]) return true;
    } else if (m.q_len(b) != m.k_len(b)) {
      return true;
    }
  }
  return false;
}

// Rows of `row_len` elements: those that `is_empty(row)` says are fully masked and are NaN in every
// element become zeros. Returns how many, and the first one's index. A fully masked row of zeros
// some of which are -0 (0 * v with v < 0) is the contract's zero row: it becomes +0 silently, so
// that a property comparing bits does not read the sign of a masked value into it.
template <class IsEmpty>
std::int64_t zero_nan_rows(std::vector<double>& y, std::int64_t row_len, IsEmpty is_empty,
                           std::int64_t& first) {
  std::int64_t n = 0;
  if (row_len == 0) return 0;
  const auto rows = static_cast<std::int64_t>(y.size()) / row_len;
  for (std::int64_t r = 0; r < rows; ++r) {
    if (!is_empty(r)) continue;
    double* row = y.data() + r * row_len;
    bool all_nan = true, all_zero = true;
    for (std::int64_t i = 0; i < row_len; ++i) {
      all_nan = all_nan && std::isnan(row[i]);
      all_zero = all_zero && row[i] == 0.0;
    }
    if (all_zero) std::fill(row, row + row_len, 0.0);
    if (!all_nan) continue;
    std::fill(row, row + row_len, 0.0);
    if (n++ == 0) first = r;
  }
  return n;
}

// LSE entries of empty rows that are +inf or 0 become -inf, where the row's output is exactly
// zero (`zero_row(r)`). Returns how many.
template <class IsEmpty, class ZeroRow>
std::int64_t fix_empty_lse(std::vector<double>& lse, IsEmpty is_empty, ZeroRow zero_row,
                           std::int64_t& first) {
  std::int64_t n = 0;
  for (std::int64_t r = 0; r < static_cast<std::int64_t>(lse.size()); ++r) {
    if (!is_empty(r) || !(lse[r] == kInf || lse[r] == 0.0) || !zero_row(r)) continue;
    lse[r] = -kInf;
    if (n++ == 0) first = r;
  }
  return n;
}

std::string count_text(std::int64_t n, const std::string& what) {
  return std::to_string(n) + " " + what + (n == 1 ? "" : "s");
}

// The error ledger records the largest errors of the property's own checks; the filter's checks
// must not appear there.
class LedgerGuard {
 public:
  LedgerGuard() : saved_(error_ledger()) {}
  ~LedgerGuard() { restore_error_ledger(saved_); }
  LedgerGuard(const LedgerGuard&) = delete;
  LedgerGuard& operator=(const LedgerGuard&) = delete;

 private:
  std::vector<ErrorRecord> saved_;
};

// Agreement row by row: 1 where a row of `row_len` elements of `got` passes check_close against
// that row of the references alone, with the row's own bound. One tensor-wide bound would let a
// row of huge values (K and V near the dtype's maximum, where the naive reference overflows)
// widen every row's bound until any output agrees. `rounding`: check_close's per-element rounding
// bounds, or empty.
std::vector<std::uint8_t> rows_agree(std::span<const double> got, std::span<const double> want,
                                     std::span<const double> naive, std::int64_t row_len, DType t,
                                     std::span<const double> rounding = {}) {
  if (row_len <= 0) return {};
  const Shape row{{"i"}, {row_len}};
  std::vector<std::uint8_t> ok(got.size() / static_cast<std::size_t>(row_len));
  for (std::size_t r = 0; r < ok.size(); ++r) {
    const std::size_t at = r * static_cast<std::size_t>(row_len);
    const auto n = static_cast<std::size_t>(row_len);
    ok[r] = check_close("row", row, got.subspan(at, n), want.subspan(at, n), naive.subspan(at, n),
                        t, rounding.empty() ? rounding : rounding.subspan(at, n))
                .ok;
  }
  return ok;
}

void and_rows(std::vector<std::uint8_t>& a, const std::vector<std::uint8_t>& b) {
  for (std::size_t r = 0; r < a.size(); ++r) a[r] = a[r] && b[r];
}

// Whether rows agreeing with the top-left reference (tl) where bottom-right (br) was asked are
// evidence of top-left alignment: every row agrees with top-left, and some row that disagrees
// with bottom-right has a top-left answer that a row seeing no key (zeros, lse -inf) would not
// match. A wrong all-zero row agrees within atol with any top-left row of tiny values: no
// evidence.
bool top_left_evidence(const std::vector<std::uint8_t>& br, const std::vector<std::uint8_t>& tl,
                       const std::vector<std::uint8_t>& tl_takes_empty) {
  bool evidence = false;
  for (std::size_t r = 0; r < tl.size(); ++r) {
    if (!tl[r]) return false;
    evidence = evidence || (!br[r] && !tl_takes_empty[r]);
  }
  return evidence;
}

// Whether some row agrees with bottom-right and not with top-left: the call shows which
// alignment the implementation uses.
bool discriminates(const std::vector<std::uint8_t>& br, const std::vector<std::uint8_t>& tl) {
  for (std::size_t r = 0; r < br.size(); ++r)
    if (br[r] && !tl[r]) return true;
  return false;
}

// Whether `row_len` elements of `out` from `row * row_len` are all zero.
bool zero_row(const std::vector<double>& out, std::int64_t row, std::int64_t row_len) {
  for (std::int64_t i = row * row_len; i < (row + 1) * row_len; ++i)
    if (out[static_cast<std::size_t>(i)] != 0.0) return false;
  return true;
}

}  // namespace

void reset_deviation_ledger() {
  t_ledger.clear();
}

std::map<std::string, int> deviation_ledger() {
  return t_ledger;
}

void DeviationFilter::note_alignment(Seen now, const std::string& where) const {
  if (alignment_ != Seen::nothing && alignment_ != now)
    throw DeviationError(
        std::string("alignment inconsistent across the run: ") +
        (now == Seen::top_left ? "top-left" : "bottom-right") + " here (" + where + "), " +
        (alignment_ == Seen::top_left ? "top-left" : "bottom-right") + " in an earlier case (" +
        alignment_where_ +
        "); top_left_causal is a convention only for an implementation that is top-left "
        "throughout");
  if (alignment_ == Seen::nothing) alignment_where_ = where;
  alignment_ = now;
}

void DeviationFilter::observe(const std::string& name, const std::string& where) const {
  if (strict_)
    throw DeviationError("deviation " + name +
                         " (strict mode fails every named deviation): " + where);
  ++t_ledger[name];
}

std::vector<double> DeviationFilter::softmax(const SoftmaxProblem& p, DType t,
                                             std::span<const double> x) const {
  std::vector<double> y = inner().softmax(p, t, x);
  if (static_cast<std::int64_t>(y.size()) != p.numel()) return y;  // the properties say so
  const MaskSpec& m = p.mask;
  const Shape shape = softmax_shape(p);
  if (alignment_matters(m)) {
    LedgerGuard guard;
    const auto br = rows_agree(y, reference_softmax(p, t, x, Precision::exact),
                               reference_softmax(p, t, x, Precision::naive), m.Lk, t);
    const bool all_br = std::count(br.begin(), br.end(), 0) == 0;
    if (!all_br || alignment_ != Seen::bottom_right) {
      SoftmaxProblem tl = p;
      tl.mask.alignment = Alignment::top_left;
      const auto want = reference_softmax(tl, t, x, Precision::exact);
      const auto naive = reference_softmax(tl, t, x, Precision::naive);
      const auto tl_ok = rows_agree(y, want, naive, m.Lk, t);
      const std::vector<double> empty_out(y.size(), 0.0);
      if (!all_br && top_left_evidence(br, tl_ok, rows_agree(empty_out, want, naive, m.Lk, t))) {
        note_alignment(Seen::top_left, describe(m));
        observe("top_left_causal",
                "the output agrees with the top-left aligned mask, not the "
                "bottom-right one asked for");
        return ReferenceImplementation().softmax(p, t, x);
      }
      if (all_br && discriminates(br, tl_ok)) note_alignment(Seen::bottom_right, describe(m));
    }
  }
  const auto empty = empty_rows(m);
  std::int64_t first = 0;
  // Row r of [B, H, Lq] is query r % Lq of sequence r / (H * Lq).
  const auto is_empty = [&](std::int64_t r) { return empty[r / (p.H * m.Lq) * m.Lq + r % m.Lq]; };
  if (const auto n = zero_nan_rows(y, m.Lk, is_empty, first); n > 0)
    observe("fully_masked_row_nan", count_text(n, "fully masked row") + " all NaN, first " +
                                        shape.coords(first * m.Lk) + " (the contract: zeros)");
  return y;
}

AttentionResult DeviationFilter::attention(const AttentionProblem& p, DType t,
                                           std::span<const double> q, std::span<const double> k,
                                           std::span<const double> v, bool want_lse) const {
  return filter_attention(p, t, q, k, v, want_lse, inner().attention(p, t, q, k, v, want_lse));
}

AttentionResult DeviationFilter::attention_paged(const AttentionProblem& p, const PagedKv& kv,
                                                 DType t, std::span<const double> q,
                                                 std::span<const double> k_cache,
                                                 std::span<const double> v_cache,
                                                 bool want_lse) const {
  AttentionResult r = inner().attention_paged(p, kv, t, q, k_cache, v_cache, want_lse);
  validate_paged_inputs(p, kv, q.size(), k_cache.size(), v_cache.size());
  const auto k = ref::gather_paged(p, kv, k_cache), v = ref::gather_paged(p, kv, v_cache);
  return filter_attention(p, t, q, k, v, want_lse, std::move(r));
}

AttentionResult DeviationFilter::filter_attention(const AttentionProblem& p, DType t,
                                                  std::span<const double> q,
                                                  std::span<const double> k,
                                                  std::span<const double> v, bool want_lse,
                                                  AttentionResult r) const {
  if (static_cast<std::int64_t>(r.out.size()) != p.q_numel() ||
      (want_lse && static_cast<std::int64_t>(r.lse.size()) != p.lse_numel()))
    return r;
  const MaskSpec& m = p.mask;
  // Alignment first, on the raw result: a top-left result has LSE values (0, finite) in rows that
  // are empty bottom-right, which the empty-row normalization below must not touch.
  if (alignment_matters(m)) {
    LedgerGuard guard;
    // Output and log-sum-exp together: with tiny values the outputs of the two alignments can
    // agree while the rows that see no key (LSE -inf) differ.
    const auto agrees = [&](const AttentionResult& got, const AttentionProblem& ap) {
      const auto e = attention_expectation(ap, t, q, k, v, want_lse);
      auto ok = rows_agree(got.out, e.want.out, e.naive.out, p.D, t, e.rounding.out);
      if (want_lse)
        and_rows(ok, rows_agree(got.lse, e.want.lse, e.naive.lse, 1, t, e.rounding.lse));
      return ok;
    };
    const auto br = agrees(r, p);
    const bool all_br = std::count(br.begin(), br.end(), 0) == 0;
    if (!all_br || alignment_ != Seen::bottom_right) {
      AttentionProblem tl = p;
      tl.mask.alignment = Alignment::top_left;
      const auto tl_ok = agrees(r, tl);
      AttentionResult empty;
      empty.out.assign(r.out.size(), 0.0);
      empty.lse.assign(r.lse.size(), -kInf);
      if (!all_br && top_left_evidence(br, tl_ok, agrees(empty, tl))) {
        note_alignment(Seen::top_left, describe(m));
        observe("top_left_causal",
                "the output agrees with the top-left aligned mask, not the "
                "bottom-right one asked for");
        return ReferenceImplementation().attention(p, t, q, k, v, want_lse);
      }
      if (all_br && discriminates(br, tl_ok)) note_alignment(Seen::bottom_right, describe(m));
    }
  }
  const auto empty = empty_rows(m);
  // Row r of [B, H, Lq] is query r % Lq of sequence r / (H * Lq).
  const auto is_empty = [&](std::int64_t row) {
    return empty[row / (p.H * m.Lq) * m.Lq + row % m.Lq];
  };
  std::int64_t first = 0;
  if (const auto n = zero_nan_rows(r.out, p.D, is_empty, first); n > 0)
    observe("fully_masked_row_nan", count_text(n, "fully masked row") + " all NaN, first " +
                                        attention_out_shape(p).coords(first * p.D) +
                                        " (the contract: zeros)");
  if (want_lse)
    if (const auto n = fix_empty_lse(
            r.lse, is_empty, [&](std::int64_t row) { return zero_row(r.out, row, p.D); }, first);
        n > 0)
      observe("empty_row_lse", count_text(n, "fully masked row") + " with lse +inf or 0, first " +
                                   attention_lse_shape(p).coords(first) + " (the contract: -inf)");
  return r;
}

AttentionResult DeviationFilter::attention_varlen(const VarlenAttentionProblem& p, DType t,
                                                  std::span<const double> q,
                                                  std::span<const double> k,
                                                  std::span<const double> v, bool want_lse) const {
  AttentionResult r = inner().attention_varlen(p, t, q, k, v, want_lse);
  const std::int64_t T = p.total_q();
  if (static_cast<std::int64_t>(r.out.size()) != T * p.H * p.D ||
      (want_lse && static_cast<std::int64_t>(r.lse.size()) != p.H * T))
    return r;
  // Packed row t of sequence b is query t - cu_seqlens_q[b] of the padded (right-padded) problem.
  const AttentionProblem padded = p.padded();
  if (alignment_matters(padded.mask)) {
    LedgerGuard guard;
    const ReferenceImplementation reference;
    const Shape shape{{"t", "h", "d"}, {T, p.H, p.D}};
    const auto want = reference.attention_varlen(p, t, q, k, v, want_lse);
    if (!check_consistent("out", shape, r.out, want.out, t).ok) {
      VarlenAttentionProblem tl = p;
      tl.alignment = Alignment::top_left;
      if (check_consistent("out", shape, r.out,
                           reference.attention_varlen(tl, t, q, k, v, false).out, t)
              .ok) {
        note_alignment(Seen::top_left, "varlen " + describe(padded.mask));
        observe("top_left_causal",
                "the output agrees with the top-left aligned mask, not the "
                "bottom-right one asked for");
        return want;
      }
    }
  }
  const auto empty = empty_rows(padded.mask);
  std::vector<std::uint8_t> token_empty(static_cast<std::size_t>(T));
  for (std::int64_t b = 0; b < p.batch(); ++b)
    for (std::int64_t tok = p.cu_seqlens_q[b]; tok < p.cu_seqlens_q[b + 1]; ++tok)
      token_empty[tok] = empty[b * padded.mask.Lq + (tok - p.cu_seqlens_q[b])];
  std::int64_t first = 0;
  // out rows are [T_q, H]; lse is [H, T_q].
  if (const auto n = zero_nan_rows(
          r.out, p.D, [&](std::int64_t row) { return token_empty[row / p.H]; }, first);
      n > 0)
    observe("fully_masked_row_nan", count_text(n, "fully masked row") + " all NaN, first token " +
                                        std::to_string(first / p.H) + " head " +
                                        std::to_string(first % p.H) + " (the contract: zeros)");
  if (want_lse)
    // lse is [H, T_q]; out rows [T_q, H]: lse entry h * T + tok is out row tok * H + h.
    if (const auto n = fix_empty_lse(
            r.lse, [&](std::int64_t i) { return token_empty[i % T]; },
            [&](std::int64_t i) { return zero_row(r.out, (i % T) * p.H + i / T, p.D); }, first);
        n > 0)
      observe("empty_row_lse", count_text(n, "fully masked row") +
                                   " with lse +inf or 0, first head " + std::to_string(first / T) +
                                   " token " + std::to_string(first % T) + " (the contract: -inf)");
  return r;
}

LossResult DeviationFilter::cross_entropy(const LossProblem& p, DType t,
                                          std::span<const double> logits,
                                          std::span<const std::int64_t> labels,
                                          std::span<const double> weights, bool backward) const {
  LossResult r = inner().cross_entropy(p, t, logits, labels, weights, backward);
  if (p.reduction != Reduction::mean || !std::isnan(r.loss)) return r;
  for (const auto y : labels)
    if (y != p.ignore_index) return r;  // some row contributes: NaN is a failure
  bool grad_nan_or_zero = true;
  for (const double g : r.dlogits) grad_nan_or_zero = grad_nan_or_zero && (std::isnan(g) || g == 0);
  if (!grad_nan_or_zero) return r;  // a nonzero gradient is a failure
  observe("all_ignored_mean_nan",
          "mean over " + std::to_string(p.N) + " rows, all ignored, is NaN (the contract: 0)");
  r.loss = 0;
  std::fill(r.dlogits.begin(), r.dlogits.end(), 0.0);
  return r;
}

}  // namespace maskcheck
