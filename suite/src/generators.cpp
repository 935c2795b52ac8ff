#include "maskcheck/suite/generators.hpp"

#include <algorithm>
#include <cmath>

#include "maskcheck/reference/predicate.hpp"

namespace maskcheck {

using rc::Gen;
namespace gen = rc::gen;

namespace {

// The rapidcheck in Debian bookworm picks from element/elementOf/weighted* without ever shrinking
// the choice. These pick through a full-range index (size 100 whatever the case's size) that
// shrinks toward 0, i.e. toward the first listed choice: list the simplest choice first.
template <class T>
T pick(std::initializer_list<std::pair<std::size_t, T>> weighted) {
  std::size_t total = 0;
  for (const auto& [w, v] : weighted) total += w;
  std::size_t u = *gen::resize(100, gen::inRange<std::size_t>(0, total));
  for (const auto& [w, v] : weighted) {
    if (u < w) return v;
    u -= w;
  }
  return weighted.begin()->second;
}

template <class T>
T pick_of(const std::vector<T>& choices) {
  return choices[*gen::resize(100, gen::inRange<std::size_t>(0, choices.size()))];
}

bool chance(std::size_t yes, std::size_t no) {
  return pick<bool>({{no, false}, {yes, true}});
}

// Sorted cut points: `parts` documents over [0, len], empty documents allowed.
std::vector<std::int32_t> cu_seqlens(std::int64_t len, std::int64_t parts) {
  std::vector<std::int32_t> cu{0};
  for (std::int64_t i = 1; i < parts; ++i)
    cu.push_back(static_cast<std::int32_t>(*gen::inRange<std::int64_t>(0, len + 1)));
  std::sort(cu.begin() + 1, cu.end());
  cu.push_back(static_cast<std::int32_t>(len));
  return cu;
}

}  // namespace

Gen<std::int64_t> gen_length(std::int64_t max_len) {
  std::vector<std::int64_t> edges;
  for (std::int64_t t : {16, 32, 64, 128, 256})
    for (std::int64_t d : {-1, 0, 1})
      if (t + d <= max_len) edges.push_back(t + d);
  if (edges.empty()) edges.push_back(std::min<std::int64_t>(max_len, 1));
  return gen::exec([=] {
    switch (pick<int>({{1, 0}, {2, 1}, {4, 2}})) {
      case 0:
        return pick_of<std::int64_t>({0, 1, 2});
      case 1:
        return pick_of(edges);
      default:
        return *gen::inRange<std::int64_t>(0, max_len + 1);  // grows with the case size
    }
  });
}

Gen<std::int32_t> gen_valid_length(std::int64_t L) {
  const auto l = static_cast<std::int32_t>(L);
  return gen::exec([=] {
    switch (pick<int>({{2, 0}, {1, 1}, {1, 2}, {1, 3}, {3, 4}})) {
      case 0:
        return l;  // no padding
      case 1:
        return 0;  // empty sequence
      case 2:
        return std::min(1, l);
      case 3:
        return std::max(l - 1, 0);
      default:
        return *gen::resize(100, gen::inRange<std::int32_t>(0, l + 1));
    }
  });
}

Gen<MaskSpec> gen_mask_spec(std::int64_t B, std::int64_t Lq, std::int64_t Lk) {
  return gen::exec([=] {
    MaskSpec m;
    m.B = B;
    m.Lq = Lq;
    m.Lk = Lk;
    // Padding: none, self-attention (q_lens == k_lens), independent lengths, or keys only
    // (Hugging Face style: queries at padded positions are computed and ignored).
    const int padding = pick<int>({{3, 0}, {2, 1}, {2, 2}, {1, 3}});
    if (padding != 0) {
      const bool self = padding == 1 && Lq == Lk;
      for (std::int64_t b = 0; b < B; ++b) {
        const std::int32_t kl = *gen_valid_length(Lk);
        m.k_lens.push_back(kl);
        if (padding != 3) m.q_lens.push_back(self ? kl : *gen_valid_length(Lq));
      }
      m.padding = pick<PaddingSide>({{1, PaddingSide::right}, {1, PaddingSide::left}});
    }
    m.causal = chance(1, 1);
    if (chance(1, 2)) {
      Window w;
      switch (pick<int>({{3, 0}, {1, 1}, {1, 2}})) {
        case 0:
          w.left = *gen::inRange<std::int64_t>(0, Lk + 2);
          break;
        case 1:
          w.left = kUnbounded;
          break;
        default:
          w.left = Lk + 3;  // wider than the keys
      }
      switch (pick<int>({{2, 0}, {2, 1}, {1, 2}})) {
        case 0:
          w.right = 0;
          break;
        case 1:
          w.right = *gen::inRange<std::int64_t>(0, Lk + 2);
          break;
        default:
          w.right = kUnbounded;
      }
      m.window = w;
    }
    if (m.causal || m.window)
      m.alignment = pick<Alignment>({{3, Alignment::bottom_right}, {1, Alignment::top_left}});
    if (B > 0 && chance(1, 3)) {
      const bool shared_cuts = Lq == Lk && m.q_lens == m.k_lens && chance(2, 1);
      for (std::int64_t b = 0; b < B; ++b) {
        const std::int64_t docs = *gen::inRange<std::int64_t>(1, 5);
        m.cu_seqlens_q.push_back(cu_seqlens(m.q_len(b), docs));
        m.cu_seqlens_k.push_back(shared_cuts ? m.cu_seqlens_q.back()
                                             : cu_seqlens(m.k_len(b), docs));
      }
    }
    return m;
  });
}

namespace {

// Not shrunk, and drawn first in every generator: a failure stays in the dtype it was found in
// (the simplest dtype may fail for another reason, or pass). rapidcheck replays the draws of a
// shrunk case by position, so a draw after a variable number of others (lengths per sequence)
// would take another draw's value when an earlier one shrinks.
DType pick_dtype(const CaseLimits& limits) {
  const auto& d = limits.dtypes;
  return d[*gen::noShrink(gen::resize(100, gen::inRange<std::size_t>(0, d.size())))];
}

DataStyle pick_style() {
  return pick<DataStyle>({{5, DataStyle::normal},
                          {1, DataStyle::integers},
                          {1, DataStyle::large},
                          {1, DataStyle::huge},
                          {1, DataStyle::tiny},
                          {1, DataStyle::positive}});
}

bool extreme(DataStyle s) {
  return s == DataStyle::large || s == DataStyle::huge;
}

// A softmax scale over its whole valid range (any finite value): the usual ones, and negative,
// zero, tiny and huge. Drawn often for extreme data, where scale bugs meet overflow and rounding
// (a non-default scale with scores near the dtype's range is what breaks exp(fma(s, c, -m))).
double pick_scale(double usual, bool extreme_data) {
  const std::size_t w = extreme_data ? 3 : 1;
  return pick<double>({{extreme_data ? 2u : 4u, usual},
                       {w, 0.5 * usual},
                       {w, 2.0 * usual},
                       {w, -usual},
                       {w, 0.0},
                       {w, 1e-6},
                       {w, 1e3}});
}

// Lq given Lk: equal (self-attention), 1 (decoding), or another length either way.
std::int64_t pick_lq(std::int64_t Lk, std::int64_t max_len) {
  switch (pick<int>({{3, 0}, {1, 1}, {2, 2}})) {
    case 0:
      return Lk;
    case 1:
      return 1;
    default:
      return *gen_length(max_len);
  }
}

}  // namespace

Gen<MaskCase> gen_mask_case(const CaseLimits& limits) {
  return gen::exec([=] {
    MaskCase c;
    c.dtype = pick_dtype(limits);
    const std::int64_t max_len = std::min<std::int64_t>(limits.max_len, 130);
    const std::int64_t Lk = *gen_length(max_len);
    const std::int64_t Lq = pick_lq(Lk, max_len);
    const std::int64_t B = *gen::inRange<std::int64_t>(1, 4);
    c.spec = *gen_mask_spec(B, Lq, Lk);
    c.encoding = pick_of(
        std::vector<MaskEncoding>(std::begin(kAllMaskEncodings), std::end(kAllMaskEncodings)));
    return c;
  });
}

Gen<SoftmaxCase> gen_softmax_case(const CaseLimits& limits) {
  return gen::exec([=] {
    SoftmaxCase c;
    c.dtype = pick_dtype(limits);
    c.storage = limits.storage_for(c.dtype);
    const std::int64_t Lk = *gen_length(2 * limits.max_len);
    const std::int64_t Lq = pick_lq(Lk, limits.max_len);
    std::int64_t B = *gen::inRange<std::int64_t>(1, 4);
    std::int64_t H = *gen::inRange<std::int64_t>(1, 4);
    const std::int64_t cap = limits.max_work / 4;
    auto work = [&] {
      return B * H * std::max<std::int64_t>(Lq, 1) * std::max<std::int64_t>(Lk, 1);
    };
    while (work() > cap && B > 1) --B;
    while (work() > cap && H > 1) --H;
    c.problem.H = H;
    c.problem.mask = *gen_mask_spec(B, Lq, Lk);
    c.style = pick_style();
    c.problem.scale = pick<double>({{1, 0.125}, {1, 3.0}, {4, pick_scale(1.0, extreme(c.style))}});
    c.data_seed = *gen::arbitrary<std::uint64_t>();
    return c;
  });
}

Gen<AttentionCase> gen_attention_case(const CaseLimits& limits) {
  return gen::exec([=] {
    AttentionCase c;
    c.dtype = pick_dtype(limits);
    c.storage = limits.storage_for(c.dtype);
    const std::int64_t Lk = *gen_length(limits.max_len);
    const std::int64_t Lq = pick_lq(Lk, limits.max_len);
    std::int64_t B = *gen::inRange<std::int64_t>(1, 4);
    // Size-independent, so that grouped-query heads (Hkv > 1 with group > 1, where h / group
    // and h % Hkv differ) also occur in the small early cases.
    std::int64_t Hkv = pick<std::int64_t>({{1, 1}, {1, 2}});
    std::int64_t group = pick<std::int64_t>({{1, 1}, {1, 2}, {1, 3}});
    std::int64_t D = chance(2, 3) ? pick_of<std::int64_t>({32, 59, 64, 111, 128})
                                  : *gen::inRange<std::int64_t>(1, 17);
    // Keep the naive reference cheap: give up batch, then heads, then head dim.
    auto work = [&] {
      return B * Hkv * group * std::max<std::int64_t>(Lq, 1) * std::max<std::int64_t>(Lk, 1) * D;
    };
    while (work() > limits.max_work && B > 1) --B;
    while (work() > limits.max_work && group > 1) --group;
    while (work() > limits.max_work && Hkv > 1) --Hkv;
    while (work() > limits.max_work && D > 1) D = std::max<std::int64_t>(1, D / 2);
    c.problem.H = Hkv * group;
    c.problem.Hkv = Hkv;
    c.problem.D = D;
    c.problem.mask = *gen_mask_spec(B, Lq, Lk);
    c.style = pick_style();
    // Scale and data drawn together: extreme data meets a non-default scale half the time.
    if (const double s = pick_scale(1 / std::sqrt(double(D)), extreme(c.style));
        s != 1 / std::sqrt(double(D)))
      c.problem.scale = s;
    c.data_seed = *gen::arbitrary<std::uint64_t>();
    c.want_lse = limits.attention_lse && chance(4, 1);
    return c;
  });
}

Gen<LossCase> gen_loss_case(const CaseLimits& limits) {
  return gen::exec([=] {
    LossCase c;
    c.dtype = pick_dtype(limits);
    c.storage = limits.storage_for(c.dtype);
    LossProblem& p = c.problem;
    switch (pick<int>({{1, 0}, {3, 1}, {2, 2}})) {
      case 0:
        p.V = pick_of<std::int64_t>({1, 2});
        break;
      case 1:
        p.V = *gen::inRange<std::int64_t>(2, 60);
        break;
      default:
        p.V = pick_of<std::int64_t>({127, 128, 129, 255, 256, 257, 1000, 4097});
    }
    p.N = chance(4, 1) ? *gen::inRange<std::int64_t>(1, 65) : pick_of<std::int64_t>({0, 1});
    while (p.N * p.V > limits.max_work / 8 && p.N > 1) p.N /= 2;
    p.ignore_index = pick<std::int64_t>({{8, kDefaultIgnoreIndex}, {1, -1}, {1, p.V}});
    p.reduction =
        pick<Reduction>({{2, Reduction::mean}, {1, Reduction::sum}, {1, Reduction::none}});
    if (chance(1, 2)) p.label_smoothing = pick<double>({{2, 0.1}, {1, 0.5}, {1, 1.0}});
    p.weighted = chance(1, 2);
    c.ignored_fraction = pick<double>({{3, 0.0}, {1, 0.1}, {2, 0.5}, {1, 1.0}});
    c.style = pick_style();
    c.data_seed = *gen::arbitrary<std::uint64_t>();
    return c;
  });
}

Gen<LabelsCase> gen_labels_case() {
  return gen::exec([] {
    LabelsCase c;
    c.problem.B = *gen::inRange<std::int64_t>(1, 5);
    c.problem.L =
        chance(4, 1) ? *gen::inRange<std::int64_t>(0, 41) : pick_of<std::int64_t>({0, 1, 2});
    c.problem.ignore_index = pick<std::int64_t>({{4, kDefaultIgnoreIndex}, {1, -1}});
    c.padding = pick<PaddingSide>({{1, PaddingSide::right}, {1, PaddingSide::left}});
    for (std::int64_t b = 0; b < c.problem.B; ++b)
      c.lengths.push_back(*gen_valid_length(c.problem.L));
    if (chance(2, 1))
      for (std::int64_t b = 0; b < c.problem.B; ++b)
        c.prompt_lens.push_back(*gen::inRange<std::int32_t>(0, c.lengths[b] + 3));
    c.V = *gen::inRange<std::int64_t>(2, 50);
    c.pad_id = pick<std::int64_t>({{2, 0}, {1, c.V - 1}});
    c.eos_is_pad = chance(3, 1);
    c.data_seed = *gen::arbitrary<std::uint64_t>();
    return c;
  });
}

Gen<MlmCase> gen_mlm_case() {
  return gen::exec([] {
    MlmCase c;
    MlmProblem& p = c.problem;
    p.B = *gen::inRange<std::int64_t>(1, 5);
    p.L = chance(4, 1) ? *gen::inRange<std::int64_t>(0, 97) : pick_of<std::int64_t>({0, 1, 2});
    c.padding = pick<PaddingSide>({{1, PaddingSide::right}, {1, PaddingSide::left}});
    for (std::int64_t b = 0; b < p.B; ++b) c.lengths.push_back(*gen_valid_length(p.L));
    switch (pick<int>({{1, 0}, {3, 1}, {1, 2}})) {
      case 0:
        p.V = pick_of<std::int64_t>({1, 2, 3});
        break;
      case 1:
        p.V = *gen::inRange<std::int64_t>(4, 200);
        break;
      default:
        p.V = pick_of<std::int64_t>({30522, 128256});
    }
    p.mask_id = *gen::inRange<std::int64_t>(0, p.V);
    p.p = pick<double>({{4, 0.15}, {1, 0.0}, {1, 1.0}, {2, 0.5}});
    if (chance(1, 2)) {
      p.p_mask = pick<double>({{1, 0.0}, {1, 1.0}, {1, 0.5}, {1, 0.6}});
      p.p_random =
          pick<double>({{1, 0.0}, {1, std::min(0.2, 1.0 - p.p_mask)}, {1, 1.0 - p.p_mask}});
    }
    p.seed = *gen::arbitrary<std::uint64_t>();
    p.whole_word = chance(1, 1);
    if (chance(1, 1)) p.max_predictions = *gen::inRange<std::int32_t>(1, 21);
    c.special_fraction = pick<double>({{3, 0.1}, {1, 0.0}, {1, 0.5}});
    c.continuation_fraction = pick<double>({{3, 0.3}, {1, 0.0}, {1, 0.8}});
    c.data_seed = *gen::arbitrary<std::uint64_t>();
    return c;
  });
}

Gen<MlmCase> gen_mlm_stat_case() {
  return gen::exec([] {
    MlmCase c;
    MlmProblem& p = c.problem;
    p.B = pick_of<std::int64_t>({8, 16});
    p.L = pick_of<std::int64_t>({512, 1024});
    c.padding = pick<PaddingSide>({{1, PaddingSide::right}, {1, PaddingSide::left}});
    for (std::int64_t b = 0; b < p.B; ++b)
      c.lengths.push_back(static_cast<std::int32_t>(
          p.L - *gen::resize(100, gen::inRange<std::int64_t>(0, p.L / 2))));
    p.V = pick_of<std::int64_t>({1000, 30522});
    p.mask_id = 103 % p.V;
    p.p = pick<double>({{3, 0.15}, {1, 0.3}, {1, 0.5}});
    if (chance(1, 1)) {
      p.p_mask = pick<double>({{1, 0.5}, {1, 0.7}});
      p.p_random = 0.2;
    }
    p.seed = *gen::arbitrary<std::uint64_t>();
    c.special_fraction = 0.05;
    c.continuation_fraction = 0.0;
    c.data_seed = *gen::arbitrary<std::uint64_t>();
    return c;
  });
}

std::vector<std::string> coverage_tags(const MaskSpec& m) {
  std::vector<std::string> tags;
  if (!m.q_lens.empty() || !m.k_lens.empty())
    tags.push_back(m.padding == PaddingSide::left ? "left-padding" : "right-padding");
  if (m.causal) tags.push_back("causal");
  if (m.window) tags.push_back("window");
  if ((m.causal || m.window) && m.alignment == Alignment::top_left) tags.push_back("top-left");
  if (m.has_documents()) tags.push_back("documents");
  if (m.Lq != m.Lk) tags.push_back(m.Lq > m.Lk ? "Lq>Lk" : "Lq<Lk");
  const FlatMask flat(m);
  const MaskView v = flat.view();
  bool empty_row = false;
  for (std::int64_t b = 0; b < m.B && !empty_row; ++b)
    for (std::int64_t q = 0; q < m.Lq && !empty_row; ++q) empty_row = visible_keys(v, b, q).empty();
  if (empty_row) tags.push_back("fully-masked-row");
  return tags;
}

}  // namespace maskcheck

rc::Gen<maskcheck::MaskSpec> rc::Arbitrary<maskcheck::MaskSpec>::arbitrary() {
  return rc::gen::exec([] {
    const std::int64_t Lk = *maskcheck::gen_length(64);
    const std::int64_t Lq = *rc::gen::inRange(0, 3) == 0 ? *maskcheck::gen_length(64) : Lk;
    return *maskcheck::gen_mask_spec(*rc::gen::inRange<std::int64_t>(1, 4), Lq, Lk);
  });
}
