#include "maskcheck/suite/call.hpp"

#include <algorithm>
#include <cmath>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "maskcheck/reference/masks.hpp"
#include "maskcheck/suite/problem_json.hpp"

namespace maskcheck {

using nlohmann::json;
namespace st = safetensors;

namespace {

constexpr std::pair<Call, std::string_view> kCalls[] = {
    {Call::build_mask, "build_mask"},
    {Call::convert_mask, "convert_mask"},
    {Call::keep_from_lengths, "keep_from_lengths"},
    {Call::last_valid_index, "last_valid_index"},
    {Call::softmax, "softmax"},
    {Call::attention, "attention"},
    {Call::attention_varlen, "attention_varlen"},
    {Call::attention_paged, "attention_paged"},
    {Call::attention_chunk, "attention_chunk"},
    {Call::attention_backward, "attention_backward"},
    {Call::cross_entropy, "cross_entropy"},
    {Call::lm_labels, "lm_labels"},
    {Call::mlm, "mlm"}};

Call default_call(Op op) {
  switch (op) {
    case Op::masks:
      return Call::build_mask;
    case Op::softmax:
      return Call::softmax;
    case Op::attention:
      return Call::attention;
    case Op::cross_entropy:
      return Call::cross_entropy;
    case Op::lm_labels:
      return Call::lm_labels;
    case Op::mlm:
      return Call::mlm;
  }
  return Call::build_mask;
}

using st::shape_string;

std::int64_t numel(const std::vector<std::int64_t>& shape) {
  std::int64_t n = 1;
  for (std::int64_t d : shape) n *= d;
  return n;
}

// `shape` when it holds n elements, else flat [n]: a file always holds what was passed.
std::vector<std::int64_t> fit(std::vector<std::int64_t> shape, std::size_t n) {
  for (std::int64_t d : shape)
    if (d < 0) return {static_cast<std::int64_t>(n)};
  if (numel(shape) != static_cast<std::int64_t>(n)) return {static_cast<std::int64_t>(n)};
  return shape;
}

std::int64_t ssize(std::size_t n) {
  return static_cast<std::int64_t>(n);
}

// ---- encoding ---------------------------------------------------------------------------------

constexpr st::Dtype I32 = st::Dtype::I32, I64 = st::Dtype::I64, U8 = st::Dtype::U8;

// Builds the tensors of a file. Floating tensors go in the dtype `t` when every value is exact
// in it, else in F64 (noted); sizes that do not match the shape are written flat (noted).
class TensorWriter {
 public:
  TensorWriter(std::string prefix, std::vector<std::string>* notes)
      : prefix_(std::move(prefix)), notes_(notes) {}
  Tensors tensors;

  void floats(const std::string& name, std::span<const double> v, std::vector<std::int64_t> shape,
              DType t) {
    const bool exact = st::exactly_representable(v, t);
    if (!exact)
      note(name + " holds values not exactly representable in " + std::string(to_string(t)) +
           "; written as F64");
    add(name, st::float_tensor(v, checked(name, std::move(shape), v.size()),
                               exact ? st::file_dtype(t) : st::Dtype::F64));
  }
  void f64(const std::string& name, std::span<const double> v, std::vector<std::int64_t> shape) {
    add(name, st::float_tensor(v, checked(name, std::move(shape), v.size()), st::Dtype::F64));
  }
  template <class T>
  void ints(const std::string& name, std::span<const T> v, std::vector<std::int64_t> shape,
            st::Dtype d) {
    add(name, st::int_tensor(v, checked(name, std::move(shape), v.size()), d));
  }
  void mask_arrays(const MaskSpec& m) {
    if (!m.q_lens.empty()) ints<std::int32_t>("q_lens", m.q_lens, {ssize(m.q_lens.size())}, I32);
    if (!m.k_lens.empty()) ints<std::int32_t>("k_lens", m.k_lens, {ssize(m.k_lens.size())}, I32);
    documents("cu_seqlens_q", m.cu_seqlens_q);
    documents("cu_seqlens_k", m.cu_seqlens_k);
  }

 private:
  std::string prefix_;
  std::vector<std::string>* notes_;

