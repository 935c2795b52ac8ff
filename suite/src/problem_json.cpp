#include "maskcheck/suite/problem_json.hpp"

#include <cmath>
#include <concepts>
#include <limits>

#include "maskcheck/reference/common.hpp"

namespace maskcheck {

using nlohmann::json;

namespace {

[[noreturn]] void bad(const std::string& path, const json& v, std::string_view requirement) {
  throw_invalid(path, json_brief(v), requirement);
}

std::int32_t json_int32(const json& v, const std::string& path) {
  const std::int64_t x = json_int(v, path);
  if (x < std::numeric_limits<std::int32_t>::min() || x > std::numeric_limits<std::int32_t>::max())
    bad(path, v, "must fit in int32");
  return static_cast<std::int32_t>(x);
}

std::vector<std::int32_t> json_int32s(const json& v, const std::string& path) {
  if (!v.is_array()) bad(path, v, "must be an array of integers");
  std::vector<std::int32_t> out;
  for (std::size_t i = 0; i < v.size(); ++i)
    out.push_back(json_int32(v[i], path + "[" + std::to_string(i) + "]"));
  return out;
}

std::vector<std::vector<std::int32_t>> json_int32_lists(const json& v, const std::string& path) {
  if (!v.is_array()) bad(path, v, "must be an array of arrays of integers");
  std::vector<std::vector<std::int32_t>> out;
  for (std::size_t i = 0; i < v.size(); ++i)
    out.push_back(json_int32s(v[i], path + "[" + std::to_string(i) + "]"));
  return out;
}

json side_json(std::int64_t side) {
  return side == kUnbounded ? json("unbounded") : json(side);
}
std::int64_t json_side(const json& v, const std::string& path) {
  if (v.is_string() && v.get<std::string>() == "unbounded") return kUnbounded;
  if (!v.is_number_integer()) bad(path, v, "must be an integer or \"unbounded\"");
  return json_int(v, path);
}

std::optional<Window> json_window(const json& v, const std::string& path) {
  if (v.is_null()) return std::nullopt;
  Window w;
  JsonFields f(v, path);
  f.field("left", [&](const json& x, const std::string& p) { w.left = json_side(x, p); });
  f.field("right", [&](const json& x, const std::string& p) { w.right = json_side(x, p); });
  f.finish();
  return w;
}

json scale_json(const std::optional<double>& s) {
  return s ? json_double_value(*s) : json(nullptr);
}
std::optional<double> json_scale(const json& v, const std::string& path) {
  if (v.is_null()) return std::nullopt;
  return json_double(v, path);
}

// Reads an enum through its from_string function, naming the path on failure.
template <class E, class FromString>
E json_enum(const json& v, const std::string& path, FromString from_string) {
  const std::string s = json_string(v, path);
  try {
    return from_string(s);
  } catch (const InvalidArgument& e) {
    bad(path, v, e.what());
  }
}

// Field readers bound to a destination, for JsonFields::field.
auto to(std::int64_t& x) {
  return [&x](const json& v, const std::string& p) { x = json_int(v, p); };
}
auto to(std::int32_t& x) {
  return [&x](const json& v, const std::string& p) { x = json_int32(v, p); };
}
auto to(double& x) {
  return [&x](const json& v, const std::string& p) { x = json_double(v, p); };
}
auto to(bool& x) {
  return [&x](const json& v, const std::string& p) { x = json_bool(v, p); };
}
auto to(std::vector<std::int32_t>& x) {
  return [&x](const json& v, const std::string& p) { x = json_int32s(v, p); };
}
auto to(std::vector<std::vector<std::int32_t>>& x) {
  return [&x](const json& v, const std::string& p) { x = json_int32_lists(v, p); };
}
auto to(std::vector<double>& x) {
  return [&x](const json& v, const std::string& p) {
    if (!v.is_array()) bad(p, v, "must be an array of numbers");
    x.clear();
    for (std::size_t i = 0; i < v.size(); ++i)
      x.push_back(json_double(v[i], p + "[" + std::to_string(i) + "]"));
  };
}
auto to(std::uint64_t& x) {
  return [&x](const json& v, const std::string& p) {
    if (v.is_number_unsigned()) {
      x = v.get<std::uint64_t>();
    } else if (const std::int64_t i = json_int(v, p); i >= 0) {
      x = static_cast<std::uint64_t>(i);
    } else {
      bad(p, v, "must be an integer in [0, 2^64)");
    }
  };
}
auto to(std::optional<Window>& x) {
  return [&x](const json& v, const std::string& p) { x = json_window(v, p); };
}
auto to(std::optional<double>& x) {
  return [&x](const json& v, const std::string& p) { x = json_scale(v, p); };
}
auto to(Alignment& x) {
  return [&x](const json& v, const std::string& p) {
    x = json_enum<Alignment>(v, p, alignment_from_string);
  };
}
auto to(PaddingSide& x) {
  return [&x](const json& v, const std::string& p) {
    x = json_enum<PaddingSide>(v, p, padding_side_from_string);
  };
}
auto to(Reduction& x) {
  return [&x](const json& v, const std::string& p) {
    x = json_enum<Reduction>(v, p, reduction_from_string);
  };
}

}  // namespace

std::int64_t json_int(const json& v, const std::string& path) {
  if (!v.is_number_integer()) bad(path, v, "must be an integer");
  if (v.is_number_unsigned() &&
      v.get<std::uint64_t>() > std::uint64_t(std::numeric_limits<std::int64_t>::max()))
    bad(path, v, "must fit in int64");
  return v.get<std::int64_t>();
}

double json_double(const json& v, const std::string& path) {
  if (v.is_number()) return v.get<double>();
  if (v.is_string()) {
    const std::string s = v.get<std::string>();
    if (s == "nan") return std::numeric_limits<double>::quiet_NaN();
    if (s == "inf") return std::numeric_limits<double>::infinity();
    if (s == "-inf") return -std::numeric_limits<double>::infinity();
  }
  bad(path, v, "must be a number, \"nan\", \"inf\" or \"-inf\"");
}

bool json_bool(const json& v, const std::string& path) {
  if (!v.is_boolean()) bad(path, v, "must be true or false");
  return v.get<bool>();
}

std::string json_string(const json& v, const std::string& path) {
  if (!v.is_string()) bad(path, v, "must be a string");
  return v.get<std::string>();
}

json json_double_value(double x) {
  if (std::isnan(x)) return "nan";
  if (std::isinf(x)) return x > 0 ? "inf" : "-inf";
  return x;
}

std::string json_brief(const json& v) {
  std::string s = v.dump();
  return s.size() > 120 ? s.substr(0, 117) + "..." : s;
}

json parse_json_object(std::string_view text, const std::string& what, int max_depth) {
  bool too_deep = false;
  json::parser_callback_t limit = [&](int depth, json::parse_event_t, json&) {
    if (depth <= max_depth) return true;
    too_deep = true;  // dropped unread: printing and destroying deep values recurse
    return false;
  };
  json j = json::parse(text.begin(), text.end(), limit, false);
  const std::string shown(text.substr(0, 120));
  if (j.is_discarded()) throw_invalid(what, shown, "must be JSON");
  if (too_deep)
    throw_invalid(what, shown, "must nest at most " + std::to_string(max_depth) + " levels");
  if (!j.is_object()) throw_invalid(what, shown, "must be a JSON object");
  return j;
}

JsonFields::JsonFields(const json& j, std::string path) : j_(j), path_(std::move(path)) {
  if (!j_.is_object()) bad(path_, j_, "must be a JSON object");
}

void JsonFields::finish() const {
  for (const auto& [key, value] : j_.items()) {
    if (std::find(known_.begin(), known_.end(), key) != known_.end()) continue;
    std::string known;
    for (const auto& k : known_) known += (known.empty() ? "" : ", ") + k;
    bad(path_ + "." + key, value, "unknown field; known: " + known);
  }
}

void to_json(json& j, const Window& w) {
  j = {{"left", side_json(w.left)}, {"right", side_json(w.right)}};
}

namespace {

// One list of fields per problem type serves both directions: `v(name, field)` for each field
// of P, which is the type or the const type.
template <class P, class T>
concept Is = std::same_as<std::remove_const_t<P>, T>;

// Marks a field written only when it differs from its default (the mask clauses added after the
// first files were written: files without them stay byte for byte what they were).
struct Optional {};

template <Is<MaskSpec> M, class V>
void fields(M& m, V&& v) {
  v("B", m.B);
  v("Lq", m.Lq);
  v("Lk", m.Lk);
  v("q_lens", m.q_lens);
  v("k_lens", m.k_lens);
  v("padding", m.padding);
  v("causal", m.causal);
  v("alignment", m.alignment);
  v("window", m.window);
  v("cu_seqlens_q", m.cu_seqlens_q);
  v("cu_seqlens_k", m.cu_seqlens_k);
  v("prefix_lens", m.prefix_lens, Optional{});
  v("chunk", m.chunk, Optional{});
  v("sink_tokens", m.sink_tokens, Optional{});
}
template <Is<SoftmaxProblem> P, class V>
void fields(P& p, V&& v) {
  v("mask", p.mask);
  v("H", p.H);
  v("scale", p.scale);
}
template <Is<AttentionProblem> P, class V>
void fields(P& p, V&& v) {
  v("mask", p.mask);
  v("H", p.H);
  v("Hkv", p.Hkv);
  v("D", p.D);
  v("scale", p.scale);
  v("softcap", p.mods.softcap, Optional{});
  v("alibi_slopes", p.mods.alibi_slopes, Optional{});
  v("sink_logits", p.mods.sink_logits, Optional{});
}
template <Is<VarlenAttentionProblem> P, class V>
void fields(P& p, V&& v) {
  v("H", p.H);
  v("Hkv", p.Hkv);
  v("D", p.D);
  v("cu_seqlens_q", p.cu_seqlens_q);
  v("cu_seqlens_k", p.cu_seqlens_k);
  v("causal", p.causal);
  v("alignment", p.alignment);
  v("window", p.window);
  v("scale", p.scale);
}
template <Is<LossProblem> P, class V>
void fields(P& p, V&& v) {
  v("N", p.N);
  v("V", p.V);
  v("ignore_index", p.ignore_index);
  v("label_smoothing", p.label_smoothing);
  v("reduction", p.reduction);
  v("weighted", p.weighted);
}
template <Is<LmLabelsProblem> P, class V>
void fields(P& p, V&& v) {
  v("B", p.B);
  v("L", p.L);
  v("ignore_index", p.ignore_index);
}
template <Is<MlmProblem> P, class V>
void fields(P& p, V&& v) {
  v("B", p.B);
  v("L", p.L);
  v("V", p.V);
  v("mask_id", p.mask_id);
  v("p", p.p);
  v("p_mask", p.p_mask);
  v("p_random", p.p_random);
  v("seed", p.seed);
  v("whole_word", p.whole_word);
  v("max_predictions", p.max_predictions);
  v("ignore_index", p.ignore_index);
}

json value(double x) {
  return json_double_value(x);
}
json value(const std::optional<double>& x) {
  return scale_json(x);
}
json value(const std::vector<double>& x) {
  json a = json::array();
  for (const double e : x) a.push_back(json_double_value(e));
  return a;
}
json value(const std::optional<Window>& w) {
  return w ? json(*w) : json(nullptr);
}
json value(PaddingSide x) {
  return to_string(x);
}
json value(Alignment x) {
  return to_string(x);
}
json value(Reduction x) {
  return to_string(x);
}
template <class T>
json value(const T& x) {  // integers, bools, arrays, MaskSpec
  return json(x);
}

struct Writer {
  json& j;
  template <class T>
  void operator()(const char* key, const T& x) const {
    j[key] = value(x);
  }
  template <class T>
  void operator()(const char* key, const T& x, Optional) const {
    if (x != T{}) j[key] = value(x);
  }
};

struct Reader {
  JsonFields& f;
  template <class T>
  void operator()(const char* key, T& x) const {
    f.field(key, to(x));
  }
  template <class T>
  void operator()(const char* key, T& x, Optional) const {
    f.field(key, to(x));
  }
  void operator()(const char* key, MaskSpec& m) const {
    f.field(key, [&m](const json& v, const std::string& p) { read_json(v, m, p); });
  }
};

template <class P>
void write(json& j, const P& p) {
  j = json::object();
  fields(p, Writer{j});
}
template <class P>
void read(const json& j, P& p, const std::string& path) {
  JsonFields f(j, path);
  fields(p, Reader{f});
  f.finish();
}

}  // namespace

void to_json(json& j, const MaskSpec& p) {
  write(j, p);
}
void read_json(const json& j, MaskSpec& p, const std::string& path) {
  read(j, p, path);
}
void to_json(json& j, const SoftmaxProblem& p) {
  write(j, p);
}
void read_json(const json& j, SoftmaxProblem& p, const std::string& path) {
  read(j, p, path);
}
void to_json(json& j, const AttentionProblem& p) {
  write(j, p);
}
void read_json(const json& j, AttentionProblem& p, const std::string& path) {
  read(j, p, path);
}
void to_json(json& j, const VarlenAttentionProblem& p) {
  write(j, p);
}
void read_json(const json& j, VarlenAttentionProblem& p, const std::string& path) {
  read(j, p, path);
}
void to_json(json& j, const LossProblem& p) {
  write(j, p);
}
void read_json(const json& j, LossProblem& p, const std::string& path) {
  read(j, p, path);
}
void to_json(json& j, const LmLabelsProblem& p) {
  write(j, p);
}
void read_json(const json& j, LmLabelsProblem& p, const std::string& path) {
  read(j, p, path);
}
void to_json(json& j, const MlmProblem& p) {
  write(j, p);
}
void read_json(const json& j, MlmProblem& p, const std::string& path) {
  read(j, p, path);
}

}  // namespace maskcheck
