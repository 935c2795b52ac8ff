#include "maskcheck/suite/safetensors.hpp"

#include <algorithm>
#include <bit>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "maskcheck/reference/common.hpp"
#include "maskcheck/suite/io.hpp"
#include "maskcheck/suite/problem_json.hpp"

namespace maskcheck::safetensors {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; this reader copies bytes as they are");

namespace {

constexpr int kMaxDepth = 8;

struct DtypeInfo {
  Dtype dtype;
  std::string_view name;
  std::size_t size;
};
constexpr DtypeInfo kDtypes[] = {
    {Dtype::F64, "F64", 8},   {Dtype::F32, "F32", 4}, {Dtype::F16, "F16", 2},
    {Dtype::BF16, "BF16", 2}, {Dtype::I64, "I64", 8}, {Dtype::I32, "I32", 4},
    {Dtype::I16, "I16", 2},   {Dtype::I8, "I8", 1},   {Dtype::U64, "U64", 8},
    {Dtype::U32, "U32", 4},   {Dtype::U16, "U16", 2}, {Dtype::U8, "U8", 1},
    {Dtype::BOOL, "BOOL", 1}};

const DtypeInfo& info(Dtype d) {
  for (const auto& i : kDtypes)
    if (i.dtype == d) return i;
  throw std::logic_error("safetensors: unknown Dtype");
}

std::string known_dtypes() {
  std::string s;
  for (const auto& i : kDtypes) s += (s.empty() ? "" : ", ") + std::string(i.name);
  return s;
}

// numel * itemsize with overflow checks; nullopt when it does not fit in int64.
std::optional<std::int64_t> byte_size(const std::vector<std::int64_t>& shape, std::size_t item) {
  std::int64_t n = 1;
  for (std::int64_t d : shape) {
    if (d < 0) return std::nullopt;
    if (d != 0 && n > std::numeric_limits<std::int64_t>::max() / d) return std::nullopt;
    n *= d;
  }
  const auto s = static_cast<std::int64_t>(item);
  if (n > std::numeric_limits<std::int64_t>::max() / s) return std::nullopt;
  return n * s;
}

template <class T>
void store(std::vector<std::uint8_t>& bytes, std::size_t i, T v) {
  std::memcpy(bytes.data() + i * sizeof(T), &v, sizeof(T));
}
template <class T>
T load(const std::vector<std::uint8_t>& bytes, std::size_t i) {
  T v;
  std::memcpy(&v, bytes.data() + i * sizeof(T), sizeof(T));
  return v;
}

Tensor empty_tensor(Dtype d, std::vector<std::int64_t> shape, std::size_t count) {
  const auto bytes = byte_size(shape, itemsize(d));
  if (!bytes || *bytes != static_cast<std::int64_t>(count * itemsize(d)))
    throw_invalid("tensor shape", shape_string(shape),
                  "must hold exactly the " + std::to_string(count) + " values given");
  Tensor t;
  t.dtype = d;
  t.shape = std::move(shape);
  t.bytes.resize(static_cast<std::size_t>(*bytes));
  return t;
}

template <class V>
Tensor ints_to_tensor(std::span<const V> values, std::vector<std::int64_t> shape, Dtype d) {
  Tensor t = empty_tensor(d, std::move(shape), values.size());
  for (std::size_t i = 0; i < values.size(); ++i) {
    const auto v = static_cast<std::int64_t>(values[i]);
    auto put = [&](auto tag) {
      using T = decltype(tag);
      if (std::cmp_less(v, std::numeric_limits<T>::min()) ||
          std::cmp_greater(v, std::numeric_limits<T>::max()))
        throw_invalid("value", static_cast<long long>(v),
                      "does not fit in " + std::string(to_string(d)));
      store<T>(t.bytes, i, static_cast<T>(v));
    };
    switch (d) {
      case Dtype::I64:
        put(std::int64_t{});
        break;
      case Dtype::I32:
        put(std::int32_t{});
        break;
      case Dtype::I16:
        put(std::int16_t{});
        break;
      case Dtype::I8:
        put(std::int8_t{});
        break;
      case Dtype::U64:
        put(std::uint64_t{});
        break;
      case Dtype::U32:
        put(std::uint32_t{});
        break;
      case Dtype::U16:
        put(std::uint16_t{});
        break;
      case Dtype::U8:
        put(std::uint8_t{});
        break;
      case Dtype::BOOL:
        if (v != 0 && v != 1)
          throw_invalid("value", static_cast<long long>(v), "BOOL holds 0 or 1");
        store<std::uint8_t>(t.bytes, i, static_cast<std::uint8_t>(v));
        break;
      default:
        throw_invalid("dtype", std::string(to_string(d)),
                      "an integer tensor needs an integer dtype");
    }
  }
  return t;
}

struct Entry {
  std::string name;
  std::int64_t begin = 0, end = 0;
};

}  // namespace

std::string_view to_string(Dtype d) {
  return info(d).name;
}
std::optional<Dtype> dtype_from_string(std::string_view s) {
  for (const auto& i : kDtypes)
    if (i.name == s) return i.dtype;
  return std::nullopt;
}
std::size_t itemsize(Dtype d) {
  return info(d).size;
}
bool is_floating(Dtype d) {
  return d == Dtype::F64 || d == Dtype::F32 || d == Dtype::F16 || d == Dtype::BF16;
}

Dtype file_dtype(DType t) {
  switch (t) {
    case DType::f64:
      return Dtype::F64;
    case DType::f32:
      return Dtype::F32;
    case DType::f16:
      return Dtype::F16;
    case DType::bf16:
      return Dtype::BF16;
  }
  return Dtype::F64;
}

std::optional<DType> storage_dtype(Dtype d) {
  switch (d) {
    case Dtype::F64:
      return DType::f64;
    case Dtype::F32:
      return DType::f32;
    case Dtype::F16:
      return DType::f16;
    case Dtype::BF16:
      return DType::bf16;
    default:
      return std::nullopt;
  }
}

std::string shape_string(const std::vector<std::int64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

std::int64_t Tensor::numel() const {
  std::int64_t n = 1;
  for (std::int64_t d : shape) n *= d;
  return n;
}

std::string Tensor::describe() const {
  return std::string(to_string(dtype)) + shape_string(shape);
}

std::string serialize(const File& f) {
  nlohmann::json header = nlohmann::json::object();
  if (!f.metadata.empty()) header["__metadata__"] = f.metadata;
  std::int64_t offset = 0;
  for (const auto& [name, t] : f.tensors) {
    if (name == "__metadata__") throw_invalid("tensor name", name, "is reserved for the metadata");
    const auto bytes = byte_size(t.shape, itemsize(t.dtype));
    if (!bytes || *bytes != static_cast<std::int64_t>(t.bytes.size()))
      throw_invalid("tensor " + name, t.describe(),
                    "holds " + std::to_string(t.bytes.size()) + " bytes, not numel * itemsize");
    header[name] = {{"dtype", std::string(to_string(t.dtype))},
                    {"shape", t.shape},
                    {"data_offsets", {offset, offset + *bytes}}};
    offset += *bytes;
  }
  std::string h = header.dump();
  h.append((8 - h.size() % 8) % 8, ' ');  // align the data to 8 bytes, as the official writer does
  std::string out(8, '\0');
  const std::uint64_t n = h.size();
  std::memcpy(out.data(), &n, 8);
  out += h;
  out.reserve(out.size() + static_cast<std::size_t>(offset));
  for (const auto& [name, t] : f.tensors)
    out.append(reinterpret_cast<const char*>(t.bytes.data()), t.bytes.size());
  return out;
}

File parse(std::string_view bytes, const std::string& source) {
  using nlohmann::json;
  auto fail = [&](const std::string& what, const std::string& value,
                  const std::string& requirement) {
    throw_invalid(source + ": " + what, value, requirement);
  };
  if (bytes.size() < 8)
    fail("file size", std::to_string(bytes.size()) + " bytes",
         "a safetensors file starts with an 8-byte header length; truncated or not safetensors");
  std::uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  if (n > kMaxHeaderBytes)
    fail("header length", std::to_string(n),
         "must be at most " + std::to_string(kMaxHeaderBytes) + " bytes; not a safetensors file?");
  if (n > bytes.size() - 8)
    fail("header length", std::to_string(n),
         "exceeds the " + std::to_string(bytes.size() - 8) +
             " bytes after the length field; truncated or not safetensors");
  const std::string_view text = bytes.substr(8, n);
  const std::string_view data = bytes.substr(8 + n);

  // The callback notes duplicate names and drops anything nested deeper than a header can be
  // (a valid one nests three levels), which keeps recursive printing and destruction safe.
  std::set<std::string> seen;
  std::string duplicate;
  bool too_deep = false;
  json::parser_callback_t note_duplicates = [&](int depth, json::parse_event_t event,
                                                json& parsed) {
    if (depth > kMaxDepth) {
      too_deep = true;
      return false;
    }
    if (depth == 1 && event == json::parse_event_t::key && !seen.insert(parsed.dump()).second)
      duplicate = parsed.dump();
    return true;
  };
  const json header = json::parse(text.begin(), text.end(), note_duplicates, false);
  if (header.is_discarded()) fail("header", "not JSON", "must be a JSON object");
  if (!header.is_object()) fail("header", header.type_name(), "must be a JSON object");
  if (too_deep)
    fail("header", "nested deeper than " + std::to_string(kMaxDepth) + " levels",
         "a safetensors header is {name: {dtype, shape, data_offsets}}");
  if (!duplicate.empty()) fail("header", "duplicate key " + duplicate, "names must be unique");

  File f;
  std::vector<Entry> entries;
  for (const auto& [name, value] : header.items()) {
    if (name == "__metadata__") {
      if (!value.is_object()) fail("__metadata__", value.type_name(), "must be an object");
      for (const auto& [k, v] : value.items()) {
        if (!v.is_string())
          fail("__metadata__[\"" + k + "\"]", json_brief(v), "metadata values must be strings");
        f.metadata[k] = v.get<std::string>();
      }
      continue;
    }
    const std::string field = "tensor \"" + name + "\"";
    if (!value.is_object() || value.size() != 3 || !value.contains("dtype") ||
        !value.contains("shape") || !value.contains("data_offsets"))
      fail(field, json_brief(value), "must be {\"dtype\", \"shape\", \"data_offsets\"}");
    Tensor t;
    const json& dt = value["dtype"];
    const auto d = dt.is_string() ? dtype_from_string(dt.get<std::string>()) : std::nullopt;
    if (!d) fail(field + " dtype", json_brief(dt), "must be one of " + known_dtypes());
    t.dtype = *d;
    const json& shape = value["shape"];
    if (!shape.is_array()) fail(field + " shape", json_brief(shape), "must be an array");
    for (const json& dim : shape) {
      if (!dim.is_number_integer() || dim.get<std::int64_t>() < 0 ||
          (dim.is_number_unsigned() &&
           dim.get<std::uint64_t>() > std::uint64_t(std::numeric_limits<std::int64_t>::max())))
        fail(field + " shape", json_brief(shape), "dimensions must be integers >= 0");
      t.shape.push_back(dim.get<std::int64_t>());
    }
    const auto size = byte_size(t.shape, itemsize(t.dtype));
    if (!size) fail(field + " shape", json_brief(shape), "byte size must fit in 64 bits");
    // Offsets are unsigned and checked in that domain, in order, before anything is read: a
    // begin above 2^63 must not wrap negative.
    const json& off = value["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() ||
        !off[1].is_number_unsigned())
      fail(field + " data_offsets", json_brief(off), "must be [begin, end], integers >= 0");
    const std::uint64_t ubegin = off[0].get<std::uint64_t>(), uend = off[1].get<std::uint64_t>();
    if (ubegin > uend) fail(field + " data_offsets", json_brief(off), "begin must not exceed end");
    if (uend > data.size())
      fail(field + " data_offsets", json_brief(off),
           "end lies past the " + std::to_string(data.size()) +
               "-byte data buffer; truncated file?");
    if (uend - ubegin != static_cast<std::uint64_t>(*size))
      fail(field + " data_offsets", json_brief(off),
           "span " + std::to_string(uend - ubegin) + " bytes, but " + t.describe() + " needs " +
               std::to_string(*size));
    // Both now lie in [0, data.size()], which fits in int64.
    const auto begin = static_cast<std::int64_t>(ubegin), end = static_cast<std::int64_t>(uend);
    t.bytes.assign(data.begin() + begin, data.begin() + end);
    entries.push_back({name, begin, end});
    f.tensors.emplace(name, std::move(t));
  }
  // The tensors tile the buffer: sorted by offset, each starts where the previous one ended.
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return std::tie(a.begin, a.end) < std::tie(b.begin, b.end);
  });
  std::int64_t at = 0;
  std::string prev = "the start of the buffer";
  for (const auto& e : entries) {
    if (e.begin < at)
      fail("tensor \"" + e.name + "\" data_offsets",
           "[" + std::to_string(e.begin) + ", " + std::to_string(e.end) + "]",
           "overlaps " + prev + ", which ends at " + std::to_string(at));
    if (e.begin > at)
      fail("tensor \"" + e.name + "\" data_offsets",
           "[" + std::to_string(e.begin) + ", " + std::to_string(e.end) + "]",
           "leaves a hole after " + prev + ", which ends at " + std::to_string(at));
    at = e.end;
    prev = "tensor \"" + e.name + "\"";
  }
  if (at != static_cast<std::int64_t>(data.size()))
    fail("data buffer", std::to_string(data.size()) + " bytes",
         "the tensors cover " + std::to_string(at) + " bytes; trailing bytes are not allowed");
  return f;
}

