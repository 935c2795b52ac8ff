#include "maskcheck/suite/properties.hpp"
#include "maskcheck/reference/predicate.hpp"

#include <rapidcheck.h>

#include <algorithm>
#include <limits>
#include <optional>
#include <ostream>

namespace maskcheck {

const std::vector<Property>& property_catalogue() {
  static const std::vector<Property> catalogue = [] {
    std::vector<Property> v;
    add_mask_properties(v);
    add_softmax_properties(v);
    add_attention_properties(v);
    add_attention_modifier_properties(v);
    add_attention_paged_properties(v);
    add_attention_backward_properties(v);
    add_loss_properties(v);
    add_labels_properties(v);
    add_mlm_properties(v);
    return v;
  }();
  return catalogue;
}

const Property* find_property(std::string_view name) {
  for (const auto& p : property_catalogue())
    if (p.name == name) return &p;
  return nullptr;
}

bool supported(const Support& s) {
  if (s.ok) return true;
  RC_TAG("skipped: " + s.reason);
  return false;
}

void tag_case(const MaskSpec& m, DType t) {
  for (const auto& tag : coverage_tags(m)) RC_TAG(tag);
  RC_TAG(std::string(to_string(t)));
}

std::string_view to_string(Garbage g) {
  switch (g) {
    case Garbage::nan:
      return "NaN";
    case Garbage::pos_inf:
      return "+inf";
    case Garbage::neg_inf:
      return "-inf";
    case Garbage::half_max:
      return "+max/2";
    case Garbage::neg_half_max:
      return "-max/2";
    case Garbage::random_1e3:
      return "random N(0, 1e3)";
  }
  return "?";
}

void showValue(Garbage g, std::ostream& os) {
  os << to_string(g);
}

double garbage_value(Garbage g, DType t, DataRng& rng) {
  switch (g) {
    case Garbage::nan:
      return std::numeric_limits<double>::quiet_NaN();
    case Garbage::pos_inf:
      return std::numeric_limits<double>::infinity();
    case Garbage::neg_inf:
      return -std::numeric_limits<double>::infinity();
    case Garbage::half_max:
      return round_to(t, max_finite(t) / 2);
    case Garbage::neg_half_max:
      return round_to(t, -max_finite(t) / 2);
    case Garbage::random_1e3:
      return round_to(t, 1e3 * rng.normal());
  }
  return 0;
}

Garbage draw_garbage(std::initializer_list<Garbage> kinds) {
  const std::vector<Garbage> v(kinds);
  return *rc::gen::map(rc::gen::resize(100, rc::gen::inRange<std::size_t>(0, v.size())),
                       [v](std::size_t i) { return v[i]; })
              .as("garbage");
}

double draw_one_of(std::initializer_list<double> values, const char* name) {
  const std::vector<double> v(values);
  return *rc::gen::map(rc::gen::resize(100, rc::gen::inRange(0, static_cast<int>(v.size()))),
                       [v](int i) { return v[static_cast<std::size_t>(i)]; })
              .as(name);
}

PrefixSplit prefix_split(MaskSpec m, std::vector<std::int32_t> prefix_lens) {
  m.causal = true;
  m.window.reset();
  m.chunk = 0;
  m.cu_seqlens_q.clear();
  m.cu_seqlens_k.clear();
  m.padding = PaddingSide::right;
  PrefixSplit s;
  s.prefix = m;
  s.prefix.prefix_lens = std::move(prefix_lens);
  s.causal = m;
  s.causal.prefix_lens.clear();
  s.bidirectional = m;
  s.bidirectional.causal = false;
  s.bidirectional.prefix_lens.clear();
  s.bidirectional.k_lens.clear();
  for (std::int64_t b = 0; b < m.B; ++b)
    s.bidirectional.k_lens.push_back(static_cast<std::int32_t>(
        std::min<std::int64_t>(m.k_len(b), s.prefix.prefix_lens[static_cast<std::size_t>(b)])));
  s.prefix.validate();
  return s;
}

bool PrefixSplit::in_prefix(std::int64_t b, std::int64_t q) const {
  const MaskSpec& m = prefix;
  if (q >= m.q_len(b)) return false;  // (right padding: valid queries are [0, q_len))
  const std::int64_t diag =
      q + (m.alignment == Alignment::bottom_right ? m.k_len(b) - m.q_len(b) : 0);
  return diag + 1 < m.prefix_lens[static_cast<std::size_t>(b)];
}

std::vector<std::int32_t> draw_prefix_lens(const MaskSpec& m) {
  if (!m.prefix_lens.empty()) return m.prefix_lens;
  return *rc::gen::container<std::vector<std::int32_t>>(
              static_cast<std::size_t>(m.B),
              rc::gen::inRange<std::int32_t>(0, static_cast<std::int32_t>(m.Lk) + 1))
              .as("prefix_lens");
}

std::optional<ChunkSplit> chunk_split(MaskSpec m, std::int64_t chunk) {
  if (m.Lq != m.Lk) return std::nullopt;
  m.q_lens = m.k_lens;
  m.cu_seqlens_q.clear();
  m.cu_seqlens_k.clear();
  m.prefix_lens.clear();  // (per segment: documents of `chunk` keys would cut it too)
  m.sink_tokens = 0;      // (likewise: each document of `chunk` keys would have its own sinks)
  ChunkSplit s{m, m};
  s.chunked.chunk = chunk;
  s.documents.chunk = 0;
  for (std::int64_t b = 0; b < m.B; ++b) {
    std::vector<std::int32_t> cuts{0};
    for (std::int64_t k = chunk; k < m.k_len(b); k += chunk)
      cuts.push_back(static_cast<std::int32_t>(k));
    cuts.push_back(static_cast<std::int32_t>(m.k_len(b)));  // (an empty sequence: {0, 0})
    s.documents.cu_seqlens_q.push_back(cuts);
    s.documents.cu_seqlens_k.push_back(cuts);
  }
  s.chunked.validate();
  s.documents.validate();
  return s;
}

MaskSpec with_sinks(MaskSpec m) {
  m.chunk = 0;
  if (m.sink_tokens == 0)
    m.sink_tokens = static_cast<std::int64_t>(draw_one_of(
        {1, 4, 2, static_cast<double>(std::max<std::int64_t>(m.Lk / 2, 1))}, "sink_tokens"));
  if (!m.window || m.window->left == kUnbounded) {
    Window w = m.window.value_or(Window{});
    w.left = static_cast<std::int64_t>(draw_one_of({0, 1, 3, 16, 100}, "window.left"));
    m.window = w;
  }
  m.validate();
  return m;
}

std::vector<std::uint8_t> segment_first_keys(const MaskSpec& m, std::int64_t S) {
  std::vector<std::uint8_t> first(static_cast<std::size_t>(m.B * m.Lk), 0);
  for (std::int64_t b = 0; b < m.B; ++b) {
    const std::int64_t k0 = valid_begin(m.padding, m.Lk, m.k_len(b));
    const std::vector<std::int32_t> whole{0, static_cast<std::int32_t>(m.k_len(b))};
    const auto& cuts = m.has_documents() ? m.cu_seqlens_k[b] : whole;
    for (std::size_t d = 0; d + 1 < cuts.size(); ++d)
      for (std::int64_t k = cuts[d]; k < std::min<std::int64_t>(cuts[d + 1], cuts[d] + S); ++k)
        first[static_cast<std::size_t>(b * m.Lk + k0 + k)] = 1;
  }
  return first;
}

std::int64_t draw_chunk(const MaskSpec& m) {
  if (m.chunk > 0) return m.chunk;
  return static_cast<std::int64_t>(draw_one_of({1, 2, 3, 5, 8, 16, 33, 64}, "chunk"));
}

void tag_case(std::initializer_list<std::string> tags) {
  for (const auto& tag : tags) RC_TAG(tag);
}

// A failed expectation fails the rapidcheck case with just the message (RC_FAIL would prepend
// this file's name and line, which says nothing about the property).
void expect(const CheckResult& r) {
  if (!r.ok) throw rc::detail::CaseResult(rc::detail::CaseResult::Type::Failure, r.report());
}

void expect(bool cond, const std::string& message) {
  if (!cond) throw rc::detail::CaseResult(rc::detail::CaseResult::Type::Failure, message);
}

Shape mask_shape(const MaskSpec& m) {
  return {{"b", "q", "k"}, {m.B, m.Lq, m.Lk}};
}
Shape softmax_shape(const SoftmaxProblem& p) {
  return {{"b", "h", "q", "k"}, {p.mask.B, p.H, p.mask.Lq, p.mask.Lk}};
}
Shape attention_out_shape(const AttentionProblem& p) {
  return {{"b", "h", "q", "d"}, {p.mask.B, p.H, p.mask.Lq, p.D}};
}
Shape attention_lse_shape(const AttentionProblem& p) {
  return {{"b", "h", "q"}, {p.mask.B, p.H, p.mask.Lq}};
}
Shape rows_shape(std::int64_t N) {
  return {{"n"}, {N}};
}
Shape logits_shape(std::int64_t N, std::int64_t V) {
  return {{"n", "v"}, {N, V}};
}
Shape tokens_shape(std::int64_t B, std::int64_t L) {
  return {{"b", "t"}, {B, L}};
}

}  // namespace maskcheck
