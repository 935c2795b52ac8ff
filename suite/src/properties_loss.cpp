// Properties of masked cross-entropy (forward and backward).
#include <rapidcheck.h>
#include <bit>
#include <cmath>
#include <limits>

#include "maskcheck/suite/properties.hpp"
#include "maskcheck/suite/reference_impl.hpp"

namespace maskcheck {
namespace {

bool draw(const Implementation& impl, const CaseLimits& lim, LossCase& c) {
  c = *gen_loss_case(lim).as("case");
  if (!supported(impl.supports_cross_entropy(c.problem, c.dtype))) return false;
  tag_case({std::string(to_string(c.dtype)), "reduction=" + to_string(c.problem.reduction)});
  if (c.ignored_fraction == 1.0 && c.problem.N > 0) tag_case({"all-ignored"});
  if (c.problem.weighted) tag_case({"weighted"});
  if (c.problem.label_smoothing > 0) tag_case({"label-smoothing"});
  return true;
}

LossResult run(const Implementation& impl, const LossCase& c, const LossProblem& p,
               const LossData& d, bool backward = true) {
  return impl.cross_entropy(p, c.dtype, d.logits, d.labels, d.weights, backward);
}

// A case for the backward with an upstream gradient, and its grad_output: [N] for reduction none,
// [1] otherwise, drawn like values of the case's style (huge as large: gradients are not bounded
// by the inputs) in its dtype.
// ignored_rows_view: reduction none with some ignored rows (drawn cases without any get half of
// their rows ignored), for the properties about ignored rows' upstream gradients.
bool draw_upstream(const Implementation& impl, const CaseLimits& lim, LossCase& c,
                   std::vector<double>& grad_output, bool ignored_rows_view = false) {
  c = *gen_loss_case(lim).as("case");
  if (ignored_rows_view) {
    c.problem.reduction = Reduction::none;
    if (c.ignored_fraction == 0.0) c.ignored_fraction = 0.5;
  }
  if (!supported(impl.supports_cross_entropy_upstream(c.problem, c.dtype))) return false;
  tag_case({std::string(to_string(c.dtype)), "reduction=" + to_string(c.problem.reduction)});
  if (c.ignored_fraction > 0 && c.problem.N > 0) tag_case({"ignored rows"});
  DataRng rng(c.data_seed ^ 0xbb67ae8584caa73bULL);
  const DataStyle style = c.style == DataStyle::huge ? DataStyle::large : c.style;
  const std::size_t n = c.problem.reduction == Reduction::none
                            ? static_cast<std::size_t>(c.problem.N)
                            : std::size_t{1};
  grad_output = draw_values(rng, n, style, c.dtype, 3.0, 12.0);
  return true;
}

std::vector<double> scalars(const LossResult& r) {
  return {r.loss, static_cast<double>(r.count), r.weight_sum};
}
const Shape kScalars{{"loss|count|weight_sum"}, {3}};

}  // namespace

void add_loss_properties(std::vector<Property>& out) {
  out.push_back(
      {"cross_entropy.agreesWithReference", Op::cross_entropy,
       "loss, per-row losses, contributing count and dlogits agree with the fp64 reference",
       [](const Implementation& impl, const CaseLimits& lim) {
         LossCase c;
         if (!draw(impl, lim, c)) return;
         const auto d = make_data(c);
         const LossProblem& p = c.problem;
         const auto got = run(impl, c, p, d);
         const auto want = reference_cross_entropy(p, c.dtype, d.logits, d.labels, d.weights, true,
                                                   Precision::exact);
         const auto naive = reference_cross_entropy(p, c.dtype, d.logits, d.labels, d.weights, true,
                                                    Precision::naive);
         expect(got.count == want.count,
                "count " + std::to_string(got.count) + ", want " + std::to_string(want.count));
         expect(check_close("loss", Shape{{"loss"}, {1}}, std::vector<double>{got.loss},
                            std::vector<double>{want.loss}, std::vector<double>{naive.loss},
                            c.dtype));
         expect(check_close(
             "weight_sum", Shape{{"weight_sum"}, {1}}, std::vector<double>{got.weight_sum},
             std::vector<double>{want.weight_sum}, std::vector<double>{naive.weight_sum}, c.dtype));
         expect(check_close("losses", rows_shape(p.N), got.losses, want.losses, naive.losses,
                            c.dtype));
         expect(check_close("dlogits", logits_shape(p.N, p.V), got.dlogits, want.dlogits,
                            naive.dlogits, c.dtype));
       }});

  out.push_back(
      {"cross_entropy.ignoredRowsCannotLeak", Op::cross_entropy,
       "NaN, inf or huge logits in ignored rows change no bit of the loss, count or any gradient",
       [](const Implementation& impl, const CaseLimits& lim) {
         LossCase c;
         if (!draw(impl, lim, c)) return;
         const auto d = make_data(c);
         const LossProblem& p = c.problem;
         DataRng rng(0);
         const double g = garbage_value(
             draw_garbage({Garbage::nan, Garbage::pos_inf, Garbage::half_max}), c.dtype, rng);
         auto dirty = d;
         for (std::int64_t i = 0; i < p.N; ++i)
           if (d.labels[i] == p.ignore_index) std::fill_n(dirty.logits.begin() + i * p.V, p.V, g);
         const auto clean = run(impl, c, p, d), got = run(impl, c, p, dirty);
         expect(check_exact("loss, count, weight_sum", kScalars, scalars(got), scalars(clean)));
         expect(check_exact("losses", rows_shape(p.N), got.losses, clean.losses));
         expect(check_exact("dlogits", logits_shape(p.N, p.V), got.dlogits, clean.dlogits));
       }});

  out.push_back({"cross_entropy.ignoredRowsGetZeroGradient", Op::cross_entropy,
                 "rows with the ignore label get loss and gradient exactly +0.0",
                 [](const Implementation& impl, const CaseLimits& lim) {
                   LossCase c;
                   if (!draw(impl, lim, c)) return;
                   const auto d = make_data(c);
                   const LossProblem& p = c.problem;
                   const auto got = run(impl, c, p, d);
                   std::vector<double> g, zeros;
                   for (std::int64_t i = 0; i < p.N; ++i)
                     if (d.labels[i] == p.ignore_index) {
                       g.push_back(got.losses[i]);
                       g.insert(g.end(), got.dlogits.begin() + i * p.V,
                                got.dlogits.begin() + (i + 1) * p.V);
                     }
                   zeros.assign(g.size(), 0.0);
                   expect(check_exact("loss and dlogits of ignored rows",
                                      Shape{{"i"}, {std::int64_t(g.size())}}, g, zeros));
                 }});

  out.push_back(
      {"cross_entropy.meanIsWeightedSumOverWeight", Op::cross_entropy,
       "mean == sum / (weight of contributing rows), sum == sum of the per-row losses, and a "
       "batch with nothing contributing has mean exactly 0 and count 0",
       [](const Implementation& impl, const CaseLimits& lim) {
         LossCase c;
         if (!draw(impl, lim, c)) return;
         const auto d = make_data(c);
         LossProblem mean = c.problem, sum = c.problem, none = c.problem;
         mean.reduction = Reduction::mean;
         sum.reduction = Reduction::sum;
         none.reduction = Reduction::none;
         const auto m = run(impl, c, mean, d, false), s = run(impl, c, sum, d, false),
                    n = run(impl, c, none, d, false);
         double total = 0;
         for (double x : n.losses) total += x;
         const Shape one{{"loss"}, {1}};
         expect(check_consistent("sum vs sum of rows", one, {&s.loss, 1}, {&total, 1}, c.dtype));
         const double want_mean = s.weight_sum > 0 ? s.loss / s.weight_sum : 0.0;
         expect(
             check_consistent("mean vs sum / weight", one, {&m.loss, 1}, {&want_mean, 1}, c.dtype));
         std::int64_t contributing = 0;
         for (auto y : d.labels) contributing += y != c.problem.ignore_index;
         expect(m.count == contributing,
                "count " + std::to_string(m.count) + ", want " + std::to_string(contributing));
         if (contributing == 0)
           expect(std::bit_cast<std::uint64_t>(m.loss) == 0,
                  "all-ignored mean is " + std::to_string(m.loss) + ", want exactly 0");
       }});

  out.push_back(
      {"cross_entropy.microBatchesAccumulate", Op::cross_entropy,
       "summing micro-batch losses and gradients normalized by the global contributing weight "
       "equals the full-batch mean",
       [](const Implementation& impl, const CaseLimits& lim) {
         LossCase c;
         if (!draw(impl, lim, c)) return;
         const auto d = make_data(c);
         const LossProblem& p = c.problem;
         if (p.N == 0) return;
         LossProblem full = p;
         full.reduction = Reduction::mean;
         const auto whole = run(impl, c, full, d);
         const std::int64_t chunks =
             *rc::gen::inRange<std::int64_t>(1, std::min<std::int64_t>(p.N, 5) + 1)
                  .as("micro-batches");
         double loss = 0, weight = 0;
         std::int64_t count = 0;
         std::vector<double> grad;
         std::vector<LossResult> parts;
         for (std::int64_t k = 0; k < chunks; ++k) {
           const std::int64_t lo = p.N * k / chunks, hi = p.N * (k + 1) / chunks;
           LossProblem part = p;
           part.N = hi - lo;
           part.reduction = Reduction::sum;
           LossData pd{{d.logits.begin() + lo * p.V, d.logits.begin() + hi * p.V},
                       {d.labels.begin() + lo, d.labels.begin() + hi},
                       p.weighted
                           ? std::vector<double>(d.weights.begin() + lo, d.weights.begin() + hi)
                           : std::vector<double>{}};
           parts.push_back(run(impl, c, part, pd));
           loss += parts.back().loss;
           weight += parts.back().weight_sum;
           count += parts.back().count;
         }
         // Normalize by the global weight, as gradient accumulation does.
         for (const auto& r : parts)
           for (double g : r.dlogits) grad.push_back(weight > 0 ? g / weight : 0.0);
         const double mean = weight > 0 ? loss / weight : 0.0;
         expect(count == whole.count, "micro-batch counts add to " + std::to_string(count) +
                                          ", full batch " + std::to_string(whole.count));
         expect(check_consistent("accumulated mean", Shape{{"loss"}, {1}}, {&mean, 1},
                                 {&whole.loss, 1}, c.dtype));
         expect(check_consistent("accumulated dlogits", logits_shape(p.N, p.V), grad, whole.dlogits,
                                 c.dtype));
       }});

  out.push_back(
      {"cross_entropy.deterministic", Op::cross_entropy,
       "two runs on the same inputs are bitwise identical (no order-dependent reductions)",
       [](const Implementation& impl, const CaseLimits& lim) {
         LossCase c;
         if (!draw(impl, lim, c)) return;
         const auto d = make_data(c);
         const LossProblem& p = c.problem;
         const auto a = run(impl, c, p, d), b = run(impl, c, p, d);
         expect(check_exact("loss, count, weight_sum", kScalars, scalars(b), scalars(a)));
         expect(check_exact("losses", rows_shape(p.N), b.losses, a.losses));
         expect(check_exact("dlogits", logits_shape(p.N, p.V), b.dlogits, a.dlogits));
       }});

  out.push_back(
      {"cross_entropy.rejectsOutOfRangeLabels", Op::cross_entropy,
       "a label outside [0, V) other than ignore_index is an error (InvalidArgument), not garbage",
       [](const Implementation& impl, const CaseLimits& lim) {
         LossCase c;
         if (!draw(impl, lim, c)) return;
         const LossProblem& p = c.problem;
         if (p.N == 0) return;
         auto d = make_data(c);
         const std::int64_t row = *rc::gen::inRange<std::int64_t>(0, p.N).as("bad row");
         std::vector<std::int64_t> bad{p.V, p.V + 7, -2, -1,
                                       std::numeric_limits<std::int32_t>::max()};
         std::erase(bad, p.ignore_index);
         d.labels[row] = *rc::gen::elementOf(bad).as("bad label");
         bool rejected = false;
         try {
           (void)run(impl, c, p, d);
         } catch (const InvalidArgument&) {
           rejected = true;
         }
         expect(rejected, "label " + std::to_string(d.labels[row]) + " at row " +
                              std::to_string(row) + " was accepted");
       }});

  out.push_back(
      {"cross_entropy.upstream.agreesWithReference", Op::cross_entropy,
       "with an upstream gradient (grad_output [N] for reduction none, [1] otherwise) dlogits "
       "agrees with the fp64 reference backward",
       [](const Implementation& impl, const CaseLimits& lim) {
         LossCase c;
         std::vector<double> g;
         if (!draw_upstream(impl, lim, c, g)) return;
         const auto d = make_data(c);
         const LossProblem& p = c.problem;
         const auto got = impl.cross_entropy_upstream(p, c.dtype, d.logits, d.labels, d.weights, g);
         const auto want = reference_cross_entropy_upstream(p, c.dtype, d.logits, d.labels,
                                                            d.weights, g, Precision::exact);
         const auto naive = reference_cross_entropy_upstream(p, c.dtype, d.logits, d.labels,
                                                             d.weights, g, Precision::naive);
         expect(got.count == want.count,
                "count " + std::to_string(got.count) + ", want " + std::to_string(want.count));
         expect(check_close("dlogits", logits_shape(p.N, p.V), got.dlogits, want.dlogits,
                            naive.dlogits, c.dtype));
       }});

  out.push_back(
      {"cross_entropy.upstream.ignoredRowsNeverReadTheirs", Op::cross_entropy,
       "reduction none: NaN or inf as the upstream gradient of ignored rows changes no bit of "
       "dlogits (their rows stay +0.0)",
       [](const Implementation& impl, const CaseLimits& lim) {
         LossCase c;
         std::vector<double> g;
         if (!draw_upstream(impl, lim, c, g, true)) return;
         const LossProblem& p = c.problem;
         const auto d = make_data(c);
         DataRng rng(c.data_seed);
         const double bad =
             garbage_value(draw_garbage({Garbage::nan, Garbage::pos_inf}), c.dtype, rng);
         auto dirty = g;
         for (std::int64_t i = 0; i < p.N; ++i)
           if (d.labels[i] == p.ignore_index) dirty[static_cast<std::size_t>(i)] = bad;
         const auto clean =
             impl.cross_entropy_upstream(p, c.dtype, d.logits, d.labels, d.weights, g);
         const auto got =
             impl.cross_entropy_upstream(p, c.dtype, d.logits, d.labels, d.weights, dirty);
         expect(check_exact("dlogits", logits_shape(p.N, p.V), got.dlogits, clean.dlogits));
       }});
}

}  // namespace maskcheck
