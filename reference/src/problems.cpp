#include "maskcheck/reference/problems.hpp"

#include <algorithm>
#include <cmath>

#include "maskcheck/reference/predicate.hpp"

namespace maskcheck {
namespace {

std::string idx(std::string_view name, std::size_t i) {
  return std::string(name) + "[" + std::to_string(i) + "]";
}

void validate_lens(std::string_view name, const std::vector<std::int32_t>& lens, std::int64_t B,
                   std::int64_t L, std::string_view Lname) {
  if (lens.empty()) return;
  require_size(name, lens.size(), B);
  for (std::size_t b = 0; b < lens.size(); ++b)
    require(lens[b] >= 0 && lens[b] <= L, idx(name, b), lens[b],
            "must be in [0, " + std::string(Lname) + "=" + std::to_string(L) + "]");
}

void validate_cu(std::string_view name, const std::vector<std::vector<std::int32_t>>& cu,
                 const MaskSpec& m, bool is_q) {
  require_size(name, cu.size(), m.B);
  for (std::int64_t b = 0; b < m.B; ++b) {
    const auto& c = cu[b];
    const std::string nb = idx(name, b);
    require(c.size() >= 2, nb + ".size()", static_cast<long long>(c.size()),
            "must be >= 2 (at least one document)");
    require(c.front() == 0, nb + "[0]", c.front(), "must be 0");
    for (std::size_t d = 1; d < c.size(); ++d)
      require(c[d] >= c[d - 1], nb + "[" + std::to_string(d) + "]", c[d],
              "cu_seqlens must be non-decreasing (previous is " + std::to_string(c[d - 1]) + ")");
    const std::int64_t len = is_q ? m.q_len(b) : m.k_len(b);
    require(c.back() == len, nb + ".back()", c.back(),
            "must equal the sequence's valid length " + std::to_string(len));
  }
}

}  // namespace

void MaskSpec::validate() const {
  require(B >= 0, "B", B, "must be >= 0");
  require(Lq >= 0 && Lq <= (std::int64_t{1} << 31) - 1, "Lq", Lq, "must be in [0, 2^31)");
  require(Lk >= 0 && Lk <= (std::int64_t{1} << 31) - 1, "Lk", Lk, "must be in [0, 2^31)");
  validate_lens("q_lens", q_lens, B, Lq, "Lq");
  validate_lens("k_lens", k_lens, B, Lk, "Lk");
  if (window) {
    require(window->left >= 0 && (window->left <= kMaxWindow || window->left == kUnbounded),
            "window.left", window->left, "must be >= 0 and <= 2^40, or unbounded");
    require(window->right >= 0 && (window->right <= kMaxWindow || window->right == kUnbounded),
            "window.right", window->right, "must be >= 0 and <= 2^40, or unbounded");
  }
  if (!prefix_lens.empty()) {
    require(causal, "prefix_lens.size()", static_cast<long long>(prefix_lens.size()),
            "needs causal (prefix-LM relaxes the causal clause to the prefix; without causal "
            "every key is visible already)");
    // Any length >= 0: one longer than a segment makes the whole segment bidirectional (a
    // document of a packed sequence, or a sequence run alone, may be shorter than the prefix).
    require_size("prefix_lens", prefix_lens.size(), B);
    for (std::size_t b = 0; b < prefix_lens.size(); ++b)
      require(prefix_lens[b] >= 0, idx("prefix_lens", b), prefix_lens[b], "must be >= 0");
  }
  require(chunk >= 0 && chunk <= kMaxWindow, "chunk", chunk,
          "must be >= 0 and <= 2^40 (0: no chunking)");
  require(sink_tokens >= 0 && sink_tokens <= kMaxWindow, "sink_tokens", sink_tokens,
          "must be >= 0 and <= 2^40 (0: no attention sinks)");
  if (!cu_seqlens_q.empty() || !cu_seqlens_k.empty()) {
    require(!cu_seqlens_q.empty(), "cu_seqlens_q.size()", 0,
            "must be given together with cu_seqlens_k");
    require(!cu_seqlens_k.empty(), "cu_seqlens_k.size()", 0,
            "must be given together with cu_seqlens_q");
    validate_cu("cu_seqlens_q", cu_seqlens_q, *this, true);
    validate_cu("cu_seqlens_k", cu_seqlens_k, *this, false);
    for (std::int64_t b = 0; b < B; ++b)
      require(cu_seqlens_k[b].size() == cu_seqlens_q[b].size(), idx("cu_seqlens_k", b) + ".size()",
              static_cast<long long>(cu_seqlens_k[b].size()),
              "must equal cu_seqlens_q[" + std::to_string(b) +
                  "].size() = " + std::to_string(cu_seqlens_q[b].size()));
  }
}

void SoftmaxProblem::validate() const {
  mask.validate();
  require(H >= 1, "H", H, "must be >= 1");
  if (!std::isfinite(scale)) throw_invalid("scale", std::to_string(scale), "must be finite");
  (void)numel();
}

std::int64_t SoftmaxProblem::numel() const {
  return checked_numel("softmax x", {mask.B, H, mask.Lq, mask.Lk});
}

std::string ScoreModifiers::describe() const {
  std::string s;
  auto add = [&](const char* name) { s += (s.empty() ? "" : ", ") + std::string(name); };
  if (softcap != 0) add("softcap");
  if (!alibi_slopes.empty()) add("alibi");
  if (!sink_logits.empty()) add("sink logits");
  return s;
}

void ScoreModifiers::validate(std::int64_t H) const {
  if (!(softcap == 0 || (softcap >= 0x1p-10 && softcap <= 0x1p20)))
    throw_invalid("softcap", std::to_string(softcap), "must be 0 (none) or in [2^-10, 2^20]");
  auto check = [&](const char* name, const std::vector<double>& v) {
    if (v.empty()) return;
    require_size(name, v.size(), H);
    for (std::size_t h = 0; h < v.size(); ++h)
      if (!std::isfinite(v[h])) throw_invalid(idx(name, h), std::to_string(v[h]), "must be finite");
  };
  check("alibi_slopes", alibi_slopes);
  check("sink_logits", sink_logits);
}

std::vector<double> alibi_slope_schedule(std::int64_t H) {
  require(H >= 1, "H", H, "must be >= 1");
  std::int64_t n = 1;
  while (n * 2 <= H) n *= 2;
  std::vector<double> s;
  for (std::int64_t i = 1; i <= n; ++i) s.push_back(std::exp2(-8.0 * i / n));
  for (std::int64_t i = 1; static_cast<std::int64_t>(s.size()) < H; i += 2)
    s.push_back(std::exp2(-4.0 * i / n));
  return s;
}

double AttentionShape::effective_scale() const {
  return scale ? *scale : 1.0 / std::sqrt(static_cast<double>(D));
}

void AttentionShape::validate(std::int64_t B, std::int64_t Lq, std::int64_t Lk) const {
  require(H >= 1, "H", H, "must be >= 1");
  require(Hkv >= 1, "Hkv", Hkv, "must be >= 1");
  require(H % Hkv == 0, "H % Hkv", H % Hkv,
          "must be 0 (H=" + std::to_string(H) + ", Hkv=" + std::to_string(Hkv) + ")");
  require(D >= 1, "D", D, "must be >= 1");
  if (scale && !std::isfinite(*scale))
    throw_invalid("scale", std::to_string(*scale), "must be finite");
  mods.validate(H);
  (void)checked_numel("q", {B, H, Lq, D});
  (void)checked_numel("k", {B, Hkv, Lk, D});
}

double AttentionProblem::effective_scale() const {
  return shape().effective_scale();
}

void AttentionProblem::validate() const {
  mask.validate();
  shape().validate(mask.B, mask.Lq, mask.Lk);
}

std::int64_t AttentionProblem::q_numel() const {
  return checked_numel("q", {mask.B, H, mask.Lq, D});
}
std::int64_t AttentionProblem::kv_numel() const {
  return checked_numel("k", {mask.B, Hkv, mask.Lk, D});
}
std::int64_t AttentionProblem::lse_numel() const {
  return checked_numel("lse", {mask.B, H, mask.Lq});
}

void PagedKv::validate(const AttentionProblem& p) const {
  p.validate();
  const MaskSpec& m = p.mask;
  require(page_size >= 1 && page_size <= (std::int64_t{1} << 16), "page_size", page_size,
          "must be in [1, 65536]");
  require(num_pages >= 0 && num_pages <= (std::int64_t{1} << 31) - 1, "num_pages", num_pages,
          "must be in [0, 2^31)");
  require(max_pages >= 0 && max_pages <= (std::int64_t{1} << 31) - 1, "max_pages", max_pages,
          "must be in [0, 2^31)");
  require(m.Lk <= max_pages * page_size, "Lk", m.Lk,
          "must be <= max_pages * page_size = " + std::to_string(max_pages * page_size));
  require(m.k_lens.empty() || m.padding == PaddingSide::right, "padding", 1,
          "a paged cache holds each sequence's keys from position 0: right padding only");
  require_size("block_table", block_table.size(), checked_numel("block_table", {m.B, max_pages}));
  for (std::int64_t b = 0; b < m.B; ++b)
    for (std::int64_t i = 0; i < pages_of(m.k_len(b), page_size); ++i) {
      const std::int32_t e = block_table[static_cast<std::size_t>(b * max_pages + i)];
      require(e >= 0 && e < num_pages,
              idx("block_table", static_cast<std::size_t>(b * max_pages + i)), e,
              "must be a page in [0, num_pages=" + std::to_string(num_pages) + ") (sequence " +
                  std::to_string(b) + " uses its first " +
                  std::to_string(pages_of(m.k_len(b), page_size)) + " entries)");
    }
  (void)cache_numel(p);
}

std::int64_t PagedKv::cache_numel(const AttentionProblem& p) const {
  return checked_numel("k_cache", {num_pages, page_size, p.Hkv, p.D});
}

void validate_paged_inputs(const AttentionProblem& p, const PagedKv& kv, std::size_t q_size,
                           std::size_t k_size, std::size_t v_size) {
  kv.validate(p);
  require_size("q", q_size, p.q_numel());
  require_size("k_cache", k_size, kv.cache_numel(p));
  require_size("v_cache", v_size, kv.cache_numel(p));
}

AttentionProblem VarlenAttentionProblem::padded() const {
  validate();
  AttentionProblem p;
  p.H = H;
  p.Hkv = Hkv;
  p.D = D;
  p.scale = scale;
  MaskSpec& m = p.mask;
  m.B = static_cast<std::int64_t>(cu_seqlens_q.size()) - 1;
  for (std::int64_t b = 0; b < m.B; ++b) {
    m.q_lens.push_back(cu_seqlens_q[b + 1] - cu_seqlens_q[b]);
    m.k_lens.push_back(cu_seqlens_k[b + 1] - cu_seqlens_k[b]);
  }
  m.Lq = m.q_lens.empty() ? 0 : *std::max_element(m.q_lens.begin(), m.q_lens.end());
  m.Lk = m.k_lens.empty() ? 0 : *std::max_element(m.k_lens.begin(), m.k_lens.end());
  m.causal = causal;
  m.alignment = alignment;
  m.window = window;
  return p;
}

void VarlenAttentionProblem::validate() const {
  auto check_cu = [](const char* name, const std::vector<std::int32_t>& cu) {
    require(!cu.empty(), std::string(name) + ".size()", 0, "must be >= 1 (B + 1 offsets)");
    require(cu[0] == 0, std::string(name) + "[0]", cu[0], "must be 0");
    for (std::size_t i = 1; i < cu.size(); ++i)
      require(cu[i] >= cu[i - 1], std::string(name) + "[" + std::to_string(i) + "]", cu[i],
              "must be non-decreasing (previous " + std::to_string(cu[i - 1]) + ")");
  };
  check_cu("cu_seqlens_q", cu_seqlens_q);
  check_cu("cu_seqlens_k", cu_seqlens_k);
  require(cu_seqlens_k.size() == cu_seqlens_q.size(), "cu_seqlens_k.size()",
          static_cast<long long>(cu_seqlens_k.size()),
          "must equal cu_seqlens_q.size() = " + std::to_string(cu_seqlens_q.size()));
}

void LossProblem::validate() const {
  require(N >= 0, "N", N, "must be >= 0");
  require(V >= 1, "V", V, "must be >= 1");
  require(V <= (std::int64_t{1} << 31) - 1, "V", V, "must be < 2^31");
  require(ignore_index < 0 || ignore_index >= V, "ignore_index", ignore_index,
          "must lie outside [0, V=" + std::to_string(V) + ")");
  if (!(label_smoothing >= 0.0 && label_smoothing <= 1.0))
    throw_invalid("label_smoothing", std::to_string(label_smoothing), "must be in [0, 1]");
  (void)checked_numel("logits", {N, V});
}

void LmLabelsProblem::validate() const {
  require(B >= 0, "B", B, "must be >= 0");
  require(L >= 0, "L", L, "must be >= 0");
  (void)checked_numel("ids", {B, L});
}

void MlmProblem::validate() const {
  require(B >= 0, "B", B, "must be >= 0");
  require(L >= 0 && L < (std::int64_t{1} << 31), "L", L, "must be in [0, 2^31)");
  require(V >= 1 && V < (std::int64_t{1} << 31), "V", V, "must be in [1, 2^31)");
  require(mask_id >= 0 && mask_id < V, "mask_id", mask_id,
          "must be in [0, V=" + std::to_string(V) + ")");
  require(ignore_index < 0 || ignore_index >= V, "ignore_index", ignore_index,
          "must lie outside [0, V)");
  auto prob = [](const char* name, double x) {
    if (!(x >= 0.0 && x <= 1.0)) throw_invalid(name, std::to_string(x), "must be in [0, 1]");
  };
  prob("p", p);
  prob("p_mask", p_mask);
  prob("p_random", p_random);
  prob("p_mask + p_random", p_mask + p_random);
  require(max_predictions >= 0, "max_predictions", max_predictions, "must be >= 0 (0: no cap)");
  (void)checked_numel("ids", {B, L});
}

FlatMask::FlatMask(const MaskSpec& spec) {
  spec.validate();
  q_lens_ = spec.q_lens;
  k_lens_ = spec.k_lens;
  prefix_lens_ = spec.prefix_lens;
  if (spec.has_documents()) {
    doc_ptr_.push_back(0);
    for (std::int64_t b = 0; b < spec.B; ++b) {
      cu_q_.insert(cu_q_.end(), spec.cu_seqlens_q[b].begin(), spec.cu_seqlens_q[b].end());
      cu_k_.insert(cu_k_.end(), spec.cu_seqlens_k[b].begin(), spec.cu_seqlens_k[b].end());
      doc_ptr_.push_back(static_cast<std::int32_t>(cu_q_.size()));
    }
  }
  base_.B = spec.B;
  base_.Lq = spec.Lq;
  base_.Lk = spec.Lk;
  base_.padding = spec.padding;
  base_.causal = spec.causal;
  base_.alignment = spec.alignment;
  base_.chunk = spec.chunk;
  base_.sink_tokens = spec.sink_tokens;
  if (spec.window) {
    base_.window_left = spec.window->left;
    base_.window_right = spec.window->right;
  }
}

MaskView FlatMask::view() const {
  MaskView v = base_;
  v.q_lens = q_lens_.empty() ? nullptr : q_lens_.data();
  v.k_lens = k_lens_.empty() ? nullptr : k_lens_.data();
  v.doc_ptr = doc_ptr_.empty() ? nullptr : doc_ptr_.data();
  v.cu_q = cu_q_.empty() ? nullptr : cu_q_.data();
  v.cu_k = cu_k_.empty() ? nullptr : cu_k_.data();
  v.prefix_lens = prefix_lens_.empty() ? nullptr : prefix_lens_.data();
  return v;
}

void validate_attention_inputs(const AttentionProblem& p, std::size_t q_size, std::size_t k_size,
                               std::size_t v_size) {
  p.validate();
  require_size("q", q_size, p.q_numel());
  require_size("k", k_size, p.kv_numel());
  require_size("v", v_size, p.kv_numel());
}
void validate_attention_inputs(const AttentionProblem& p, std::size_t q_size, std::size_t k_size,
                               std::size_t v_size, std::size_t dout_size) {
  validate_attention_inputs(p, q_size, k_size, v_size);
  require_size("dout", dout_size, p.q_numel());
}

void validate_loss_inputs(const LossProblem& p, std::span<const std::int64_t> labels,
                          std::span<const double> weights) {
  require_size("labels", labels.size(), p.N);
  for (std::int64_t i = 0; i < p.N; ++i)
    if (labels[i] != p.ignore_index && (labels[i] < 0 || labels[i] >= p.V))
      throw_invalid("labels[" + std::to_string(i) + "]", static_cast<long long>(labels[i]),
                    "must be in [0, V=" + std::to_string(p.V) +
                        ") or ignore_index=" + std::to_string(p.ignore_index));
  if (p.weighted) {
    require_size("weights", weights.size(), p.N);
    for (std::int64_t i = 0; i < p.N; ++i)
      if (!(weights[i] >= 0.0 && std::isfinite(weights[i])))
        throw_invalid("weights[" + std::to_string(i) + "]", std::to_string(weights[i]),
                      "must be finite and >= 0");
  } else if (!weights.empty()) {
    throw_invalid("weights.size()", static_cast<long long>(weights.size()),
                  "must be 0 when the problem is not weighted");
  }
}

void validate_upstream_gradient(const LossProblem& p, bool backward,
                                std::span<const double> grad_output) {
  if (grad_output.empty()) return;
  if (!backward && p.N > 0)  // (with N = 0 there is no gradient to ask for)
    throw_invalid("grad_output.size()", static_cast<long long>(grad_output.size()),
                  "must be 0 without a backward (an upstream gradient is the backward's input)");
  require_size("grad_output", grad_output.size(), p.reduction == Reduction::none ? p.N : 1);
}

void validate_mlm_inputs(const MlmProblem& p, std::span<const std::int64_t> ids,
                         std::span<const std::uint8_t> keep, std::span<const std::uint8_t> special,
                         std::span<const std::uint8_t> continuation) {
  p.validate();
  const std::int64_t n = checked_numel("ids", {p.B, p.L});
  require_size("ids", ids.size(), n);
  require_size("keep", keep.size(), n);
  require_size("special", special.size(), n);
  if (p.whole_word) require_size("continuation", continuation.size(), n);
  for (std::int64_t i = 0; i < n; ++i)
    if (keep[i] && (ids[i] < 0 || ids[i] >= p.V))
      throw_invalid("ids[" + std::to_string(i) + "]", static_cast<long long>(ids[i]),
                    "a valid token must be in [0, V=" + std::to_string(p.V) + ")");
}

MlmThresholds mlm_thresholds(const MlmProblem& p) {
  return MlmThresholds{probability_threshold(p.p), probability_threshold(p.p_mask),
                       probability_threshold(p.p_mask + p.p_random)};
}

std::string to_string(PaddingSide s) {
  return s == PaddingSide::left ? "left" : "right";
}
std::string to_string(Alignment a) {
  return a == Alignment::top_left ? "top_left" : "bottom_right";
}
std::string to_string(Reduction r) {
  switch (r) {
    case Reduction::none:
      return "none";
    case Reduction::sum:
      return "sum";
    case Reduction::mean:
      return "mean";
  }
  return "?";
}

PaddingSide padding_side_from_string(std::string_view s) {
  if (s == "right") return PaddingSide::right;
  if (s == "left") return PaddingSide::left;
  throw_invalid("padding", std::string(s), "must be right or left");
}
Alignment alignment_from_string(std::string_view s) {
  if (s == "bottom_right") return Alignment::bottom_right;
  if (s == "top_left") return Alignment::top_left;
  throw_invalid("alignment", std::string(s), "must be bottom_right or top_left");
}
Reduction reduction_from_string(std::string_view s) {
  if (s == "none") return Reduction::none;
  if (s == "sum") return Reduction::sum;
  if (s == "mean") return Reduction::mean;
  throw_invalid("reduction", std::string(s), "must be none, sum or mean");
}

}  // namespace maskcheck