  void note(const std::string& s) {
    if (notes_) notes_->push_back(s);
  }
  std::vector<std::int64_t> checked(const std::string& name, std::vector<std::int64_t> shape,
                                    std::size_t n) {
    auto got = fit(shape, n);
    if (got != shape)
      note(name + " has " + std::to_string(n) + " values, not the " + shape_string(shape) +
           " expected; written flat");
    return got;
  }
  void add(const std::string& name, st::Tensor t) { tensors[prefix_ + name] = std::move(t); }
  void documents(const std::string& name, const std::vector<std::vector<std::int32_t>>& cu) {
    if (cu.empty()) return;
    std::vector<std::int32_t> flat, offsets{0};
    for (const auto& c : cu) {
      flat.insert(flat.end(), c.begin(), c.end());
      offsets.push_back(static_cast<std::int32_t>(flat.size()));
    }
    ints<std::int32_t>(name, flat, {ssize(flat.size())}, I32);
    ints<std::int32_t>(name + "_offsets", offsets, {ssize(offsets.size())}, I32);
  }
};

std::vector<std::int64_t> mask_shape_of(const MaskSpec& m) {
  return {m.B, m.Lq, m.Lk};
}
std::vector<std::int64_t> x_shape(const SoftmaxProblem& p) {
  return {p.mask.B, p.H, p.mask.Lq, p.mask.Lk};
}
std::vector<std::int64_t> q_shape(const AttentionProblem& p) {
  return {p.mask.B, p.H, p.mask.Lq, p.D};
}
std::vector<std::int64_t> kv_shape(const AttentionProblem& p) {
  return {p.mask.B, p.Hkv, p.mask.Lk, p.D};
}
std::vector<std::int64_t> q_shape(const VarlenAttentionProblem& p) {
  return {p.total_q(), p.H, p.D};
}
std::vector<std::int64_t> kv_shape(const VarlenAttentionProblem& p) {
  return {p.total_k(), p.Hkv, p.D};
}

// The parts of a case file, filled by encode_inputs for each call.
struct CaseParts {
  TensorWriter w{"", nullptr};
  json problem = json::object();
  json options = json::object();
  std::optional<DType> dtype;
  json storage;  // maskcheck.storage, when some tensor is stored wider than dtype
};

// The tensors of `op` stored other than in t, as maskcheck.storage holds them.
json storage_json(const std::optional<Storage>& s, Op op, DType t) {
  json j;
  if (!s) return j;
  const std::pair<const char*, DType> all[] = {
      {"q", s->q}, {"k", s->k}, {"v", s->v},           {"out", s->out},
      {"x", s->x}, {"y", s->y}, {"logits", s->logits}, {"dlogits", s->dlogits}};
  for (const auto& [name, d] : all) {
    const std::string n(name);
    const bool mine = op == Op::attention ? (n == "q" || n == "k" || n == "v" || n == "out")
                      : op == Op::softmax ? (n == "x" || n == "y")
                                          : (n == "logits" || n == "dlogits");
    if (mine && d != t) j[n] = std::string(to_string(d));
  }
  return j;
}

void encode_inputs(const BuildMaskCall& c, CaseParts& p) {
  p.problem = c.spec;
  p.options["encoding"] = std::string(to_string(c.encoding));
  p.dtype = c.dtype;
  p.w.mask_arrays(c.spec);
}
void encode_inputs(const ConvertMaskCall& c, CaseParts& p) {
  p.options["from"] = std::string(to_string(c.from));
  p.options["to"] = std::string(to_string(c.to));
  p.dtype = c.dtype;
  p.w.floats("mask", c.values, c.shape, c.dtype);
}
void encode_inputs(const PaddingCall& c, CaseParts& p) {
  p.problem = {{"L", c.L}, {"padding", to_string(c.side)}};
  p.w.ints<std::int32_t>("lengths", c.lengths, {ssize(c.lengths.size())}, I32);
}
void encode_inputs(const SoftmaxCall& c, CaseParts& p) {
  p.problem = c.problem;
  p.dtype = c.dtype;
  p.storage = storage_json(c.storage, Op::softmax, c.dtype);
  p.w.floats("x", c.x, x_shape(c.problem), storage_of(c).x);
  p.w.mask_arrays(c.problem.mask);
}
template <class AttentionCall_>
void encode_qkv(const AttentionCall_& c, CaseParts& p) {
  p.problem = c.problem;
  if constexpr (requires { c.want_lse; }) p.options["want_lse"] = c.want_lse;
  p.dtype = c.dtype;
  p.storage = storage_json(c.storage, Op::attention, c.dtype);
  const Storage s = storage_of(c);
  p.w.floats("q", c.q, q_shape(c.problem), s.q);
  p.w.floats("k", c.k, kv_shape(c.problem), s.k);
  p.w.floats("v", c.v, kv_shape(c.problem), s.v);
}
void encode_inputs(const AttentionCall& c, CaseParts& p) {
  encode_qkv(c, p);
  p.w.mask_arrays(c.problem.mask);
}
void encode_inputs(const ChunkAttentionCall& c, CaseParts& p) {
  encode_qkv(c, p);
  p.options["key_begin"] = c.key_begin;
  p.options["key_end"] = c.key_end;
  p.w.mask_arrays(c.problem.mask);
}
void encode_inputs(const AttentionBackwardCall& c, CaseParts& p) {
  encode_qkv(c, p);
  p.w.floats("dout", c.dout, q_shape(c.problem), storage_of(c).out);
  p.w.mask_arrays(c.problem.mask);
}
void encode_inputs(const VarlenAttentionCall& c, CaseParts& p) {
  encode_qkv(c, p);
  const auto& cq = c.problem.cu_seqlens_q;
  const auto& ck = c.problem.cu_seqlens_k;
  p.w.ints<std::int32_t>("cu_seqlens_q", cq, {ssize(cq.size())}, I32);
  p.w.ints<std::int32_t>("cu_seqlens_k", ck, {ssize(ck.size())}, I32);
}
void encode_inputs(const PagedAttentionCall& c, CaseParts& p) {
  p.problem = c.problem;
  p.problem["paged"] = {
      {"page_size", c.kv.page_size}, {"num_pages", c.kv.num_pages}, {"max_pages", c.kv.max_pages}};
  p.options["want_lse"] = c.want_lse;
  p.dtype = c.dtype;
  p.storage = storage_json(c.storage, Op::attention, c.dtype);
  const Storage s = storage_of(c);
  const std::vector<std::int64_t> cache{c.kv.num_pages, c.kv.page_size, c.problem.Hkv, c.problem.D};
  p.w.floats("q", c.q, q_shape(c.problem), s.q);
  p.w.floats("k_cache", c.k_cache, cache, s.k);
  p.w.floats("v_cache", c.v_cache, cache, s.v);
  p.w.ints<std::int32_t>("block_table", c.kv.block_table, {c.problem.mask.B, c.kv.max_pages}, I32);
  p.w.mask_arrays(c.problem.mask);
}
void encode_inputs(const CrossEntropyCall& c, CaseParts& p) {
  p.problem = c.problem;
  p.options["backward"] = c.backward;
  p.dtype = c.dtype;
  p.storage = storage_json(c.storage, Op::cross_entropy, c.dtype);
  p.w.floats("logits", c.logits, {c.problem.N, c.problem.V}, storage_of(c).logits);
  p.w.ints<std::int64_t>("labels", c.labels, {c.problem.N}, I64);
  if (c.problem.weighted || !c.weights.empty())
    p.w.floats("weights", c.weights, {c.problem.N}, c.dtype);
  if (!c.grad_output.empty())
    p.w.floats("grad_output", c.grad_output, {ssize(c.grad_output.size())}, c.dtype);
}
void encode_inputs(const LmLabelsCall& c, CaseParts& p) {
  p.problem = c.problem;
  const std::vector<std::int64_t> bl{c.problem.B, c.problem.L};
  p.w.ints<std::int64_t>("ids", c.ids, bl, I64);
  p.w.ints<std::uint8_t>("keep", c.keep, bl, U8);
  if (!c.prompt_lens.empty())
    p.w.ints<std::int32_t>("prompt_lens", c.prompt_lens, {c.problem.B}, I32);
}
void encode_inputs(const MlmCall& c, CaseParts& p) {
  p.problem = c.problem;
  const std::vector<std::int64_t> bl{c.problem.B, c.problem.L};
  p.w.ints<std::int64_t>("ids", c.ids, bl, I64);
  p.w.ints<std::uint8_t>("keep", c.keep, bl, U8);
  p.w.ints<std::uint8_t>("special", c.special, bl, U8);
  if (c.problem.whole_word || !c.continuation.empty())
    p.w.ints<std::uint8_t>("continuation", c.continuation, bl, U8);
}

// ---- decoding ---------------------------------------------------------------------------------

json parse_json_metadata(const st::File& f, const char* key, const std::string& source) {
  const auto it = f.metadata.find(key);
  if (it == f.metadata.end()) return json::object();
  return parse_json_object(it->second, source + ": metadata " + key);
}

// Fills a missing field of a JSON object (from a tensor's shape).
void fill(json& j, const char* key, std::int64_t value) {
  if (j.is_object() && !j.contains(key)) j[key] = value;
}
json& member(json& j, const char* key) {
  static json not_an_object;
  if (!j.is_object()) return not_an_object;
  if (!j.contains(key)) j[key] = json::object();
  return j[key];
}

class CaseReader {
 public:
  CaseReader(const st::File& f, std::string source, Call call)
      : f_(f), source_(std::move(source)), call_(call) {}

  std::string where(const std::string& what) const { return source_ + ": " + what; }

  const st::Tensor* find(const std::string& name) {
    const auto it = f_.tensors.find(name);
    if (it == f_.tensors.end()) return nullptr;
    used_.insert(name);
    return &it->second;
  }
  [[noreturn]] void missing(const std::string& name, std::string_view layout) const {
    throw_invalid(
        where("tensor \"" + name + "\""), "missing",
        "a " + std::string(to_string(call_)) + " case needs " + name + " " + std::string(layout));
  }
  const st::Tensor& need(const std::string& name, std::size_t rank, std::string_view layout) {
    const st::Tensor* t = find(name);
    if (!t) missing(name, layout);
    if (t->shape.size() != rank)
      throw_invalid(where("tensor \"" + name + "\" shape"), shape_string(t->shape),
                    "must be " + std::string(layout));
    return *t;
  }
  void shape(const std::string& name, const st::Tensor& t, const std::vector<std::int64_t>& want,
             std::string_view layout) const {
    if (t.shape != want)
      throw_invalid(where("tensor \"" + name + "\" shape"), shape_string(t.shape),
                    "must be " + std::string(layout) + " = " + shape_string(want));
  }

