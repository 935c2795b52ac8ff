#include "maskcheck/suite/cases.hpp"

#include <algorithm>
#include <cmath>
#include <ostream>
#include <sstream>

#include "maskcheck/reference/common.hpp"
#include "maskcheck/reference/predicate.hpp"

namespace maskcheck {

std::string_view to_string(DataStyle s) {
  switch (s) {
    case DataStyle::normal:
      return "normal";
    case DataStyle::integers:
      return "integers";
    case DataStyle::large:
      return "large";
    case DataStyle::huge:
      return "huge";
    case DataStyle::tiny:
      return "tiny";
    case DataStyle::positive:
      return "positive";
  }
  return "?";
}

DataStyle data_style_from_string(std::string_view s) {
  for (DataStyle d : {DataStyle::normal, DataStyle::integers, DataStyle::large, DataStyle::huge,
                      DataStyle::tiny, DataStyle::positive})
    if (to_string(d) == s) return d;
  throw_invalid("style", std::string(s), "must be normal, integers, large, huge, tiny or positive");
}

std::uint64_t DataRng::next() {
  std::uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

double DataRng::uniform() {
  return static_cast<double>(next() >> 11) * 0x1.0p-53;
}

double DataRng::normal() {
  const double u1 = 1.0 - uniform();  // (0, 1]
  const double u2 = uniform();
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
}

std::int64_t DataRng::below(std::int64_t n) {
  return n <= 0 ? 0 : static_cast<std::int64_t>(next() % static_cast<std::uint64_t>(n));
}

std::vector<double> draw_values(DataRng& rng, std::size_t n, DataStyle style, DType t,
                                double large_sigma, double huge_abs) {
  std::vector<double> v(n);
  const double limit = max_finite(t) / 2;
  for (auto& x : v) {
    switch (style) {
      case DataStyle::normal:
        x = rng.normal();
        break;
      case DataStyle::integers:
        x = static_cast<double>(rng.below(9) - 4);
        break;
      case DataStyle::large:
        x = large_sigma * rng.normal();
        break;
      case DataStyle::huge:
        x = huge_abs * (2.0 * rng.uniform() - 1.0);
        break;
      case DataStyle::tiny:
        x = 1e-3 * rng.normal();
        break;
      case DataStyle::positive:
        x = 2.0 * (1.0 - rng.uniform());  // (0, 2]
        break;
    }
    x = round_to(t, std::clamp(x, -limit, limit));
  }
  return v;
}

SoftmaxData make_data(const SoftmaxCase& c) {
  DataRng rng(c.data_seed);
  const double huge = c.dtype == DType::f16 ? 3e4 : 1e4;
  return {draw_values(rng, static_cast<std::size_t>(c.problem.numel()), c.style, storage_of(c).x,
                      20.0, huge)};
}

AttentionData make_data(const AttentionCase& c) {
  DataRng rng(c.data_seed);
  AttentionData d;
  const auto nq = static_cast<std::size_t>(c.problem.q_numel());
  const auto nkv = static_cast<std::size_t>(c.problem.kv_numel());
  const Storage s = storage_of(c);
  // Scores grow like |q||k|: "large" gives peaked rows, "huge" rows dominated by one key.
  d.q = draw_values(rng, nq, c.style, s.q, 3.0, 12.0);
  d.k = draw_values(rng, nkv, c.style, s.k, 3.0, 12.0);
  d.v = draw_values(rng, nkv, c.style == DataStyle::huge ? DataStyle::large : c.style, s.v, 3.0,
                    12.0);
  return d;
}

LossData make_data(const LossCase& c) {
  DataRng rng(c.data_seed);
  const LossProblem& p = c.problem;
  LossData d;
  const double huge = c.dtype == DType::f16 ? 3e4 : 1e4;
  d.logits = draw_values(rng, static_cast<std::size_t>(p.N * p.V), c.style, storage_of(c).logits,
                         30.0, huge);
  d.labels.resize(static_cast<std::size_t>(p.N));
  for (auto& y : d.labels) y = rng.uniform() < c.ignored_fraction ? p.ignore_index : rng.below(p.V);
  if (p.weighted) {
    d.weights.resize(static_cast<std::size_t>(p.N));
    for (auto& w : d.weights) w = 0.25 * static_cast<double>(rng.below(17));  // 0, 0.25, .., 4
  }
  return d;
}

LabelsData make_data(const LabelsCase& c) {
  DataRng rng(c.data_seed);
  const std::int64_t B = c.problem.B, L = c.problem.L;
  LabelsData d;
  d.keep = ref::keep_from_lengths(c.lengths, L, c.padding);
  d.ids.assign(static_cast<std::size_t>(B * L), c.pad_id);
  for (std::int64_t b = 0; b < B; ++b) {
    const std::int64_t len = c.lengths[b];
    const std::int64_t t0 = valid_begin(c.padding, L, len);
    for (std::int64_t t = t0; t < t0 + len; ++t) {
      // Real tokens avoid the pad id, except the final EOS when EOS == pad.
      std::int64_t id = 1 + rng.below(std::max<std::int64_t>(c.V - 1, 1));
      if (id == c.pad_id) id = (id + 1) % c.V;
      d.ids[b * L + t] = id;
    }
    if (c.eos_is_pad && len > 0) d.ids[b * L + t0 + len - 1] = c.pad_id;
  }
  return d;
}

MlmData make_data(const MlmCase& c) {
  DataRng rng(c.data_seed);
  const std::int64_t B = c.problem.B, L = c.problem.L;
  MlmData d;
  d.keep = ref::keep_from_lengths(c.lengths, L, c.padding);
  const auto n = static_cast<std::size_t>(B * L);
  d.ids.assign(n, 0);
  d.special.assign(n, 0);
  d.continuation.assign(n, 0);
  for (std::int64_t b = 0; b < B; ++b) {
    const std::int64_t len = c.lengths[b];
    const std::int64_t t0 = valid_begin(c.padding, L, len);
    for (std::int64_t t = t0; t < t0 + len; ++t) {
      const std::int64_t i = b * L + t;
      d.ids[i] = rng.below(c.problem.V);
      d.special[i] = (t == t0 || t == t0 + len - 1 || rng.uniform() < c.special_fraction) ? 1 : 0;
      d.continuation[i] = (t > t0 && rng.uniform() < c.continuation_fraction) ? 1 : 0;
    }
  }
  return d;
}

namespace {

template <class T>
std::string list(const std::vector<T>& v) {
  std::ostringstream os;
  os << "[";
  for (std::size_t i = 0; i < v.size(); ++i) os << (i ? "," : "") << v[i];
  os << "]";
  return os.str();
}

// " (q=f32,out=f32)" for a case with mixed storage, else "".
template <class Case>
std::string storage_note(const Case& c, Op op) {
  const std::string s = c.storage ? c.storage->describe(op, c.dtype) : std::string();
  return s.empty() ? s : " (" + s + ")";
}

std::string window_str(const Window& w) {
  auto side = [](std::int64_t x) {
    return x == kUnbounded ? std::string("inf") : std::to_string(x);
  };
  return "(" + side(w.left) + "," + side(w.right) + ")";
}

}  // namespace

std::string describe(const MaskSpec& m) {
  std::ostringstream os;
  os << "B=" << m.B << " Lq=" << m.Lq << " Lk=" << m.Lk;
  if (!m.q_lens.empty()) os << " q_lens=" << list(m.q_lens);
  if (!m.k_lens.empty()) os << " k_lens=" << list(m.k_lens);
  if (!m.q_lens.empty() || !m.k_lens.empty()) os << " padding=" << to_string(m.padding);
  if (m.causal) os << " causal";
  if (m.causal || m.window || m.chunk > 0) os << " align=" << to_string(m.alignment);
  if (m.window) os << " window=" << window_str(*m.window);
  if (!m.prefix_lens.empty()) os << " prefix_lens=" << list(m.prefix_lens);
  if (m.chunk > 0) os << " chunk=" << m.chunk;
  if (m.sink_tokens > 0) os << " sink_tokens=" << m.sink_tokens;
  if (m.has_documents()) {
    os << " cu_q=[";
    for (std::size_t b = 0; b < m.cu_seqlens_q.size(); ++b)
      os << (b ? "," : "") << list(m.cu_seqlens_q[b]);
    os << "] cu_k=[";
    for (std::size_t b = 0; b < m.cu_seqlens_k.size(); ++b)
      os << (b ? "," : "") << list(m.cu_seqlens_k[b]);
    os << "]";
  }
  return os.str();
}

std::string describe(const MaskCase& c) {
  return "masks " + std::string(to_string(c.dtype)) + " " + describe(c.spec) +
         " encoding=" + std::string(to_string(c.encoding));
}

std::string describe(const SoftmaxCase& c) {
  std::ostringstream os;
  os << "softmax " << to_string(c.dtype) << storage_note(c, Op::softmax) << " H=" << c.problem.H
     << " " << describe(c.problem.mask) << " scale=" << c.problem.scale
     << " data=" << to_string(c.style) << "/" << c.data_seed;
  return os.str();
}

std::string describe(const AttentionCase& c) {
  std::ostringstream os;
  const auto& p = c.problem;
  os << "attention " << to_string(c.dtype) << storage_note(c, Op::attention) << " H=" << p.H
     << " Hkv=" << p.Hkv << " D=" << p.D << " " << describe(p.mask);
  if (p.scale) os << " scale=" << *p.scale;
  auto doubles = [&](const char* name, const std::vector<double>& v) {
    if (v.empty()) return;
    os << " " << name << "=[";
    for (std::size_t i = 0; i < v.size(); ++i) os << (i ? "," : "") << v[i];
    os << "]";
  };
  if (p.mods.softcap != 0) os << " softcap=" << p.mods.softcap;
  doubles("alibi_slopes", p.mods.alibi_slopes);
  doubles("sink_logits", p.mods.sink_logits);
  os << " lse=" << (c.want_lse ? 1 : 0) << " data=" << to_string(c.style) << "/" << c.data_seed;
  return os.str();
}

std::string describe(const LossCase& c) {
  std::ostringstream os;
  const auto& p = c.problem;
  os << "cross_entropy " << to_string(c.dtype) << storage_note(c, Op::cross_entropy) << " N=" << p.N
     << " V=" << p.V << " ignore_index=" << p.ignore_index
     << " reduction=" << to_string(p.reduction) << " smoothing=" << p.label_smoothing
     << " weighted=" << (p.weighted ? 1 : 0) << " ignored=" << c.ignored_fraction
     << " data=" << to_string(c.style) << "/" << c.data_seed;
  return os.str();
}

std::string describe(const LabelsCase& c) {
  std::ostringstream os;
  os << "lm_labels B=" << c.problem.B << " L=" << c.problem.L << " lengths=" << list(c.lengths)
     << " padding=" << to_string(c.padding);
  if (!c.prompt_lens.empty()) os << " prompt_lens=" << list(c.prompt_lens);
  os << " V=" << c.V << " pad_id=" << c.pad_id << " eos_is_pad=" << (c.eos_is_pad ? 1 : 0)
     << " data=" << c.data_seed;
  return os.str();
}

std::string describe(const MlmCase& c) {
  std::ostringstream os;
  const auto& p = c.problem;
  os << "mlm B=" << p.B << " L=" << p.L << " V=" << p.V << " lengths=" << list(c.lengths)
     << " padding=" << to_string(c.padding) << " p=" << p.p << " split=" << p.p_mask << "/"
     << p.p_random << " mask_id=" << p.mask_id << " seed=" << p.seed
     << " whole_word=" << (p.whole_word ? 1 : 0) << " max_predictions=" << p.max_predictions
     << " data=" << c.data_seed;
  return os.str();
}

void showValue(const MaskSpec& m, std::ostream& os) {
  os << describe(m);
}
void showValue(const MaskCase& c, std::ostream& os) {
  os << describe(c);
}
void showValue(const SoftmaxCase& c, std::ostream& os) {
  os << describe(c);
}
void showValue(const AttentionCase& c, std::ostream& os) {
  os << describe(c);
}
void showValue(const LossCase& c, std::ostream& os) {
  os << describe(c);
}
void showValue(const LabelsCase& c, std::ostream& os) {
  os << describe(c);
}
void showValue(const MlmCase& c, std::ostream& os) {
  os << describe(c);
}

}  // namespace maskcheck
