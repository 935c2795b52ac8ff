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

// A length at a kernel boundary in [lo, hi], exactly or one off either side: a multiple of a tile
// size (16, 32, 64, 128, 256) or a power of two from 512 (split-KV decode, multi-block rows,
// 4096), the powers as often as one tile size for regular lengths and half the time for long
// ones. Regular lengths (`grow`) take the tile size itself half the time and otherwise a multiple
// that grows with the case size, as random lengths do: early cases stay cheap. Long lengths take
// a uniform multiple: long from the first case on. Falls back to lo when no boundary is in range.
std::int64_t boundary_length(std::int64_t lo, std::int64_t hi, bool grow) {
  // Multiples m * g, m >= 1, within one of [lo, hi].
  auto first = [&](std::int64_t g) { return std::max<std::int64_t>(1, (lo - 1 + g - 1) / g); };
  auto last = [&](std::int64_t g) { return (hi + 1) / g; };
  std::vector<std::int64_t> grains;
  for (std::int64_t g : {16, 32, 64, 128, 256})
    if (first(g) <= last(g)) grains.push_back(g);
  std::vector<std::int64_t> powers;
  for (std::int64_t p = 512; p <= hi + 1; p *= 2)
    if (p >= lo - 1) powers.push_back(p);
  if (grains.empty() && powers.empty()) return lo;
  std::int64_t v;
  if (!powers.empty() && (grains.empty() || chance(grow ? 1 : grains.size(), grains.size()))) {
    v = pick_of(powers);
  } else {
    const std::int64_t g = pick_of(grains);
    const auto multiple = gen::inRange<std::int64_t>(first(g), last(g) + 1);
    v = g * (!grow ? *gen::resize(100, multiple) : chance(1, 1) ? *multiple : first(g));
  }
  v += pick<std::int64_t>({{2, 0}, {1, -1}, {1, 1}});
  return std::clamp(v, lo, hi);
}

}  // namespace

Gen<std::int64_t> gen_length(std::int64_t max_len) {
  return gen::exec([=] {
    switch (pick<int>({{1, 0}, {2, 1}, {4, 2}})) {
      case 0:
        return std::min(pick_of<std::int64_t>({0, 1, 2}), max_len);
      case 1:
        return boundary_length(0, max_len, true);
      default:
        return *gen::inRange<std::int64_t>(0, max_len + 1);  // grows with the case size
    }
  });
}

Gen<std::int64_t> gen_long_length(std::int64_t lo, std::int64_t hi) {
  return gen::exec([=] {
    if (chance(2, 1)) return boundary_length(lo, hi, false);
    return *gen::inRange<std::int64_t>(lo, hi + 1);  // grows with the case size
  });
}