  // The case dtype: maskcheck.dtype, else the dtype of the first floating input (f32 for
  // build_mask, which has none).
  DType dtype(const st::Tensor* first, const std::string& name) const {
    if (const auto it = f_.metadata.find(kMetaDtype); it != f_.metadata.end()) {
      try {
        return dtype_from_string(it->second);
      } catch (const InvalidArgument&) {
        throw_invalid(where(std::string("metadata ") + kMetaDtype), it->second,
                      "must be f64, f32, f16 or bf16");
      }
    }
    if (!first) return DType::f32;
    const auto t = st::storage_dtype(first->dtype);
    if (!t)
      throw_invalid(where("tensor \"" + name + "\" dtype"), std::string(to_string(first->dtype)),
                    "must be F64, F32, F16 or BF16");
    return *t;
  }

  std::vector<double> floats(const std::string& name, const st::Tensor& t,
                             const std::vector<std::int64_t>& want, std::string_view layout,
                             DType dt, bool own_storage = false) const {
    shape(name, t, want, layout);
    auto v = st::to_doubles(t, where("tensor \"" + name + "\""));
    for (std::size_t i = 0; i < v.size(); ++i)
      if (!st::exactly_representable(std::span<const double>(&v[i], 1), dt))
        throw_invalid(where(name + "[" + std::to_string(i) + "]"), fmt(v[i]),
                      "is not exactly representable in " +
                          std::string(own_storage ? "its storage dtype (maskcheck.storage) "
                                                  : "the case dtype ") +
                          std::string(to_string(dt)));
    return v;
  }

  // maskcheck.storage of a case of dtype t: the tensors of `op` stored wider (registry.hpp).
  std::optional<Storage> storage(Op op, DType t) const {
    const auto it = f_.metadata.find(kMetaStorage);
    if (it == f_.metadata.end()) return std::nullopt;
    const std::string field = where(std::string("metadata ") + kMetaStorage);
    const json j = json::parse(it->second, nullptr, false);
    if (!j.is_object()) throw_invalid(field, it->second, "must be a JSON object");
    Storage s = Storage::of(t);
    for (const auto& [name, value] : j.items()) {
      DType* slot = nullptr;
      if (op == Op::attention)
        slot = name == "q"     ? &s.q
               : name == "k"   ? &s.k
               : name == "v"   ? &s.v
               : name == "out" ? &s.out
                               : nullptr;
      else if (op == Op::softmax)
        slot = name == "x" ? &s.x : name == "y" ? &s.y : nullptr;
      else if (op == Op::cross_entropy)
        slot = name == "logits" ? &s.logits : name == "dlogits" ? &s.dlogits : nullptr;
      if (!slot)
        throw_invalid(field + "." + name, value.dump(),
                      "is not a floating tensor of " + std::string(to_string(op)));
      if (!value.is_string())
        throw_invalid(field + "." + name, value.dump(), "must be f64, f32, f16 or bf16");
      try {
        *slot = dtype_from_string(value.get<std::string>());
      } catch (const InvalidArgument&) {
        throw_invalid(field + "." + name, value.dump(), "must be f64, f32, f16 or bf16");
      }
    }
    check_storage(s, op, t, field);
    return s;
  }
  std::vector<std::int64_t> ints(const std::string& name, const st::Tensor& t,
                                 const std::vector<std::int64_t>& want,
                                 std::string_view layout) const {
    shape(name, t, want, layout);
    return st::to_int64(t, where("tensor \"" + name + "\""));
  }
  std::vector<std::int32_t> int32s(const std::string& name, const st::Tensor& t) const {
    std::vector<std::int32_t> out;
    for (std::int64_t x : st::to_int64(t, where("tensor \"" + name + "\""))) {
      if (x < std::numeric_limits<std::int32_t>::min() ||
          x > std::numeric_limits<std::int32_t>::max())
        throw_invalid(where("tensor \"" + name + "\""), static_cast<long long>(x),
                      "values must fit in int32");
      out.push_back(static_cast<std::int32_t>(x));
    }
    return out;
  }
  std::vector<std::uint8_t> flags(const std::string& name, const st::Tensor& t,
                                  const std::vector<std::int64_t>& want,
                                  std::string_view layout) const {
    std::vector<std::uint8_t> out;
    const auto v = ints(name, t, want, layout);
    for (std::size_t i = 0; i < v.size(); ++i) {
      if (v[i] != 0 && v[i] != 1)
        throw_invalid(where(name + "[" + std::to_string(i) + "]"), static_cast<long long>(v[i]),
                      "must be 0 or 1");
      out.push_back(static_cast<std::uint8_t>(v[i]));
    }
    return out;
  }

  // A problem array given as a tensor goes into the problem JSON (agreeing with it if there).
  void merge(json& j, const std::string& key, const std::string& name, const json& from_tensor) {
    if (!j.is_object()) return;
    const auto it = j.find(key);
    if (it == j.end() || (it->is_array() && it->empty())) {
      j[key] = from_tensor;
    } else if (*it != from_tensor) {
      throw_invalid(where("tensor \"" + name + "\""), json_brief(from_tensor),
                    "disagrees with maskcheck.problem's " + key + " = " + json_brief(*it));
    }
  }
  void merge_lens(json& j, const std::string& name) {
    if (const st::Tensor* t = find(name)) {
      if (t->shape.size() != 1)
        throw_invalid(where("tensor \"" + name + "\" shape"), shape_string(t->shape),
                      "must be [B]");
      merge(j, name, name, int32s(name, *t));
    }
  }
  // cu_seqlens_q + cu_seqlens_q_offsets -> [[...], ...]
  void merge_documents(json& j, const std::string& name) {
    const st::Tensor* flat = find(name);
    const st::Tensor* offsets = find(name + "_offsets");
    if (!flat && !offsets) return;
    if (!flat || !offsets || flat->shape.size() != 1 || offsets->shape.size() != 1)
      throw_invalid(where("tensors \"" + name + "\", \"" + name + "_offsets\""), "incomplete",
                    "packed documents need both, one-dimensional");
    const auto values = int32s(name, *flat);
    const auto offs = int32s(name + "_offsets", *offsets);
    json lists = json::array();
    for (std::size_t b = 0; b + 1 < offs.size(); ++b) {
      if (offs[0] != 0 || offs[b] > offs[b + 1] || offs[b + 1] > ssize(values.size()))
        throw_invalid(where("tensor \"" + name + "_offsets\""), json_brief(offs),
                      "must start at 0, not decrease and stay within " + name);
      lists.push_back(
          std::vector<std::int32_t>(values.begin() + offs[b], values.begin() + offs[b + 1]));
    }
    if (offs.empty() || offs.back() != ssize(values.size()))
      throw_invalid(where("tensor \"" + name + "_offsets\""), json_brief(offs),
                    "must end at the length of " + name);
    merge(j, name, name, lists);
  }
  void mask_arrays(json& mask) {
    merge_lens(mask, "q_lens");
    merge_lens(mask, "k_lens");
    merge_documents(mask, "cu_seqlens_q");
    merge_documents(mask, "cu_seqlens_k");
  }

