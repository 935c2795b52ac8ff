#include "check.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <thread>
#include <type_traits>

#include "maskcheck/reference/reference.hpp"
#include "maskcheck/suite/tolerance.hpp"

namespace maskcheck::bench {

namespace {

// Element i of raw storage as storage type S (the dtype of the tensor must be S's).
template <class S>
S storage_at(const HostTensor& h, std::int64_t i) {
  const std::byte* p = h.bytes.data() + static_cast<std::size_t>(i) * sizeof(S);
  if constexpr (std::is_same_v<S, half> || std::is_same_v<S, bfloat16>) {
    std::uint16_t bits;
    std::memcpy(&bits, p, 2);
    return S::from_bits(bits);
  } else {
    S v;
    std::memcpy(&v, p, sizeof(S));
    return v;
  }
}

std::string fmt(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4g", x);
  return buf;
}

}  // namespace

HostTensor to_host(Device d, const void* p, DType t, std::int64_t n) {
  HostTensor h;
  h.t = t;
  h.bytes.resize(static_cast<std::size_t>(n) * dtype_bytes(t));
  if (!h.bytes.empty()) device(d).download(h.bytes.data(), p, h.bytes.size());
  return h;
}

Readback::Readback(Device d, const void* p, DType t, std::int64_t n) : t_(t) {
  if (device(d).host_memory())
    in_place_ = p;
  else
    copy_ = to_host(d, p, t, n);
}

double Readback::at(std::int64_t i) const {
  if (!in_place_) return copy_.at(i);
  return dispatch_dtype(t_, [&](auto tag) {
    using S = decltype(tag);
    S v;
    std::memcpy(static_cast<void*>(&v), static_cast<const char*>(in_place_) + i * sizeof(S),
                sizeof(S));
    return to_double(v);
  });
}

std::int64_t HostTensor::numel() const {
  return static_cast<std::int64_t>(bytes.size() / dtype_bytes(t));
}

double HostTensor::at(std::int64_t i) const {
  return dispatch_dtype(t,
                        [&](auto tag) { return to_double(storage_at<decltype(tag)>(*this, i)); });
}

std::int64_t RowReference::rows() const {
  std::int64_t n = 0;
  for (const auto& g : groups) n += static_cast<std::int64_t>(g.qs.size());
  return n;
}

std::vector<RowGroup> sample_rows(const MaskSpec& m, std::int64_t H, std::uint64_t s, int groups,
                                  int rows_per_group) {
  const FlatMask flat(m);
  const MaskView view = flat.view();
  Rng rng(mix(s, 0x5EED));
  std::vector<RowGroup> out;
  for (int g = 0; g < groups; ++g) {
    // The first and last sequence always, then random ones; a sequence without a visible key
    // (all padding) passes its turn to the next.
    std::int64_t b0 = g == 0 ? 0 : g == 1 ? m.B - 1 : rng.uniform(0, m.B - 1);
    for (std::int64_t tries = 0; tries < m.B; ++tries) {
      const std::int64_t b = (b0 + tries) % m.B;
      std::vector<std::int64_t> valid;
      for (std::int64_t q = 0; q < m.Lq; ++q)
        if (!visible_keys(view, b, q).empty()) valid.push_back(q);
      if (valid.empty()) continue;
      RowGroup rg;
      rg.b = b;
      rg.h = rng.uniform(0, H - 1);
      rg.qs.push_back(valid.front());
      rg.qs.push_back(valid.back());
      for (int r = 2; r < rows_per_group && r < static_cast<int>(valid.size()); ++r)
        rg.qs.push_back(valid[static_cast<std::size_t>(
            rng.uniform(0, static_cast<std::int64_t>(valid.size()) - 1))]);
      std::sort(rg.qs.begin(), rg.qs.end());
      rg.qs.erase(std::unique(rg.qs.begin(), rg.qs.end()), rg.qs.end());
      out.push_back(std::move(rg));
      break;
    }
  }
  return out;
}

namespace {

// The keep rows [qs.size(), Lk] of sequence b, from the one predicate.
std::vector<std::uint8_t> keep_rows(const MaskView& view, std::int64_t b,
                                    const std::vector<std::int64_t>& qs, std::int64_t Lk) {
  std::vector<std::uint8_t> keep(qs.size() * static_cast<std::size_t>(Lk), 0);
  for (std::size_t i = 0; i < qs.size(); ++i) {
    row_keys(view, b, qs[i]).for_each([&](std::int64_t k) {
      keep[i * static_cast<std::size_t>(Lk) + static_cast<std::size_t>(k)] = 1;
    });
  }
  return keep;
}

}  // namespace

RowReference attention_rows(const AttentionProblem& p, const HostTensor& q, const HostTensor& k,
                            const HostTensor& v, std::uint64_t s) {
  RowReference ref;
  ref.groups = sample_rows(p.mask, p.H, s);
  ref.width = p.D;
  const FlatMask flat(p.mask);
  const std::int64_t H = p.H, Hkv = p.Hkv, Lq = p.mask.Lq, Lk = p.mask.Lk, D = p.D;
  for (const RowGroup& g : ref.groups) {
    const auto nq = static_cast<std::int64_t>(g.qs.size());
    AttentionProblem sub;
    sub.mask.B = 1;
    sub.mask.Lq = nq;
    sub.mask.Lk = Lk;
    sub.D = D;
    sub.scale = p.effective_scale();
    // The row group's head alone: its soft-cap, ALiBi slope and sink logit, and the rows'
    // diagonals in the whole problem.
    sub.mods.softcap = p.mods.softcap;
    if (!p.mods.alibi_slopes.empty())
      sub.mods.alibi_slopes = {p.mods.alibi_slopes[static_cast<std::size_t>(g.h)]};
    if (!p.mods.sink_logits.empty())
      sub.mods.sink_logits = {p.mods.sink_logits[static_cast<std::size_t>(g.h)]};
    std::vector<std::int64_t> diagonals;
    for (const std::int64_t qi : g.qs) diagonals.push_back(query_diagonal(flat.view(), g.b, qi));
    const auto keep = keep_rows(flat.view(), g.b, g.qs, Lk);
    const std::int64_t hk = g.h / (H / Hkv);
    dispatch_dtype(q.t, [&](auto tag) {
      using S = decltype(tag);
      std::vector<S> qs(static_cast<std::size_t>(nq * D)), ks(static_cast<std::size_t>(Lk * D)),
          vs(ks.size()), os(qs.size());
      std::vector<double> qd(qs.size()), kd(ks.size()), vd(ks.size()), od(qs.size());
      for (std::int64_t i = 0; i < nq; ++i)
        for (std::int64_t d = 0; d < D; ++d) {
          const auto j = static_cast<std::size_t>(i * D + d);
          qs[j] =
              storage_at<S>(q, ((g.b * H + g.h) * Lq + g.qs[static_cast<std::size_t>(i)]) * D + d);
          qd[j] = to_double(qs[j]);
        }
      for (std::int64_t j = 0; j < Lk * D; ++j) {
        const auto u = static_cast<std::size_t>(j);
        ks[u] = storage_at<S>(k, (g.b * Hkv + hk) * Lk * D + j);
        vs[u] = storage_at<S>(v, (g.b * Hkv + hk) * Lk * D + j);
        kd[u] = to_double(ks[u]);
        vd[u] = to_double(vs[u]);
      }
      const std::span<const std::uint8_t> keep_span(keep);
      ref::attention_forward<double, double>(sub, keep_span, qd, kd, vd, std::span<double>(od),
                                             std::span<double>(), diagonals);
      ref::attention_forward<S, float>(sub, keep_span, qs, ks, vs, std::span<S>(os),
                                       std::span<float>(), diagonals);
      ref.want.insert(ref.want.end(), od.begin(), od.end());
      for (const S& x : os) ref.naive.push_back(to_double(x));
    });
  }
  return ref;
}

RowReference softmax_rows(const SoftmaxProblem& p, const HostTensor& x, std::uint64_t s) {
  RowReference ref;
  ref.groups = sample_rows(p.mask, p.H, s);
  ref.width = p.mask.Lk;
  const FlatMask flat(p.mask);
  const std::int64_t H = p.H, Lq = p.mask.Lq, Lk = p.mask.Lk;
  for (const RowGroup& g : ref.groups) {
    const auto nq = static_cast<std::int64_t>(g.qs.size());
    SoftmaxProblem sub;
    sub.mask.B = 1;
    sub.mask.Lq = nq;
    sub.mask.Lk = Lk;
    sub.scale = p.scale;
    const auto keep = keep_rows(flat.view(), g.b, g.qs, Lk);
    dispatch_dtype(x.t, [&](auto tag) {
      using S = decltype(tag);
      std::vector<S> xs(static_cast<std::size_t>(nq * Lk)), ys(xs.size());
      std::vector<double> xd(xs.size()), yd(xs.size());
      for (std::int64_t i = 0; i < nq; ++i)
        for (std::int64_t j = 0; j < Lk; ++j) {
          const auto u = static_cast<std::size_t>(i * Lk + j);
          xs[u] =
              storage_at<S>(x, ((g.b * H + g.h) * Lq + g.qs[static_cast<std::size_t>(i)]) * Lk + j);
          xd[u] = to_double(xs[u]);
        }
      const std::span<const std::uint8_t> keep_span(keep);
      ref::masked_softmax<double, double>(sub, keep_span, xd, std::span<double>(yd));
      ref::masked_softmax<S, float>(sub, keep_span, xs, std::span<S>(ys));
      ref.want.insert(ref.want.end(), yd.begin(), yd.end());
      for (const S& y : ys) ref.naive.push_back(to_double(y));
    });
  }
  return ref;
}

CheckOutcome check_rows(std::string_view what, const RowReference& ref, DType t,
                        const RowAccessor& got) {
  std::vector<double> g;
  g.reserve(ref.want.size());
  std::vector<std::array<std::int64_t, 3>> coords;  // (b, h, q) per row
  for (const RowGroup& rg : ref.groups)
    for (std::int64_t q : rg.qs) {
      coords.push_back({rg.b, rg.h, q});
      for (std::int64_t j = 0; j < ref.width; ++j) g.push_back(got(rg.b, rg.h, q, j));
    }
  const Shape shape{{"row", "j"}, {ref.rows(), ref.width}};
  const CheckResult r = check_close(what, shape, g, ref.want, ref.naive, t);
  CheckOutcome out;
  out.ok = r.ok;
  out.max_abs_err = r.max_abs_err;
  if (r.ok) {
    out.message = "max|err| " + fmt(r.max_abs_err) + " on " + std::to_string(ref.rows()) + " rows";
    return out;
  }
  out.message = std::string(what) + ": " + (r.mismatches >= CheckResult::kStopAt ? ">= " : "") +
                std::to_string(r.mismatches) + " mismatching elements in " +
                std::to_string(ref.rows()) + " sampled rows (max|err| " + fmt(r.max_abs_err) +
                ", 2*naive+eps " + fmt(r.bound) + ")";
  for (std::size_t i = 0; i < r.first.size() && i < CheckResult::kShow; ++i) {
    const Mismatch& m = r.first[i];
    const auto row = static_cast<std::size_t>(m.index / ref.width);
    out.message +=
        "; (b=" + std::to_string(coords[row][0]) + ", h=" + std::to_string(coords[row][1]) +
        ", q=" + std::to_string(coords[row][2]) + ", j=" + std::to_string(m.index % ref.width) +
        ") got " + fmt(m.got) + " want " + fmt(m.want);
  }
  return out;
}

LossReference cross_entropy_reference(const LossProblem& p, const HostTensor& logits,
                                      std::span<const std::int64_t> labels, std::uint64_t s,
                                      int rows) {
  LossReference ref;
  const std::int64_t N = p.N, V = p.V;
  const double eps = p.label_smoothing;
  // The full fp64 loss: every contributing row, rows split over the host's threads.
  const unsigned threads = std::max(1u, std::min(16u, std::thread::hardware_concurrency()));
  std::vector<double> totals(threads, 0.0);
  std::vector<std::int64_t> counts(threads, 0);
  dispatch_dtype(logits.t, [&](auto tag) {
    using S = decltype(tag);
    auto work = [&](unsigned w) {
      std::vector<double> x(static_cast<std::size_t>(V));
      for (std::int64_t i = w; i < N; i += threads) {
        const std::int64_t label = labels[static_cast<std::size_t>(i)];
        if (label == p.ignore_index) continue;
        double m = -std::numeric_limits<double>::infinity(), sum = 0, xsum = 0;
        for (std::int64_t j = 0; j < V; ++j) {
          const double xj = to_double(storage_at<S>(logits, i * V + j));
          x[static_cast<std::size_t>(j)] = xj;
          m = std::max(m, xj);
          xsum += xj;
        }
        for (double xj : x) sum += std::exp(xj - m);
        const double lse = m + std::log(sum);
        const double nll = lse - x[static_cast<std::size_t>(label)];
        totals[w] += (1 - eps) * nll + eps * (lse - xsum / static_cast<double>(V));
        ++counts[w];
      }
    };
    std::vector<std::thread> pool;
    for (unsigned w = 1; w < threads; ++w) pool.emplace_back(work, w);
    work(0);
    for (auto& th : pool) th.join();
  });
  double total = 0;
  std::int64_t count = 0;
  for (unsigned w = 0; w < threads; ++w) {
    total += totals[w];
    count += counts[w];
  }
  ref.loss = p.reduction == Reduction::mean ? (count > 0 ? total / static_cast<double>(count) : 0.0)
                                            : total;
  ref.norm =
      p.reduction == Reduction::mean ? static_cast<double>(std::max<std::int64_t>(count, 1)) : 1.0;

  // Sampled rows: first, last, random; contributing and ignored alike.
  Rng rng(mix(s, 0xCE));
  ref.rows = {0, N - 1};
  for (int r = 2; r < rows && r < N; ++r) ref.rows.push_back(rng.uniform(0, N - 1));
  std::sort(ref.rows.begin(), ref.rows.end());
  ref.rows.erase(std::unique(ref.rows.begin(), ref.rows.end()), ref.rows.end());

  LossProblem sub = p;
  sub.N = static_cast<std::int64_t>(ref.rows.size());
  sub.reduction = Reduction::sum;  // dlogits = softmax - target: scaled by V below
  sub.weighted = false;
  std::vector<std::int64_t> sub_labels;
  for (std::int64_t r : ref.rows) {
    sub_labels.push_back(labels[static_cast<std::size_t>(r)]);
    ref.ignored.push_back(sub_labels.back() == p.ignore_index);
  }
  dispatch_dtype(logits.t, [&](auto tag) {
    using S = decltype(tag);
    const auto n = static_cast<std::size_t>(sub.N * V);
    std::vector<S> xs(n), gs(n);
    std::vector<double> xd(n), gd(n);
    for (std::size_t r = 0; r < ref.rows.size(); ++r)
      for (std::int64_t j = 0; j < V; ++j) {
        const std::size_t u = r * static_cast<std::size_t>(V) + static_cast<std::size_t>(j);
        xs[u] = storage_at<S>(logits, ref.rows[r] * V + j);
        xd[u] = to_double(xs[u]);
      }
    ref::cross_entropy<double, double>(sub, xd, sub_labels, {}, std::span<double>(gd));
    ref::cross_entropy<S, float>(sub, xs, sub_labels, {}, std::span<S>(gs));
    const auto scale = static_cast<double>(V);
    for (std::size_t u = 0; u < n; ++u) {
      ref.want.push_back(gd[u] * scale);
      ref.naive.push_back(to_double(gs[u]) * scale);
    }
  });
  return ref;
}

CheckOutcome check_cross_entropy(const LossProblem& p, const LossReference& ref, DType t,
                                 double got_loss, std::span<const double> got_rows) {
  CheckOutcome out;
  const double loss_got[] = {got_loss};
  const double loss_want[] = {ref.loss};
  const CheckResult lr = check_consistent("loss", Shape{{"loss"}, {1}}, loss_got, loss_want, t);
  if (!lr.ok) {
    out.ok = false;
    out.message = "loss: got " + fmt(got_loss) + " want " + fmt(ref.loss) + " (fp64)";
  }
  // Ignored rows must be exactly zero; the others agree in units of 1 / (V * norm).
  const std::int64_t V = p.V;
  std::vector<double> scaled(got_rows.size());
  for (std::size_t u = 0; u < got_rows.size(); ++u)
    scaled[u] = got_rows[u] * static_cast<double>(V) * ref.norm;
  for (std::size_t r = 0; r < ref.rows.size() && out.ok; ++r) {
    if (!ref.ignored[r]) continue;
    for (std::int64_t j = 0; j < V; ++j) {
      const double g = got_rows[r * static_cast<std::size_t>(V) + static_cast<std::size_t>(j)];
      if (g != 0.0) {
        out.ok = false;
        out.message = "dlogits of ignored row n=" + std::to_string(ref.rows[r]) + " is " + fmt(g) +
                      " at v=" + std::to_string(j) + " (must be exactly 0)";
        break;
      }
    }
  }
  const Shape shape{{"row", "v"}, {static_cast<std::int64_t>(ref.rows.size()), V}};
  const CheckResult gr = check_close("dlogits", shape, scaled, ref.want, ref.naive, t);
  out.max_abs_err = gr.max_abs_err / (static_cast<double>(V) * ref.norm);
  if (!gr.ok) {
    out.ok = false;
    if (!out.message.empty()) out.message += "; ";
    out.message += "dlogits (x V*norm): " + std::to_string(gr.mismatches) +
                   " mismatching elements in " + std::to_string(ref.rows.size()) +
                   " sampled rows (max|err| " + fmt(gr.max_abs_err) + ")";
    for (std::size_t i = 0; i < gr.first.size() && i < CheckResult::kShow; ++i) {
      const Mismatch& m = gr.first[i];
      out.message += "; (n=" + std::to_string(ref.rows[static_cast<std::size_t>(m.index / V)]) +
                     ", v=" + std::to_string(m.index % V) + ") got " + fmt(m.got) + " want " +
                     fmt(m.want);
    }
  }
  if (out.ok)
    out.message = "loss err " + fmt(std::fabs(got_loss - ref.loss)) +
                  ", dlogits max|err| x V*norm " + fmt(gr.max_abs_err) + " on " +
                  std::to_string(ref.rows.size()) + " rows";
  return out;
}

}  // namespace maskcheck::bench