File read_file(const std::string& path, std::uint64_t max_bytes) {
  return parse(read_input_file(path, max_bytes), path);
}

void write_file(const std::string& path, const File& f) {
  write_file_atomic(path, serialize(f));
}

Tensor float_tensor(std::span<const double> values, std::vector<std::int64_t> shape, Dtype d) {
  if (!is_floating(d))
    throw_invalid("dtype", std::string(to_string(d)), "a floating tensor needs F64/F32/F16/BF16");
  Tensor t = empty_tensor(d, std::move(shape), values.size());
  for (std::size_t i = 0; i < values.size(); ++i) {
    switch (d) {
      case Dtype::F64:
        store<double>(t.bytes, i, values[i]);
        break;
      case Dtype::F32:
        store<float>(t.bytes, i, static_cast<float>(values[i]));
        break;
      case Dtype::F16:
        store<std::uint16_t>(t.bytes, i, half(values[i]).bits);
        break;
      default:
        store<std::uint16_t>(t.bytes, i, bfloat16(values[i]).bits);
        break;
    }
  }
  return t;
}

bool exactly_representable(std::span<const double> values, DType t) {
  return std::all_of(values.begin(), values.end(), [t](double x) {
    const double r = round_to(t, x);
    return std::isnan(x) ? std::isnan(r)
                         : std::bit_cast<std::uint64_t>(r) == std::bit_cast<std::uint64_t>(x);
  });
}