  // Every tensor was asked for, or is a recorded output.
  void finish() const {
    for (const auto& [name, t] : f_.tensors) {
      if (used_.count(name) || name.rfind(kRecordedPrefix, 0) == 0) continue;
      std::string known;
      for (const auto& u : used_) known += (known.empty() ? "" : ", ") + u;
      throw_invalid(where("tensor \"" + name + "\""), t.describe(),
                    "is not an input of " + std::string(to_string(call_)) +
                        (known.empty() ? "" : " (inputs read: " + known + ")") +
                        "; outputs of earlier runs must be named recorded.<name>");
    }
  }

 private:
  const st::File& f_;
  std::string source_;
  Call call_;
  std::set<std::string> used_;

  static std::string fmt(double x) {
    std::ostringstream os;
    os.precision(17);
    os << x;
    return os.str();
  }
};

MaskEncoding encoding_option(const json& v, const std::string& path) {
  const std::string s = json_string(v, path);
  try {
    return mask_encoding_from_string(s);
  } catch (const InvalidArgument& e) {
    throw_invalid(path, s, e.what());
  }
}

// Options of a call: `read` sees each field; finish rejects the others.
template <class F>
void read_options(const json& options, const std::string& source, F&& read) {
  JsonFields f(options, source + ": maskcheck.options");
  read(f);
  f.finish();
}

CallInputs decode_masks(CaseReader& r, Call call, json& problem, const json& options,
                        const std::string& source) {
  if (call == Call::build_mask) {
    BuildMaskCall c;
    r.mask_arrays(problem);
    read_json(problem, c.spec, source + ": maskcheck.problem");
    read_options(options, source, [&](JsonFields& f) {
      f.field("encoding",
              [&](const json& v, const std::string& p) { c.encoding = encoding_option(v, p); });
    });
    c.dtype = r.dtype(nullptr, "");
    return c;
  }
  if (call == Call::convert_mask) {
    ConvertMaskCall c;
    const st::Tensor* t = r.find("mask");
    if (!t) r.missing("mask", "[any shape]");
    c.dtype = r.dtype(t, "mask");
    c.shape = t->shape;
    c.values = r.floats("mask", *t, t->shape, "any shape", c.dtype);
    bool from = false, to = false;
    read_options(options, source, [&](JsonFields& f) {
      f.field("from", [&](const json& v, const std::string& p) {
        c.from = encoding_option(v, p);
        from = true;
      });
      f.field("to", [&](const json& v, const std::string& p) {
        c.to = encoding_option(v, p);
        to = true;
      });
    });
    if (!from || !to)
      throw_invalid(source + ": maskcheck.options", json_brief(options),
                    "convert_mask needs \"from\" and \"to\" encodings");
    JsonFields(problem, source + ": maskcheck.problem").finish();  // no problem fields
    return c;
  }
  PaddingCall c;
  const st::Tensor& lengths = r.need("lengths", 1, "I32 [B]");
  c.lengths = r.int32s("lengths", lengths);
  bool have_L = false;
  JsonFields f(problem, source + ": maskcheck.problem");
  f.field("L", [&](const json& v, const std::string& p) {
    c.L = json_int(v, p);
    have_L = true;
  });
  f.field("padding", [&](const json& v, const std::string& p) {
    try {
      c.side = padding_side_from_string(json_string(v, p));
    } catch (const InvalidArgument& e) {
      throw_invalid(p, json_brief(v), e.what());
    }
  });
  f.finish();
  if (!have_L)
    throw_invalid(source + ": maskcheck.problem", json_brief(problem),
                  "the padding helpers need L, the padded length");
  read_options(options, source, [](JsonFields&) {});
  if (call == Call::keep_from_lengths) return KeepFromLengthsCall{c};
  return LastValidIndexCall{c};
}

CallInputs decode_softmax(CaseReader& r, json& problem, const json& options,
                          const std::string& source) {
  SoftmaxCall c;
  const st::Tensor& x = r.need("x", 4, "[B, H, Lq, Lk]");
  json& mask = member(problem, "mask");
  fill(mask, "B", x.shape[0]);
  fill(problem, "H", x.shape[1]);
  fill(mask, "Lq", x.shape[2]);
  fill(mask, "Lk", x.shape[3]);
  r.mask_arrays(mask);
  read_json(problem, c.problem, source + ": maskcheck.problem");
  c.dtype = r.dtype(&x, "x");
  c.storage = r.storage(Op::softmax, c.dtype);
  c.x = r.floats("x", x, x_shape(c.problem), "[B, H, Lq, Lk]", storage_of(c).x,
                 c.storage.has_value());
  read_options(options, source, [](JsonFields&) {});
  return c;
}

constexpr std::string_view kQLayout = "[B, H, Lq, D]", kKvLayout = "[B, Hkv, Lk, D]";
constexpr std::string_view kVarlenQLayout = "[Tq, H, D]", kVarlenKvLayout = "[Tk, Hkv, D]";

struct Qkv {
  const st::Tensor &q, &k, &v;
};

// q, k, v of an attention call (padded or varlen) whose problem is read, dout for the backward,
// and want_lse for the forward.
template <class AttentionCall_>
void read_qkv(CaseReader& r, AttentionCall_& c, const Qkv& t, std::string_view q_layout,
              std::string_view kv_layout, const json& options, const std::string& source,
              const st::Tensor* dout = nullptr) {
  c.dtype = r.dtype(&t.q, "q");
  c.storage = r.storage(Op::attention, c.dtype);
  const Storage s = storage_of(c);
  const bool own = c.storage.has_value();
  c.q = r.floats("q", t.q, q_shape(c.problem), q_layout, s.q, own);
  c.k = r.floats("k", t.k, kv_shape(c.problem), kv_layout, s.k, own);
  c.v = r.floats("v", t.v, kv_shape(c.problem), kv_layout, s.v, own);
  if constexpr (requires { c.dout; })
    c.dout = r.floats("dout", *dout, q_shape(c.problem), q_layout, s.out, own);
  bool begin = false, end = false;
  read_options(options, source, [&](JsonFields& f) {
    (void)f;  // the backward takes no option
    if constexpr (requires { c.want_lse; })
      f.field("want_lse",
              [&](const json& v, const std::string& p) { c.want_lse = json_bool(v, p); });
    if constexpr (requires { c.key_begin; }) {
      f.field("key_begin", [&](const json& v, const std::string& p) {
        c.key_begin = json_int(v, p);
        begin = true;
      });
      f.field("key_end", [&](const json& v, const std::string& p) {
        c.key_end = json_int(v, p);
        end = true;
      });
    }
  });
  if constexpr (requires { c.key_begin; }) {
    if (!begin || !end)
      throw_invalid(source + ": maskcheck.options." + (begin ? "key_end" : "key_begin"), "missing",
                    "attention_chunk needs the chunk's key_begin and key_end");
  }
}

// The padded problem of q [B, H, Lq, D] and k [B, Hkv, Lk, D]: the shapes fill in what
// maskcheck.problem leaves out, then the problem is read.
void read_padded_problem(CaseReader& r, json& problem, const st::Tensor& q, const st::Tensor& k,
                         const std::string& source, AttentionProblem& out) {
  json& mask = member(problem, "mask");
  fill(mask, "B", q.shape[0]);
  fill(problem, "H", q.shape[1]);
  fill(mask, "Lq", q.shape[2]);
  fill(problem, "D", q.shape[3]);
  fill(problem, "Hkv", k.shape[1]);
  fill(mask, "Lk", k.shape[2]);
  r.mask_arrays(mask);
  read_json(problem, out, source + ": maskcheck.problem");
}

// attention and attention_chunk: q, k, v in the padded layout.
template <class AttentionCall_>
CallInputs decode_attention(CaseReader& r, json& problem, const json& options,
                            const std::string& source) {
  AttentionCall_ c;
  const st::Tensor& q = r.need("q", 4, kQLayout);
  const st::Tensor& k = r.need("k", 4, kKvLayout);
  const st::Tensor& v = r.need("v", 4, kKvLayout);
  read_padded_problem(r, problem, q, k, source, c.problem);
  read_qkv(r, c, {q, k, v}, kQLayout, kKvLayout, options, source);
  return c;
}

CallInputs decode_attention_backward(CaseReader& r, json& problem, const json& options,
                                     const std::string& source) {
  AttentionBackwardCall c;
  const st::Tensor& q = r.need("q", 4, kQLayout);
  const st::Tensor& k = r.need("k", 4, kKvLayout);
  const st::Tensor& v = r.need("v", 4, kKvLayout);
  const st::Tensor& g = r.need("dout", 4, kQLayout);
  read_padded_problem(r, problem, q, k, source, c.problem);
  read_qkv(r, c, {q, k, v}, kQLayout, kKvLayout, options, source, &g);
  return c;
}

CallInputs decode_attention_varlen(CaseReader& r, json& problem, const json& options,
                                   const std::string& source) {
  VarlenAttentionCall c;
  const st::Tensor& q = r.need("q", 3, kVarlenQLayout);
  const st::Tensor& k = r.need("k", 3, kVarlenKvLayout);
  const st::Tensor& v = r.need("v", 3, kVarlenKvLayout);
  fill(problem, "H", q.shape[1]);
  fill(problem, "D", q.shape[2]);
  fill(problem, "Hkv", k.shape[1]);
  for (const char* name : {"cu_seqlens_q", "cu_seqlens_k"}) {
    const st::Tensor& cu = r.need(name, 1, "I32 [B + 1]");
    r.merge(problem, name, name, r.int32s(name, cu));
  }
  read_json(problem, c.problem, source + ": maskcheck.problem");
  c.problem.validate();  // the shapes below need sane offsets
  read_qkv(r, c, {q, k, v}, kVarlenQLayout, kVarlenKvLayout, options, source);
  return c;
}

constexpr std::string_view kCacheLayout = "[num_pages, page_size, Hkv, D]";

// Paged attention: the problem's "paged" object and the block table beside the padded problem of
// q [B, H, Lq, D]; Hkv from the caches, Lk max_pages * page_size unless the problem says.
CallInputs decode_attention_paged(CaseReader& r, json& problem, const json& options,
                                  const std::string& source) {
  PagedAttentionCall c;
  const st::Tensor& q = r.need("q", 4, kQLayout);
  const st::Tensor& k = r.need("k_cache", 4, kCacheLayout);
  const st::Tensor& v = r.need("v_cache", 4, kCacheLayout);
  const st::Tensor& table = r.need("block_table", 2, "I32 [B, max_pages]");
  json paged = json::object();
  if (problem.is_object() && problem.contains("paged")) {
    paged = problem["paged"];
    problem.erase("paged");
  }
  fill(paged, "num_pages", k.shape[0]);
  fill(paged, "page_size", k.shape[1]);
  fill(paged, "max_pages", table.shape[1]);
  JsonFields f(paged, source + ": maskcheck.problem.paged");
  f.field("page_size",
          [&](const json& x, const std::string& path) { c.kv.page_size = json_int(x, path); });
  f.field("num_pages",
          [&](const json& x, const std::string& path) { c.kv.num_pages = json_int(x, path); });
  f.field("max_pages",
          [&](const json& x, const std::string& path) { c.kv.max_pages = json_int(x, path); });
  f.finish();
  json& mask = member(problem, "mask");
  fill(mask, "B", q.shape[0]);
  fill(problem, "H", q.shape[1]);
  fill(mask, "Lq", q.shape[2]);
  fill(problem, "D", q.shape[3]);
  fill(problem, "Hkv", k.shape[2]);
  fill(mask, "Lk", c.kv.max_pages * c.kv.page_size);
  r.mask_arrays(mask);
  read_json(problem, c.problem, source + ": maskcheck.problem");
  r.shape("block_table", table, {c.problem.mask.B, c.kv.max_pages}, "I32 [B, max_pages]");
  c.kv.block_table = r.int32s("block_table", table);
  c.kv.validate(c.problem);
  c.dtype = r.dtype(&q, "q");
  c.storage = r.storage(Op::attention, c.dtype);
  const Storage s = storage_of(c);
  const bool own = c.storage.has_value();
  const std::vector<std::int64_t> cache{c.kv.num_pages, c.kv.page_size, c.problem.Hkv, c.problem.D};
  c.q = r.floats("q", q, q_shape(c.problem), kQLayout, s.q, own);
  c.k_cache = r.floats("k_cache", k, cache, kCacheLayout, s.k, own);
  c.v_cache = r.floats("v_cache", v, cache, kCacheLayout, s.v, own);
  read_options(options, source, [&](JsonFields& o) {
    o.field("want_lse",
            [&](const json& x, const std::string& path) { c.want_lse = json_bool(x, path); });
  });
  return c;
}

CallInputs decode_cross_entropy(CaseReader& r, json& problem, const json& options,
                                const std::string& source) {
  CrossEntropyCall c;
  const st::Tensor& logits = r.need("logits", 2, "[N, V]");
  const st::Tensor& labels = r.need("labels", 1, "I64 [N]");
  const st::Tensor* weights = r.find("weights");
  fill(problem, "N", logits.shape[0]);
  fill(problem, "V", logits.shape[1]);
  if (problem.is_object() && !problem.contains("weighted"))
    problem["weighted"] = weights != nullptr;
  read_json(problem, c.problem, source + ": maskcheck.problem");
  c.dtype = r.dtype(&logits, "logits");
  c.storage = r.storage(Op::cross_entropy, c.dtype);
  c.logits = r.floats("logits", logits, {c.problem.N, c.problem.V}, "[N, V]", storage_of(c).logits,
                      c.storage.has_value());
  c.labels = r.ints("labels", labels, {c.problem.N}, "[N]");
  if (c.problem.weighted && !weights)
    throw_invalid(r.where("tensor \"weights\""), "missing", "a weighted problem needs weights [N]");
  if (weights) {
    if (!c.problem.weighted)
      throw_invalid(r.where("tensor \"weights\""), weights->describe(),
                    "given, but maskcheck.problem says weighted = false");
    r.shape("weights", *weights, {c.problem.N}, "[N]");
    c.weights = st::to_doubles(*weights, r.where("tensor \"weights\""));
  }
  read_options(options, source, [&](JsonFields& f) {
    f.field("backward", [&](const json& v, const std::string& p) { c.backward = json_bool(v, p); });
  });
  if (const st::Tensor* g = r.find("grad_output")) {
    const bool none = c.problem.reduction == Reduction::none;
    if (!c.backward)
      throw_invalid(r.where("tensor \"grad_output\""), g->describe(),
                    "given, but maskcheck.options says backward = false");
    r.shape("grad_output", *g, {none ? c.problem.N : 1}, none ? "[N] (reduction none)" : "[1]");
    c.grad_output = st::to_doubles(*g, r.where("tensor \"grad_output\""));
  }
  return c;
}

// The problem (B and L default to ids' shape), ids and keep of lm_labels and mlm; returns [B, L].
template <class TokenCall>
std::vector<std::int64_t> read_tokens(CaseReader& r, TokenCall& c, json& problem,
                                      const std::string& source) {
  const st::Tensor& ids = r.need("ids", 2, "I64 [B, L]");
  fill(problem, "B", ids.shape[0]);
  fill(problem, "L", ids.shape[1]);
  read_json(problem, c.problem, source + ": maskcheck.problem");
  const std::vector<std::int64_t> bl{c.problem.B, c.problem.L};
  c.ids = r.ints("ids", ids, bl, "[B, L]");
  c.keep = r.flags("keep", r.need("keep", 2, "[B, L]"), bl, "[B, L]");
  return bl;
}

CallInputs decode_lm_labels(CaseReader& r, json& problem, const json& options,
                            const std::string& source) {
  LmLabelsCall c;
  const auto bl = read_tokens(r, c, problem, source);
  if (const st::Tensor* prompt = r.find("prompt_lens")) {
    r.shape("prompt_lens", *prompt, {c.problem.B}, "[B]");
    c.prompt_lens = r.int32s("prompt_lens", *prompt);
  }
  read_options(options, source, [](JsonFields&) {});
  return c;
}

CallInputs decode_mlm(CaseReader& r, json& problem, const json& options,
                      const std::string& source) {
  MlmCall c;
  const auto bl = read_tokens(r, c, problem, source);
  c.special = r.flags("special", r.need("special", 2, "[B, L]"), bl, "[B, L]");
  if (const st::Tensor* cont = r.find("continuation"))
    c.continuation = r.flags("continuation", *cont, bl, "[B, L]");
  else if (c.problem.whole_word)
    r.missing("continuation", "[B, L] (whole_word is set)");
  read_options(options, source, [](JsonFields&) {});
  return c;
}

}  // namespace

std::string_view to_string(Call c) {
  for (const auto& [call, name] : kCalls)
    if (call == c) return name;
  return "?";
}

Call call_from_string(std::string_view s) {
  for (const auto& [call, name] : kCalls)
    if (name == s) return call;
  std::string known;
  for (const auto& [call, name] : kCalls) known += (known.empty() ? "" : ", ") + std::string(name);
  throw_invalid("call", std::string(s), "must be one of " + known);
}

Op op_of(Call c) {
  switch (c) {
    case Call::build_mask:
    case Call::convert_mask:
    case Call::keep_from_lengths:
    case Call::last_valid_index:
      return Op::masks;
    case Call::softmax:
      return Op::softmax;
    case Call::attention:
    case Call::attention_varlen:
    case Call::attention_paged:
    case Call::attention_chunk:
    case Call::attention_backward:
      return Op::attention;
    case Call::cross_entropy:
      return Op::cross_entropy;
    case Call::lm_labels:
      return Op::lm_labels;
    case Call::mlm:
      return Op::mlm;
  }
  return Op::masks;
}

Call call_of(const CallInputs& in) {
  return std::visit(
      overloaded{[](const BuildMaskCall&) { return Call::build_mask; },
                 [](const ConvertMaskCall&) { return Call::convert_mask; },
                 [](const KeepFromLengthsCall&) { return Call::keep_from_lengths; },
                 [](const LastValidIndexCall&) { return Call::last_valid_index; },
                 [](const SoftmaxCall&) { return Call::softmax; },
                 [](const AttentionCall&) { return Call::attention; },
                 [](const VarlenAttentionCall&) { return Call::attention_varlen; },
                 [](const PagedAttentionCall&) { return Call::attention_paged; },
                 [](const ChunkAttentionCall&) { return Call::attention_chunk; },
                 [](const AttentionBackwardCall&) { return Call::attention_backward; },
                 [](const CrossEntropyCall&) { return Call::cross_entropy; },
                 [](const LmLabelsCall&) { return Call::lm_labels; },
                 [](const MlmCall&) { return Call::mlm; }},
      in);
}

void validate_call(const CallInputs& in) {
  std::visit(
      overloaded{
          [](const BuildMaskCall& c) {
            c.spec.validate();
            (void)checked_numel("mask", {c.spec.B, c.spec.Lq, c.spec.Lk});
          },
          [](const ConvertMaskCall& c) { (void)ref::decode_mask(c.values, c.from, c.dtype); },
          [](const PaddingCall& c) {
            require(c.L >= 0, "L", c.L, "must be >= 0");
            (void)checked_numel("keep", {ssize(c.lengths.size()), c.L});
            for (std::size_t b = 0; b < c.lengths.size(); ++b)
              require(c.lengths[b] >= 0 && c.lengths[b] <= c.L,
                      "lengths[" + std::to_string(b) + "]", c.lengths[b],
                      "must be in [0, L=" + std::to_string(c.L) + "]");
          },
          [](const SoftmaxCall& c) {
            c.problem.validate();
            require_size("x", c.x.size(), c.problem.numel());
          },
          [](const AttentionCall& c) {
            c.problem.validate();
            require_size("q", c.q.size(), c.problem.q_numel());
            require_size("k", c.k.size(), c.problem.kv_numel());
            require_size("v", c.v.size(), c.problem.kv_numel());
          },
          [](const AttentionBackwardCall& c) {
            validate_attention_inputs(c.problem, c.q.size(), c.k.size(), c.v.size(), c.dout.size());
          },
          [](const PagedAttentionCall& c) {
            validate_paged_inputs(c.problem, c.kv, c.q.size(), c.k_cache.size(), c.v_cache.size());
          },
          [](const ChunkAttentionCall& c) {
            validate_attention_inputs(c.problem, c.q.size(), c.k.size(), c.v.size());
            require(c.key_begin >= 0 && c.key_begin <= c.key_end && c.key_end <= c.problem.mask.Lk,
                    "key_begin", c.key_begin,
                    "must satisfy 0 <= key_begin <= key_end (" + std::to_string(c.key_end) +
                        ") <= Lk (" + std::to_string(c.problem.mask.Lk) + ")");
          },
          [](const VarlenAttentionCall& c) {
            c.problem.padded().validate();
            require_size("q", c.q.size(),
                         checked_numel("q", {c.problem.total_q(), c.problem.H, c.problem.D}));
            require_size("k", c.k.size(),
                         checked_numel("k", {c.problem.total_k(), c.problem.Hkv, c.problem.D}));
            require_size("v", c.v.size(), ssize(c.k.size()));
          },
          [](const CrossEntropyCall& c) {
            c.problem.validate();
            require_size("logits", c.logits.size(),
                         checked_numel("logits", {c.problem.N, c.problem.V}));
            validate_loss_inputs(c.problem, c.labels, c.weights);
            validate_upstream_gradient(c.problem, c.backward, c.grad_output);
          },
          [](const LmLabelsCall& c) {
            c.problem.validate();
            const std::int64_t n = checked_numel("ids", {c.problem.B, c.problem.L});
            require_size("ids", c.ids.size(), n);
            require_size("keep", c.keep.size(), n);
            if (!c.prompt_lens.empty())
              require_size("prompt_lens", c.prompt_lens.size(), c.problem.B);
            for (std::size_t b = 0; b < c.prompt_lens.size(); ++b)
              require(c.prompt_lens[b] >= 0, "prompt_lens[" + std::to_string(b) + "]",
                      c.prompt_lens[b], "must be >= 0");
          },
          [](const MlmCall& c) {
            validate_mlm_inputs(c.problem, c.ids, c.keep, c.special, c.continuation);
          }},
      in);
}

Support supports_call(const Implementation& impl, const CallInputs& in) {
  return std::visit(
      overloaded{
          [&](const BuildMaskCall& c) { return impl.supports_masks(c.spec, c.encoding, c.dtype); },
          [&](const ConvertMaskCall& c) {
            const Support s = impl.supports_masks(MaskSpec{}, c.from, c.dtype);
            return s ? impl.supports_masks(MaskSpec{}, c.to, c.dtype) : s;
          },
          [&](const PaddingCall&) {
            return impl.provides(Op::masks) ? Support::yes()
                                            : Support::no(impl.name() + " does not provide masks");
          },
          [&](const SoftmaxCall& c) { return impl.supports_softmax(c.problem, c.dtype); },
          [&](const AttentionCall& c) {
            return impl.supports_attention(c.problem, c.dtype, c.want_lse);
          },
          [&](const VarlenAttentionCall& c) {
            return impl.supports_attention_varlen(c.problem, c.dtype, c.want_lse);
          },
          [&](const PagedAttentionCall& c) {
            return impl.supports_attention_paged(c.problem, c.kv, c.dtype, c.want_lse);
          },
          [&](const ChunkAttentionCall& c) {
            return impl.supports_attention_chunk(c.problem, c.dtype);
          },
          [&](const AttentionBackwardCall& c) {
            return impl.supports_attention_backward(c.problem, c.dtype);
          },
          [&](const CrossEntropyCall& c) {
            return c.grad_output.empty() ? impl.supports_cross_entropy(c.problem, c.dtype)
                                         : impl.supports_cross_entropy_upstream(c.problem, c.dtype);
          },
          [&](const LmLabelsCall& c) { return impl.supports_lm_labels(c.problem); },
          [&](const MlmCall& c) { return impl.supports_mlm(c.problem); }},
      in);
}

CallResult run_call(const Implementation& impl, const CallInputs& in) {
  return std::visit(
      overloaded{
          [&](const BuildMaskCall& c) -> CallResult {
            return impl.build_mask(c.spec, c.encoding, c.dtype);
          },
          [&](const ConvertMaskCall& c) -> CallResult {
            return impl.convert_mask(c.values, c.from, c.to, c.dtype);
          },
          [&](const KeepFromLengthsCall& c) -> CallResult {
            return impl.keep_from_lengths(c.lengths, c.L, c.side);
          },
          [&](const LastValidIndexCall& c) -> CallResult {
            return impl.last_valid_index(c.lengths, c.L, c.side);
          },
          [&](const SoftmaxCall& c) -> CallResult { return impl.softmax(c.problem, c.dtype, c.x); },
          [&](const AttentionCall& c) -> CallResult {
            return impl.attention(c.problem, c.dtype, c.q, c.k, c.v, c.want_lse);
          },
          [&](const VarlenAttentionCall& c) -> CallResult {
            return impl.attention_varlen(c.problem, c.dtype, c.q, c.k, c.v, c.want_lse);
          },
          [&](const PagedAttentionCall& c) -> CallResult {
            return impl.attention_paged(c.problem, c.kv, c.dtype, c.q, c.k_cache, c.v_cache,
                                        c.want_lse);
          },
          [&](const ChunkAttentionCall& c) -> CallResult {
            return impl.attention_chunk(c.problem, c.dtype, c.q, c.k, c.v, c.key_begin, c.key_end);
          },
          [&](const AttentionBackwardCall& c) -> CallResult {
            return impl.attention_backward(c.problem, c.dtype, c.q, c.k, c.v, c.dout);
          },
          [&](const CrossEntropyCall& c) -> CallResult {
            if (!c.grad_output.empty())
              return impl.cross_entropy_upstream(c.problem, c.dtype, c.logits, c.labels, c.weights,
                                                 c.grad_output);
            return impl.cross_entropy(c.problem, c.dtype, c.logits, c.labels, c.weights,
                                      c.backward);
          },
          [&](const LmLabelsCall& c) -> CallResult {
            return impl.lm_labels(c.problem, c.ids, c.keep, c.prompt_lens);
          },
          [&](const MlmCall& c) -> CallResult {
            return impl.mlm(c.problem, c.ids, c.keep, c.special, c.continuation);
          }},
      in);
}

st::File encode_case(const CallInputs& in) {
  CaseParts parts;
  std::visit([&](const auto& c) { encode_inputs(c, parts); }, in);
  st::File f;
  f.tensors = std::move(parts.w.tensors);
  const Call call = call_of(in);
  f.metadata[kMetaFormat] = std::string(kCaseFormat);
  f.metadata[kMetaOp] = std::string(to_string(op_of(call)));
  f.metadata[kMetaCall] = std::string(to_string(call));
  if (parts.dtype) f.metadata[kMetaDtype] = std::string(to_string(*parts.dtype));
  f.metadata[kMetaProblem] = parts.problem.dump();
  f.metadata[kMetaOptions] = parts.options.dump();
  if (!parts.storage.is_null()) f.metadata[kMetaStorage] = parts.storage.dump();
  return f;
}

CallInputs decode_case(const st::File& f, const std::string& source) {
  const auto meta = [&](const char* key) -> const std::string* {
    const auto it = f.metadata.find(key);
    return it == f.metadata.end() ? nullptr : &it->second;
  };
  if (const std::string* format = meta(kMetaFormat); format && *format != kCaseFormat)
    throw_invalid(source + ": metadata " + kMetaFormat, *format,
                  *format == kResultFormat
                      ? "this is a result file written by maskcheck eval, not a case"
                      : "must be " + std::string(kCaseFormat));
  const std::string* op_name = meta(kMetaOp);
  if (!op_name)
    throw_invalid(source + ": metadata " + kMetaOp, "missing",
                  "a case file names its operation (masks, softmax, attention, cross_entropy, "
                  "lm_labels, mlm)");
  Op op = Op::masks;
  Call call = Call::build_mask;
  try {
    op = op_from_string(*op_name);
    const std::string* call_name = meta(kMetaCall);
    call = call_name ? call_from_string(*call_name) : default_call(op);
  } catch (const InvalidArgument& e) {
    throw InvalidArgument(source + ": " + e.field(), e.value(), "see maskcheck eval --help");
  }
  if (op_of(call) != op)
    throw_invalid(source + ": metadata " + kMetaCall, std::string(to_string(call)),
                  "is not a function of " + *op_name);
  json problem = parse_json_metadata(f, kMetaProblem, source);
  const json options = parse_json_metadata(f, kMetaOptions, source);

  CaseReader r(f, source, call);
  CallInputs in;
  switch (call) {
    case Call::build_mask:
    case Call::convert_mask:
    case Call::keep_from_lengths:
    case Call::last_valid_index:
      in = decode_masks(r, call, problem, options, source);
      break;
    case Call::softmax:
      in = decode_softmax(r, problem, options, source);
      break;
    case Call::attention:
      in = decode_attention<AttentionCall>(r, problem, options, source);
      break;
    case Call::attention_varlen:
      in = decode_attention_varlen(r, problem, options, source);
      break;
    case Call::attention_paged:
      in = decode_attention_paged(r, problem, options, source);
      break;
    case Call::attention_chunk:
      in = decode_attention<ChunkAttentionCall>(r, problem, options, source);
      break;
    case Call::attention_backward:
      in = decode_attention_backward(r, problem, options, source);
      break;
    case Call::cross_entropy:
      in = decode_cross_entropy(r, problem, options, source);
      break;
    case Call::lm_labels:
      in = decode_lm_labels(r, problem, options, source);
      break;
    case Call::mlm:
      in = decode_mlm(r, problem, options, source);
      break;
  }
  r.finish();
  return in;
}

Tensors result_tensors(const CallInputs& in, const CallResult& r, std::string_view prefix,
                       std::vector<std::string>* notes) {
  TensorWriter w(std::string(prefix), notes);
  auto wrong_result = [&] {
    throw std::logic_error("result_tensors: the result does not belong to the call " +
                           std::string(to_string(call_of(in))));
  };
  auto doubles = [&]() -> const std::vector<double>& {
    if (!std::holds_alternative<std::vector<double>>(r)) wrong_result();
    return std::get<std::vector<double>>(r);
  };
  std::visit(
      overloaded{
          [&](const BuildMaskCall& c) {
            w.floats("mask", doubles(), mask_shape_of(c.spec), c.dtype);
          },
          [&](const ConvertMaskCall& c) { w.floats("mask", doubles(), c.shape, c.dtype); },
          [&](const KeepFromLengthsCall& c) {
            if (!std::holds_alternative<std::vector<std::uint8_t>>(r)) wrong_result();
            w.ints<std::uint8_t>("keep", std::get<std::vector<std::uint8_t>>(r),
                                 {ssize(c.lengths.size()), c.L}, st::Dtype::U8);
          },
          [&](const LastValidIndexCall& c) {
            if (!std::holds_alternative<std::vector<std::int64_t>>(r)) wrong_result();
            w.ints<std::int64_t>("last_valid_index", std::get<std::vector<std::int64_t>>(r),
                                 {ssize(c.lengths.size())}, I64);
          },
          [&](const SoftmaxCall& c) {
            w.floats("y", doubles(), x_shape(c.problem), storage_of(c).y);
          },
          [&](const AttentionCall& c) {
            if (!std::holds_alternative<AttentionResult>(r)) wrong_result();
            const auto& a = std::get<AttentionResult>(r);
            w.floats("out", a.out, q_shape(c.problem), storage_of(c).out);
            if (c.want_lse || !a.lse.empty())
              w.f64("lse", a.lse, {c.problem.mask.B, c.problem.H, c.problem.mask.Lq});
          },
          [&](const VarlenAttentionCall& c) {
            if (!std::holds_alternative<AttentionResult>(r)) wrong_result();
            const auto& a = std::get<AttentionResult>(r);
            w.floats("out", a.out, q_shape(c.problem), storage_of(c).out);
            if (c.want_lse || !a.lse.empty())
              w.f64("lse", a.lse, {c.problem.H, c.problem.total_q()});
          },
          [&](const PagedAttentionCall& c) {
            if (!std::holds_alternative<AttentionResult>(r)) wrong_result();
            const auto& a = std::get<AttentionResult>(r);
            w.floats("out", a.out, q_shape(c.problem), storage_of(c).out);
            if (c.want_lse || !a.lse.empty())
              w.f64("lse", a.lse, {c.problem.mask.B, c.problem.H, c.problem.mask.Lq});
          },
          [&](const ChunkAttentionCall& c) {
            if (!std::holds_alternative<AttentionResult>(r)) wrong_result();
            const auto& a = std::get<AttentionResult>(r);
            w.floats("out", a.out, q_shape(c.problem), storage_of(c).out);
            w.f64("lse", a.lse, {c.problem.mask.B, c.problem.H, c.problem.mask.Lq});
          },
          [&](const AttentionBackwardCall& c) {
            if (!std::holds_alternative<AttentionGradients>(r)) wrong_result();
            const auto& g = std::get<AttentionGradients>(r);
            const Storage s = storage_of(c);
            w.floats("dq", g.dq, q_shape(c.problem), s.q);
            w.floats("dk", g.dk, kv_shape(c.problem), s.k);
            w.floats("dv", g.dv, kv_shape(c.problem), s.v);
          },
          [&](const CrossEntropyCall& c) {
            if (!std::holds_alternative<LossResult>(r)) wrong_result();
            const auto& l = std::get<LossResult>(r);
            w.f64("loss", std::span<const double>(&l.loss, 1), {});
            w.f64("losses", l.losses, {c.problem.N});
            w.ints<std::int64_t>("count", std::span<const std::int64_t>(&l.count, 1), {}, I64);
            w.f64("weight_sum", std::span<const double>(&l.weight_sum, 1), {});
            if (c.backward || !l.dlogits.empty())
              w.floats("dlogits", l.dlogits, {c.problem.N, c.problem.V}, storage_of(c).dlogits);
          },
          [&](const LmLabelsCall& c) {
            if (!std::holds_alternative<std::vector<std::int64_t>>(r)) wrong_result();
            w.ints<std::int64_t>("labels", std::get<std::vector<std::int64_t>>(r),
                                 {c.problem.B, c.problem.L}, I64);
          },
          [&](const MlmCall& c) {
            if (!std::holds_alternative<MlmResult>(r)) wrong_result();
            const auto& m = std::get<MlmResult>(r);
            w.ints<std::int64_t>("ids", m.ids, {c.problem.B, c.problem.L}, I64);
            w.ints<std::int64_t>("labels", m.labels, {c.problem.B, c.problem.L}, I64);
          }},
      in);
  return std::move(w.tensors);
}

}  // namespace maskcheck
