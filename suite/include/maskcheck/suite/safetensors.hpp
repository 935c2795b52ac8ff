// safetensors files (the format of huggingface/safetensors, read by safetensors.torch.load_file):
//   8 bytes      N, the header length, unsigned little-endian
//   N bytes      JSON header: {"<name>": {"dtype": "F32", "shape": [2, 3], "data_offsets": [b, e]},
//                              ..., "__metadata__": {"<key>": "<string value>", ...}}
//   the rest     the data buffer: each tensor row-major, little-endian, at [b, e) of the buffer.
// Reading trusts nothing: the header length against the file size and a cap, the JSON, every
// field's type, known dtypes, byte size == numel * itemsize, offsets inside the buffer and
// covering it exactly (no overlap, no hole; the official reader rejects holes too), duplicate
// names. A malformed file throws InvalidArgument naming the file and the problem; an unreadable
// one std::runtime_error. Writing goes through write_file_atomic: a failure never leaves a
// half-written file.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "maskcheck/reference/dtype.hpp"

namespace maskcheck::safetensors {

enum class Dtype : std::uint8_t { F64, F32, F16, BF16, I64, I32, I16, I8, U64, U32, U16, U8, BOOL };

std::string_view to_string(Dtype d);
std::optional<Dtype> dtype_from_string(std::string_view s);
std::size_t itemsize(Dtype d);
bool is_floating(Dtype d);  // F64, F32, F16, BF16

// The file dtype of a storage dtype, and back (nullopt for integer and bool dtypes).
Dtype file_dtype(DType t);
std::optional<DType> storage_dtype(Dtype d);

// The official reader refuses headers above 100 MB; so does this one.
inline constexpr std::uint64_t kMaxHeaderBytes = std::uint64_t{100} << 20;

struct Tensor {
  Dtype dtype = Dtype::F32;
  std::vector<std::int64_t> shape;  // [] is a 0-d tensor (one element)
  std::vector<std::uint8_t> bytes;  // numel * itemsize bytes, little-endian
  std::int64_t numel() const;
  std::string describe() const;  // "F32[2, 3]"
};

std::string shape_string(const std::vector<std::int64_t>& shape);  // "[2, 3]"

struct File {
  std::map<std::string, Tensor> tensors;
  std::map<std::string, std::string> metadata;
};

std::string serialize(const File& f);
// `source` names the bytes in error messages (usually the path).
File parse(std::string_view bytes, const std::string& source);
// A regular file of at most `max_bytes` (read_input_file in io.hpp); eval passes half its
// --max-memory (the bytes and the tensors parsed from them are held together).
inline constexpr std::uint64_t kDefaultMaxFileBytes = std::uint64_t{2} << 30;
File read_file(const std::string& path, std::uint64_t max_bytes = kDefaultMaxFileBytes);
void write_file(const std::string& path, const File& f);

// Values in and out. Floating tensors hold doubles converted to the dtype (f16/bf16 round to
// nearest even through the reference's half/bfloat16); check exactly_representable first where
// rounding would lose information. Integer tensors are range-checked on the way in and out.
Tensor float_tensor(std::span<const double> values, std::vector<std::int64_t> shape, Dtype d);
bool exactly_representable(std::span<const double> values, DType t);
Tensor int_tensor(std::span<const std::int64_t> values, std::vector<std::int64_t> shape, Dtype d);
Tensor int_tensor(std::span<const std::int32_t> values, std::vector<std::int64_t> shape, Dtype d);
Tensor int_tensor(std::span<const std::uint8_t> values, std::vector<std::int64_t> shape, Dtype d);

// `name` names the tensor in errors. to_doubles takes a floating tensor, to_int64 an integer or
// bool one; anything else throws InvalidArgument.
std::vector<double> to_doubles(const Tensor& t, std::string_view name);
std::vector<std::int64_t> to_int64(const Tensor& t, std::string_view name);

}  // namespace maskcheck::safetensors