Tensor int_tensor(std::span<const std::int64_t> values, std::vector<std::int64_t> shape, Dtype d) {
  return ints_to_tensor(values, std::move(shape), d);
}
Tensor int_tensor(std::span<const std::int32_t> values, std::vector<std::int64_t> shape, Dtype d) {
  return ints_to_tensor(values, std::move(shape), d);
}
Tensor int_tensor(std::span<const std::uint8_t> values, std::vector<std::int64_t> shape, Dtype d) {
  return ints_to_tensor(values, std::move(shape), d);
}

std::vector<double> to_doubles(const Tensor& t, std::string_view name) {
  if (!is_floating(t.dtype))
    throw_invalid(std::string(name) + " dtype", std::string(to_string(t.dtype)),
                  "must be a floating dtype (F64, F32, F16, BF16)");
  const auto n = static_cast<std::size_t>(t.numel());
  std::vector<double> v(n);
  for (std::size_t i = 0; i < n; ++i) {
    switch (t.dtype) {
      case Dtype::F64:
        v[i] = load<double>(t.bytes, i);
        break;
      case Dtype::F32:
        v[i] = load<float>(t.bytes, i);
        break;
      case Dtype::F16:
        v[i] = static_cast<double>(half::from_bits(load<std::uint16_t>(t.bytes, i)));
        break;
      default:
        v[i] = static_cast<double>(bfloat16::from_bits(load<std::uint16_t>(t.bytes, i)));
        break;
    }
  }
  return v;
}