Gen<std::int32_t> gen_valid_length(std::int64_t L) {
  const auto l = static_cast<std::int32_t>(L);
  return gen::exec([=] {
    switch (pick<int>({{2, 0}, {1, 1}, {1, 2}, {1, 3}, {2, 5}, {3, 4}})) {
      case 0:
        return l;  // no padding
      case 1:
        return 0;  // empty sequence
      case 2:
        return std::min(1, l);
      case 3:
        return std::max(l - 1, 0);
      case 5:  // a valid length at a kernel boundary (the last tile of a decode kernel's loop)
        return static_cast<std::int32_t>(boundary_length(0, L, false));
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
    // Chunked attention: chunks of one key, at a kernel tile boundary, or any length past Lk.
    if (chance(1, 4)) {
      switch (pick<int>({{1, 0}, {2, 1}, {3, 2}})) {
        case 0:
          m.chunk = 1;
          break;
        case 1:
          m.chunk =
              std::max<std::int64_t>(1, boundary_length(1, std::max<std::int64_t>(Lk, 1), false));
          break;
        default:
          m.chunk = *gen::inRange<std::int64_t>(1, Lk + 3);
      }
    }
    if (m.causal || m.window || m.chunk > 0)
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
    // Prefix-LM (with causal): per sequence, none, one key, the whole sequence, or any length
    // up to Lk (the prefix counts from each segment's first key, so longer than a document too).
    if (m.causal && B > 0 && chance(1, 4)) {
      for (std::int64_t b = 0; b < B; ++b) {
        const int kind = pick<int>({{1, 0}, {1, 1}, {1, 2}, {3, 3}});
        const std::int64_t P = kind == 0   ? 0
                               : kind == 1 ? std::min<std::int64_t>(1, Lk)
                               : kind == 2 ? m.k_len(b)
                                           : *gen::inRange<std::int64_t>(0, Lk + 1);
        m.prefix_lens.push_back(static_cast<std::int32_t>(P));
      }
    }
    // Attention sinks (StreamingLLM): mostly with a sliding window (what they are for: a
    // window never drops them), sometimes without one (then only the causal clause and the chunk
    // limit them). One key, StreamingLLM's 4, or any count up to past Lk.
    const bool windowed = m.window && m.window->left != kUnbounded;
    if (windowed ? chance(1, 3) : chance(1, 10)) {
      switch (pick<int>({{1, 0}, {2, 1}, {2, 2}})) {
        case 0:
          m.sink_tokens = 1;
          break;
        case 1:
          m.sink_tokens = 4;
          break;
        default:
          m.sink_tokens = *gen::inRange<std::int64_t>(1, Lk + 3);
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

// Whether a case is one of the tier's cheap long ones (listed second: shrinks toward regular).
bool draw_long(const CaseLimits& limits) {
  if (limits.long_share <= 0) return false;
  return pick<bool>({{static_cast<std::size_t>(limits.long_share - 1), false}, {1, true}});
}

std::int64_t at_least_1(std::int64_t x) {
  return std::max<std::int64_t>(x, 1);
}

struct AttentionDims {
  std::int64_t B, Hkv, group, D, Lq, Lk;
};

AttentionDims attention_dims(const CaseLimits& limits) {
  AttentionDims s{};
  const bool long_keys = draw_long(limits);
  if (long_keys) {
    // Decode-shaped: a few queries over long keys (split-KV paths, accumulation drift over
    // thousands of keys), few heads and a small head dim, so that the case stays cheap.
    s.Lk = *gen_long_length(limits.max_len + 1, limits.long_keys);
    s.Lq = pick_of<std::int64_t>({1, 2, 3, 4});
    s.B = *gen::inRange<std::int64_t>(1, 3);
    s.Hkv = pick<std::int64_t>({{1, 1}, {1, 2}});
    s.group = pick<std::int64_t>({{1, 1}, {1, 2}});
    s.D = chance(1, 1) ? pick_of<std::int64_t>({16, 32, 64}) : *gen::inRange<std::int64_t>(1, 17);
  } else {
    s.Lk = *gen_length(limits.max_len);
    s.Lq = pick_lq(s.Lk, limits.max_len);
    s.B = *gen::inRange<std::int64_t>(1, 4);
    // Size-independent, so that grouped-query heads (Hkv > 1 with group > 1, where h / group
    // and h % Hkv differ) also occur in the small early cases.
    s.Hkv = pick<std::int64_t>({{1, 1}, {1, 2}});
    s.group = pick<std::int64_t>({{1, 1}, {1, 2}, {1, 3}});
    s.D = chance(2, 3) ? pick_of<std::int64_t>({32, 59, 64, 111, 128})
                       : *gen::inRange<std::int64_t>(1, 17);
  }
  // Keep the naive reference cheap and the case within its memory budget: give up batch, then
  // heads, then head dim, then queries (only the larger tiers get that far). Long cases get a
  // quarter of the work: they are there for the length of the key axis.
  const std::int64_t max_work = long_keys ? limits.max_work / 4 : limits.max_work;
  auto over = [&] {
    const std::int64_t H = s.Hkv * s.group;
    return s.B * H * at_least_1(s.Lq) * at_least_1(s.Lk) * s.D > max_work ||
           attention_case_bytes(s.B, H, s.Hkv, s.Lq, s.Lk, s.D) > limits.max_bytes;
  };
  while (over() && s.B > 1) --s.B;
  while (over() && s.group > 1) --s.group;
  while (over() && s.Hkv > 1) --s.Hkv;
  while (over() && s.D > 1) s.D = std::max<std::int64_t>(1, s.D / 2);
  while (over() && s.Lq > 1) s.Lq /= 2;
  return s;
}

struct RowDims {
  std::int64_t B, H, Lq, Lk;
};

// Softmax rows: regular, or one or two long rows (multi-block rows, accumulation over tens of
// thousands of keys).
RowDims softmax_dims(const CaseLimits& limits) {
  RowDims s{};
  if (draw_long(limits)) {
    s.Lk = *gen_long_length(2 * limits.max_len + 1, limits.long_row);
    s.Lq = pick_of<std::int64_t>({1, 2});
    s.B = 1;
    s.H = 1;
  } else {
    s.Lk = *gen_length(2 * limits.max_len);
    s.Lq = pick_lq(s.Lk, limits.max_len);
    s.B = *gen::inRange<std::int64_t>(1, 4);
    s.H = *gen::inRange<std::int64_t>(1, 4);
  }
  auto over = [&] {
    return s.B * s.H * at_least_1(s.Lq) * at_least_1(s.Lk) > limits.max_work / 4 ||
           softmax_case_bytes(s.B, s.H, s.Lq, s.Lk) > limits.max_bytes;
  };
  while (over() && s.B > 1) --s.B;
  while (over() && s.H > 1) --s.H;
  while (over() && s.Lq > 1) s.Lq /= 2;
  return s;
}

// Masks: regular (up to half the tier's max_len: every encoding of B x Lq x Lk is checked), or
// a few query rows over long keys.
RowDims mask_dims(const CaseLimits& limits) {
  RowDims s{};
  const std::int64_t max_len = limits.max_len / 2;
  if (draw_long(limits)) {
    s.Lk = *gen_long_length(max_len + 1, limits.long_keys);
    s.Lq = pick_of<std::int64_t>({1, 2, 3, 4});
    s.B = *gen::inRange<std::int64_t>(1, 3);
  } else {
    s.Lk = *gen_length(max_len);
    s.Lq = pick_lq(s.Lk, max_len);
    s.B = *gen::inRange<std::int64_t>(1, 4);
  }
  auto over = [&] {
    return s.B * at_least_1(s.Lq) * at_least_1(s.Lk) > limits.max_work / 4 ||
           mask_case_bytes(s.B, s.Lq, s.Lk) > limits.max_bytes;
  };
  while (over() && s.B > 1) --s.B;
  while (over() && s.Lq > 1) s.Lq /= 2;
  return s;
}

}  // namespace

Gen<MaskCase> gen_mask_case(const CaseLimits& limits) {
  return gen::exec([=] {
    MaskCase c;
    c.dtype = pick_dtype(limits);
    const RowDims s = mask_dims(limits);
    c.spec = *gen_mask_spec(s.B, s.Lq, s.Lk);
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
    const RowDims s = softmax_dims(limits);
    const std::int64_t B = s.B, H = s.H, Lq = s.Lq, Lk = s.Lk;
    c.problem.H = H;
    c.problem.mask = *gen_mask_spec(B, Lq, Lk);
    c.style = pick_style();
    c.problem.scale = pick<double>({{1, 0.125}, {1, 3.0}, {4, pick_scale(1.0, extreme(c.style))}});
    c.data_seed = *gen::arbitrary<std::uint64_t>();
    return c;
  });
}

// Score modifiers among those the implementation applies, each in one case of six (some modifier
// in about two cases of five):
// soft-caps from tiny (every score saturates) to Gemma 2's 50; ALiBi with the usual schedule, a
// steep power of two (far keys vanish) or random slopes, negative ones included; sink logits
// around the scores, far below them (no effect) or far above (the sink takes almost all weight).
ScoreModifiers draw_modifiers(const ScoreModifierSupport& can, std::int64_t H) {
  ScoreModifiers m;
  if (can.softcap && chance(1, 5)) m.softcap = pick_of<double>({50.0, 30.0, 5.0, 1.0, 0.25});
  if (can.alibi && chance(1, 5)) {
    switch (pick<int>({{2, 0}, {1, 1}, {1, 2}})) {
      case 0:
        m.alibi_slopes = alibi_slope_schedule(H);
        break;
      case 1:
        m.alibi_slopes.assign(static_cast<std::size_t>(H), pick_of<double>({0.5, 4.0, 0.0}));
        break;
      default:
        for (std::int64_t h = 0; h < H; ++h)
          m.alibi_slopes.push_back(*gen::inRange<int>(-100, 1001) / 1000.0);
    }
  }
  if (can.sink_logits && chance(1, 5)) {
    const double centre = pick_of<double>({0.0, -30.0, 8.0});
    for (std::int64_t h = 0; h < H; ++h)
      m.sink_logits.push_back(centre + *gen::inRange<int>(-300, 301) / 100.0);
  }
  return m;
}

Gen<AttentionCase> gen_attention_case(const CaseLimits& limits) {
  return gen::exec([=] {
    AttentionCase c;
    c.dtype = pick_dtype(limits);
    c.storage = limits.storage_for(c.dtype);
    const AttentionDims s = attention_dims(limits);
    const std::int64_t B = s.B, Lq = s.Lq, Lk = s.Lk, Hkv = s.Hkv, group = s.group, D = s.D;
    c.problem.H = Hkv * group;
    c.problem.Hkv = Hkv;
    c.problem.D = D;
    c.problem.mask = *gen_mask_spec(B, Lq, Lk);
    c.style = pick_style();
    // Scale and data drawn together: extreme data meets a non-default scale half the time.
    if (const double sc = pick_scale(1 / std::sqrt(double(D)), extreme(c.style));
        sc != 1 / std::sqrt(double(D)))
      c.problem.scale = sc;
    c.data_seed = *gen::arbitrary<std::uint64_t>();
    c.want_lse = limits.attention_lse && chance(4, 1);
    if (limits.score_modifiers.any())
      c.problem.mods = draw_modifiers(limits.score_modifiers, c.problem.H);
    return c;
  });
}

Gen<LossCase> gen_loss_case(const CaseLimits& limits) {
  return gen::exec([=] {
    LossCase c;
    c.dtype = pick_dtype(limits);
    c.storage = limits.storage_for(c.dtype);
    LossProblem& p = c.problem;
    const bool long_rows = draw_long(limits);
    if (long_rows) {
      // A vocabulary-sized row (multi-block rows, accumulation over tens of thousands of logits).
      p.V = *gen_long_length(4098, limits.long_row);
    } else {
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
    }
    p.N = chance(4, 1) ? *gen::inRange<std::int64_t>(1, 65) : pick_of<std::int64_t>({0, 1});
    const std::int64_t max_work = limits.max_work / (long_rows ? 32 : 8);
    while ((p.N * p.V > max_work || loss_case_bytes(p.N, p.V) > limits.max_bytes) && p.N > 1)
      p.N /= 2;
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
  if ((m.causal || m.window || m.chunk > 0) && m.alignment == Alignment::top_left)
    tags.push_back("top-left");
  if (m.has_documents()) tags.push_back("documents");
  if (!m.prefix_lens.empty()) tags.push_back("prefix-lm");
  if (m.chunk > 0) tags.push_back("chunked");
  if (m.sink_tokens > 0) tags.push_back("sink-tokens");
  if (m.Lq != m.Lk) tags.push_back(m.Lq > m.Lk ? "Lq>Lk" : "Lq<Lk");
  // Lengths where kernels take other paths (tiled queries, split-KV decode, long rows).
  for (std::int64_t t : {64, 128})
    if (m.Lq >= t) tags.push_back("Lq>=" + std::to_string(t));
  for (std::int64_t t : {512, 4096, 16384})
    if (m.Lk >= t) tags.push_back("Lk>=" + std::to_string(t));
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