std::vector<std::int64_t> to_int64(const Tensor& t, std::string_view name) {
  if (is_floating(t.dtype))
    throw_invalid(std::string(name) + " dtype", std::string(to_string(t.dtype)),
                  "must be an integer or BOOL dtype");
  const auto n = static_cast<std::size_t>(t.numel());
  std::vector<std::int64_t> v(n);
  for (std::size_t i = 0; i < n; ++i) {
    switch (t.dtype) {
      case Dtype::I64:
        v[i] = load<std::int64_t>(t.bytes, i);
        break;
      case Dtype::I32:
        v[i] = load<std::int32_t>(t.bytes, i);
        break;
      case Dtype::I16:
        v[i] = load<std::int16_t>(t.bytes, i);
        break;
      case Dtype::I8:
        v[i] = load<std::int8_t>(t.bytes, i);
        break;
      case Dtype::U64: {
        const auto u = load<std::uint64_t>(t.bytes, i);
        if (u > std::uint64_t(std::numeric_limits<std::int64_t>::max()))
          throw_invalid(std::string(name) + "[" + std::to_string(i) + "]", std::to_string(u),
                        "must fit in int64");
        v[i] = static_cast<std::int64_t>(u);
        break;
      }
      case Dtype::U32:
        v[i] = load<std::uint32_t>(t.bytes, i);
        break;
      case Dtype::U16:
        v[i] = load<std::uint16_t>(t.bytes, i);
        break;
      default:  // U8, BOOL
        v[i] = load<std::uint8_t>(t.bytes, i);
        break;
    }
  }
  return v;
}

}  // namespace maskcheck::safetensors
