// Loading a plugin (maskcheck/plugin.h) into this process and adapting it to the registry as
// "plugin:<name>". Every call builds DLTensors from the registry's doubles in the case's dtype,
// fills the outputs with NaN, surrounds every buffer with guard bytes, calls the plugin, and
// then checks that the guards and the inputs are untouched before reading the outputs back.
// A support question is the same call with args.query set and no data. Each tensor is in the
// dtype the plugin declared for it (ABI 1.1's mixed storage), and only the table fields of the
// plugin's ABI minor version are read.
#include <dlfcn.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <limits>
#include <optional>
#include <sstream>

#include "maskcheck/plugin.h"
#include "maskcheck/reference/predicate.hpp"
#include "maskcheck/suite/cases.hpp"
#include "maskcheck/suite/plugin_host.hpp"
#include "maskcheck/suite/reference_impl.hpp"
#include "plugin_internal.hpp"

#ifdef MASKCHECK_PLUGIN_CUDA
#include <cuda_runtime_api.h>
#endif

namespace maskcheck::plugin {
namespace {

static_assert(sizeof(half) == 2 && sizeof(bfloat16) == 2, "16-bit storage must be 2 bytes");
static_assert(kUnbounded == MASKCHECK_UNBOUNDED, "one spelling of an unbounded window side");

constexpr std::uint32_t kKnownDtypes =
    MASKCHECK_DTYPE_F64 | MASKCHECK_DTYPE_F32 | MASKCHECK_DTYPE_F16 | MASKCHECK_DTYPE_BF16;
constexpr std::uint32_t kKnownFlags10 = MASKCHECK_FLAG_KEEP_TENSOR | MASKCHECK_FLAG_NO_LSE;
constexpr std::uint32_t kKnownFlags11 = kKnownFlags10 | MASKCHECK_FLAG_ADDITIVE_MASK;

std::uint32_t dtype_bit(DType t) {
  switch (t) {
    case DType::f64:
      return MASKCHECK_DTYPE_F64;
    case DType::f32:
      return MASKCHECK_DTYPE_F32;
    case DType::f16:
      return MASKCHECK_DTYPE_F16;
    case DType::bf16:
      return MASKCHECK_DTYPE_BF16;
  }
  return 0;
}

DLDataType dl_dtype(DType t) {
  switch (t) {
    case DType::f64:
      return {kDLFloat, 64, 1};
    case DType::f32:
      return {kDLFloat, 32, 1};
    case DType::f16:
      return {kDLFloat, 16, 1};
    case DType::bf16:
      return {kDLBfloat, 16, 1};
  }
  return {kDLFloat, 64, 1};
}
constexpr DLDataType kUInt8{kDLUInt, 8, 1};
constexpr DLDataType kInt32{kDLInt, 32, 1};
constexpr DLDataType kInt64{kDLInt, 64, 1};

// The dtype of log-sum-exp, per-row losses and weights.
DType aux_dtype(DType t) {
  return t == DType::f64 ? DType::f64 : DType::f32;
}

std::string status_name(maskcheck_status s) {
  switch (s) {
    case MASKCHECK_OK:
      return "OK";
    case MASKCHECK_UNSUPPORTED:
      return "UNSUPPORTED";
    case MASKCHECK_INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case MASKCHECK_INTERNAL:
      return "INTERNAL";
  }
  return "unknown status " + std::to_string(s);
}

// ---- device memory: the plugin's tensors live in host memory or, for CUDA plugins, on the GPU.

class Device {
 public:
  explicit Device(const PluginInfo& info) : type_(info.device_type), id_(info.device_id) {
#ifdef MASKCHECK_PLUGIN_CUDA
    if (type_ == kDLCUDA) {
      int n = 0;
      if (cudaGetDeviceCount(&n) != cudaSuccess || n <= id_) {
        cudaGetLastError();
        unavailable_ = "no CUDA device " + std::to_string(id_) + " (" + std::to_string(n) +
                       " visible) for plugin " + info.impl_name();
      } else {
        check(cudaSetDevice(id_), "cudaSetDevice");
        check(cudaStreamCreate(&stream_), "cudaStreamCreate");
      }
    }
#endif
  }
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;
  ~Device() {
#ifdef MASKCHECK_PLUGIN_CUDA
    if (stream_) cudaStreamDestroy(stream_);
#endif
  }

  bool host() const {
    return type_ == kDLCPU;
  }
  const std::string& unavailable() const {
    return unavailable_;
  }  // empty: usable
  DLDevice dl() const {
    return {static_cast<DLDeviceType>(type_), id_};
  }
  void* stream() const {
#ifdef MASKCHECK_PLUGIN_CUDA
    return stream_;
#else
    return nullptr;
#endif
  }

  // Device memory of `bytes` (never called for host plugins).
  void* allocate(std::size_t bytes) const {
#ifdef MASKCHECK_PLUGIN_CUDA
    void* p = nullptr;
    check(cudaMalloc(&p, bytes), "cudaMalloc");
    return p;
#else
    (void)bytes;
    throw std::logic_error("device memory without CUDA");
#endif
  }
  void release(void* p) const {
#ifdef MASKCHECK_PLUGIN_CUDA
    cudaFree(p);
#else
    (void)p;
#endif
  }
  void upload(void* dst, const void* src, std::size_t bytes) const {
#ifdef MASKCHECK_PLUGIN_CUDA
    check(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice), "cudaMemcpy to the device");
#else
    (void)dst, (void)src, (void)bytes;
#endif
  }
  void download(void* dst, const void* src, std::size_t bytes) const {
#ifdef MASKCHECK_PLUGIN_CUDA
    check(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost), "cudaMemcpy to the host");
#else
    (void)dst, (void)src, (void)bytes;
#endif
  }
  // After a call: the plugin's work on the stream has finished (and did not fail).
  void synchronize(const std::string& function) const {
#ifdef MASKCHECK_PLUGIN_CUDA
    if (stream_) check(cudaStreamSynchronize(stream_), function.c_str());
#else
    (void)function;
#endif
  }

 private:
#ifdef MASKCHECK_PLUGIN_CUDA
  static void check(cudaError_t e, const char* what) {
    if (e != cudaSuccess)
      throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
  }
  cudaStream_t stream_ = nullptr;
#endif
  std::int32_t type_;
  std::int32_t id_;
  std::string unavailable_;
};

// ---- tensors -------------------------------------------------------------------------------

// One tensor handed to a plugin. For a real call its bytes sit between two guard zones of
// kGuard bytes (which keep the data 256-byte aligned, as DLPack asks); a write past either end
// of the tensor lands in a guard and is reported. For a query, data stays NULL.
class Tensor {
 public:
  static constexpr std::size_t kGuard = 256;
  static constexpr unsigned char kGuardByte = 0xA5;

  Tensor(std::string name, DLDataType dtype, std::vector<std::int64_t> shape)
      : name_(std::move(name)), shape_(std::move(shape)), strides_(shape_.size()) {
    std::int64_t stride = 1;
    for (std::size_t i = shape_.size(); i-- > 0;) {
      strides_[i] = stride;
      stride *= shape_[i];
    }
    numel_ = stride;
    t_.data = nullptr;
    t_.ndim = static_cast<int>(shape_.size());
    t_.dtype = dtype;
    t_.shape = shape_.data();
    t_.strides = strides_.data();
    t_.byte_offset = 0;
  }
  Tensor(const Tensor&) = delete;
  Tensor& operator=(const Tensor&) = delete;
  ~Tensor() {
    if (device_mem_) device_->release(device_mem_);
  }

  const std::string& name() const { return name_; }
  std::int64_t numel() const { return numel_; }
  std::size_t bytes() const {
    return static_cast<std::size_t>(numel_) * ((t_.dtype.bits + 7u) / 8u);
  }
  const DLTensor* dl() const { return &t_; }

  // Gives the tensor its memory on `device` (a real call), holding `content` (bytes()).
  void place(const Device& device, const void* content, bool input) {
    device_ = &device;
    host_.assign(kGuard + round_up(bytes()) + kGuard, kGuardByte);
    if (bytes() > 0) std::memcpy(payload(), content, bytes());
    if (input) original_.assign(payload(), payload() + bytes());
    t_.device = device.dl();
    if (device.host()) {
      t_.data = payload();
    } else {
      // cudaMalloc returns 256-byte aligned memory, so the payload stays aligned too.
      device_mem_ = device.allocate(host_.size());
      t_.data = static_cast<unsigned char*>(device_mem_) + kGuard;
      device.upload(device_mem_, host_.data(), host_.size());
    }
  }
  // Only the shape, for a query.
  void describe_on(const Device& device) { t_.device = device.dl(); }

  // After a real call: fetch the bytes (device plugins) and check the guards and inputs.
  void collect(const std::string& function) {
    if (!device_) return;
    if (!device_->host()) device_->download(host_.data(), device_mem_, host_.size());
    const std::size_t end = kGuard + bytes();
    for (std::size_t i = 0; i < host_.size(); ++i) {
      if (i == kGuard) i = end;
      if (i >= host_.size()) break;
      if (host_[i] != kGuardByte) {
        std::ostringstream os;
        if (i < kGuard)
          os << function << " wrote " << (kGuard - i) << " byte(s) before the start of " << name_;
        else
          os << function << " wrote past the end of " << name_ << " (" << bytes()
             << " bytes): byte " << (i - end) << " after its last element was changed";
        throw std::runtime_error(os.str());
      }
    }
    if (!original_.empty() && std::memcmp(original_.data(), payload(), bytes()) != 0)
      throw std::runtime_error(function + " modified its input " + name_ +
                               " (inputs are read-only)");
    // Elements still holding the poison were never written (no arithmetic yields a signaling
    // NaN): a failure, not the fully_masked_row_nan convention of rows computed as NaN.
    if (!poison_.empty()) {
      const std::size_t w = poison_.size();
      std::int64_t unwritten = 0, first = -1;
      for (std::int64_t i = 0; i < numel_; ++i)
        if (std::memcmp(payload() + static_cast<std::size_t>(i) * w, poison_.data(), w) == 0) {
          if (unwritten++ == 0) first = i;
        }
      if (unwritten > 0) {
        std::ostringstream os;
        os << function << " left " << unwritten << " of " << numel_ << " elements of " << name_
           << " unwritten (still the poison it was handed), first at " << index_text(first)
           << "; every output element must be written (zeros, -inf log-sum-exp for a row that "
              "sees no key)";
        throw std::runtime_error(os.str());
      }
    }
  }
  // The element pattern an output is poisoned with; collect() reports elements still holding it.
  void set_poison(std::vector<unsigned char> element) { poison_ = std::move(element); }

  const unsigned char* payload() const { return host_.data() + kGuard; }
  unsigned char* payload() { return host_.data() + kGuard; }

 private:
  // "(0, 1, 3, 2)" for a flat index.
  std::string index_text(std::int64_t flat) const {
    std::string s = ")";
    for (std::size_t a = shape_.size(); a-- > 0;) {
      const std::int64_t d = std::max<std::int64_t>(shape_[a], 1);
      s = (a ? ", " : "") + std::to_string(flat % d) + s;
      flat /= d;
    }
    return name_ + "(" + s;
  }

  static constexpr std::size_t kAlign = 256;
  static std::size_t round_up(std::size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

  std::string name_;
  std::vector<std::int64_t> shape_, strides_;
  std::int64_t numel_ = 0;
  DLTensor t_{};
  // 256-byte aligned host storage: guard | payload (rounded up) | guard.
  struct AlignedBytes {
    std::vector<unsigned char> raw;
    unsigned char* base = nullptr;
    std::size_t n = 0;
    void assign(std::size_t bytes, unsigned char fill) {
      raw.assign(bytes + kAlign, fill);
      const auto addr = reinterpret_cast<std::uintptr_t>(raw.data());
      base = raw.data() + (kAlign - addr % kAlign) % kAlign;
      n = bytes;
    }
    unsigned char* data() { return base; }
    const unsigned char* data() const { return base; }
    std::size_t size() const { return n; }
    unsigned char& operator[](std::size_t i) { return base[i]; }
  } host_;
  std::vector<unsigned char> original_;
  std::vector<unsigned char> poison_;
  const Device* device_ = nullptr;
  void* device_mem_ = nullptr;
};

// Values in dtype t as the bytes of its storage type, and back.
std::vector<unsigned char> storage_bytes(std::span<const double> x, DType t) {
  return dispatch_dtype(t, [&](auto tag) {
    const auto s = to_storage_vec<decltype(tag)>(x);
    std::vector<unsigned char> b(s.size() * sizeof(decltype(tag)));
    if (!b.empty()) std::memcpy(b.data(), s.data(), b.size());
    return b;
  });
}
std::vector<double> storage_values(const Tensor& tensor, DType t) {
  return dispatch_dtype(t, [&](auto tag) {
    std::vector<decltype(tag)> s(static_cast<std::size_t>(tensor.numel()));
    if (!s.empty()) std::memcpy(s.data(), tensor.payload(), tensor.bytes());
    return to_double_vec(s);
  });
}
template <class T>
const void* raw(std::span<const T> v) {
  return v.data();
}

// ---- the library ----------------------------------------------------------------------------

// A dlopen()ed plugin. The library is never unloaded: plugins may leave threads, atexit
// handlers or CUDA state behind, and unloading those is a classic crash at exit.
struct Library {
  void* handle = nullptr;
  std::string path;
};

std::string where(const std::string& path) {
  return "plugin " + path;
}

std::string upper(std::string_view s) {
  std::string u(s);
  for (char& ch : u) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  return u;
}

Library open_library(const std::string& given) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::exists(given, ec)) throw LoadError(where(given) + ": no such file");
  if (fs::is_directory(given, ec)) throw LoadError(where(given) + ": is a directory");
  if (::access(given.c_str(), R_OK) != 0)
    throw LoadError(where(given) + ": cannot read it: " + std::strerror(errno));
  // An absolute path, so that dlopen never searches the library path for a bare file name.
  const std::string path = fs::absolute(given, ec).string();
  ::dlerror();
  void* handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    const char* e = ::dlerror();
    throw LoadError(where(given) +
                    ": cannot load it as a shared library: " + (e ? e : "unknown dlopen error"));
  }
  return {handle, path};
}

const maskcheck_plugin* entry_table(const Library& lib, const std::string& given) {
  ::dlerror();
  void* sym = ::dlsym(lib.handle, MASKCHECK_PLUGIN_ENTRY_NAME);
  if (!sym) {
    // Another major version exports another symbol: say which.
    for (int v = 2; v <= 9; ++v)
      if (::dlsym(lib.handle, ("maskcheck_plugin_v" + std::to_string(v)).c_str()))
        throw LoadError(where(given) + ": plugin ABI major version mismatch: it exports " +
                        "maskcheck_plugin_v" + std::to_string(v) + " (ABI " + std::to_string(v) +
                        ".x); this maskcheck speaks ABI " +
                        std::to_string(MASKCHECK_PLUGIN_ABI_VERSION_MAJOR) + "." +
                        std::to_string(MASKCHECK_PLUGIN_ABI_VERSION_MINOR));
    throw LoadError(where(given) + ": no symbol " MASKCHECK_PLUGIN_ENTRY_NAME
                                   ": not a maskcheck plugin (export `const maskcheck_plugin* "
                                   "maskcheck_plugin_v1(void)` with C linkage and default "
                                   "visibility; see maskcheck/plugin.h)");
  }
  maskcheck_plugin_entry_fn entry = nullptr;
  static_assert(sizeof(entry) == sizeof(sym));
  std::memcpy(&entry, &sym, sizeof(entry));  // object pointer -> function pointer (POSIX)
  const maskcheck_plugin* table = entry();
  if (!table) throw LoadError(where(given) + ": " MASKCHECK_PLUGIN_ENTRY_NAME "() returned NULL");
  return table;
}

// A plugin's own text, at most 4096 bytes of it.
std::string bounded(const char* text) {
  const std::size_t n = ::strnlen(text, 4096);
  return std::string(text, n) + (n == 4096 ? "..." : "");
}

bool valid_name(const char* name) {
  if (!name) return false;
  const std::string_view s(name);
  if (s.empty() || s.size() > 64) return false;
  for (char ch : s)
    if (!(std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '.' || ch == '+' ||
          ch == '-'))
      return false;
  return true;
}

std::string hex(std::uint32_t x) {
  std::ostringstream os;
  os << "0x" << std::hex << x;
  return os.str();
}

// The plugin's table as far as its ABI minor version defines it, the rest zero: a 1.0 plugin's
// table ends before ABI 1.1's fields (a 1.1 plugin's before ABI 1.2's, and so on), and reading past
// it would read whatever follows it.
maskcheck_plugin copy_table(const maskcheck_plugin& t) {
  maskcheck_plugin c{};
  const std::size_t n = t.abi_minor >= 5   ? sizeof(maskcheck_plugin)
                        : t.abi_minor >= 3 ? offsetof(maskcheck_plugin, attention_features)
                        : t.abi_minor == 2 ? offsetof(maskcheck_plugin, score_modifiers)
                        : t.abi_minor == 1 ? offsetof(maskcheck_plugin, attention_backward_dtypes)
                                           : offsetof(maskcheck_plugin, storage);
  std::memcpy(static_cast<void*>(&c), &t, n);
  return c;
}

constexpr int dtype_index(DType t) {
  switch (t) {
    case DType::f64:
      return MASKCHECK_DTYPE_INDEX_F64;
    case DType::f32:
      return MASKCHECK_DTYPE_INDEX_F32;
    case DType::f16:
      return MASKCHECK_DTYPE_INDEX_F16;
    case DType::bf16:
      return MASKCHECK_DTYPE_INDEX_BF16;
  }
  return 0;
}
static_assert(MASKCHECK_DTYPE_F16 == 1u << MASKCHECK_DTYPE_INDEX_F16 &&
              MASKCHECK_DTYPE_BF16 == 1u << MASKCHECK_DTYPE_INDEX_BF16);

// maskcheck_storage[t] as a Storage: 0 is t, the mask f32 unless f16 is asked for.
Storage read_storage(const maskcheck_storage& m, DType t, const std::string& w) {
  const std::string field = "storage[MASKCHECK_DTYPE_INDEX_" + upper(to_string(t)) + "]";
  auto one = [&](std::uint32_t bits, const char* name) {
    for (DType d : {DType::f64, DType::f32, DType::f16, DType::bf16})
      if (bits == dtype_bit(d)) return d;
    if (bits == 0) return t;
    throw LoadError(w + ": " + field + "." + name + " = " + hex(bits) +
                    " is not one MASKCHECK_DTYPE_* bit (or 0 for the case's dtype)");
  };
  Storage s = Storage::of(t);
  s.q = one(m.q, "q");
  s.k = one(m.k, "k");
  s.v = one(m.v, "v");
  s.out = one(m.out, "out");
  s.x = one(m.x, "x");
  s.y = one(m.y, "y");
  s.logits = one(m.logits, "logits");
  s.dlogits = one(m.dlogits, "dlogits");
  if (m.mask != 0 && m.mask != MASKCHECK_DTYPE_F32 && m.mask != MASKCHECK_DTYPE_F16)
    throw LoadError(w + ": " + field + ".mask = " + hex(m.mask) +
                    " (the additive mask is MASKCHECK_DTYPE_F32, or 0, or MASKCHECK_DTYPE_F16)");
  s.mask = m.mask == MASKCHECK_DTYPE_F16 ? DType::f16 : DType::f32;
  if (m.reserved[0] || m.reserved[1] || m.reserved[2])
    throw LoadError(w + ": " + field + ".reserved must be 0");
  return s;
}

// The dtypes of MASKCHECK_DTYPE_* bits.
std::vector<DType> dtype_list(std::uint32_t bits) {
  std::vector<DType> dts;
  for (DType dt : {DType::f64, DType::f32, DType::f16, DType::bf16})
    if (bits & dtype_bit(dt)) dts.push_back(dt);
  return dts;
}

// Checks the table against this maskcheck and reads it into a PluginInfo.
PluginInfo read_table(const maskcheck_plugin& t, const std::string& given, const Library& lib) {
  const std::string w = where(given);
  const std::string ours = std::to_string(MASKCHECK_PLUGIN_ABI_VERSION_MAJOR) + "." +
                           std::to_string(MASKCHECK_PLUGIN_ABI_VERSION_MINOR);
  const std::string theirs = std::to_string(t.abi_major) + "." + std::to_string(t.abi_minor);
  if (t.abi_major != MASKCHECK_PLUGIN_ABI_VERSION_MAJOR)
    throw LoadError(w + ": plugin ABI version mismatch: the plugin reports ABI " + theirs +
                    ", this maskcheck speaks ABI " + ours +
                    " (rebuild the plugin against this maskcheck's maskcheck/plugin.h)");
  if (t.abi_minor > MASKCHECK_PLUGIN_ABI_VERSION_MINOR)
    throw LoadError(w + ": plugin ABI version mismatch: the plugin was built for ABI " + theirs +
                    ", newer than this maskcheck's " + ours + " (use a newer maskcheck)");
  if (t.abi_minor >= 1 && t.unavailable)
    throw LoadError(w + ": the plugin" + (valid_name(t.name) ? " " + std::string(t.name) : "") +
                    " declines to load: " + bounded(t.unavailable));
  if (!valid_name(t.name))
    throw LoadError(w + ": invalid plugin name " +
                    (t.name ? "\"" + std::string(t.name) + "\"" : std::string("(NULL)")) +
                    " (1 to 64 of A-Z a-z 0-9 _ . + -)");
  PluginInfo info;
  info.path = lib.path;
  info.name = t.name;
  info.version = t.version ? t.version : "";
  info.description = t.description ? t.description : "";
  info.abi_major = t.abi_major;
  info.abi_minor = t.abi_minor;
  info.device_type = t.device_type;
  info.device_id = t.device_id;
  const std::uint32_t known = t.abi_minor >= 1 ? kKnownFlags11 : kKnownFlags10;
  if (t.flags & ~known)
    throw LoadError(w + ": unknown flags " + hex(t.flags & ~known) + " for ABI " + theirs);
  info.keep_tensor = (t.flags & MASKCHECK_FLAG_KEEP_TENSOR) != 0;
  info.lse = (t.flags & MASKCHECK_FLAG_NO_LSE) == 0;
  info.additive_mask = (t.flags & MASKCHECK_FLAG_ADDITIVE_MASK) != 0;

  bool cuda_ok = false;
#ifdef MASKCHECK_PLUGIN_CUDA
  cuda_ok = true;
#endif
  if (t.device_type == kDLCUDA && !cuda_ok)
    throw LoadError(w + ": unsupported device " + info.device() +
                    ": this maskcheck was built without CUDA and passes only CPU tensors "
                    "(build it with MASKCHECK_ENABLE_CUDA=ON)");
  if (t.device_type != kDLCPU && t.device_type != kDLCUDA)
    throw LoadError(w + ": unsupported device type " + std::to_string(t.device_type) +
                    " (DLDeviceType): maskcheck passes kDLCPU" +
                    (cuda_ok ? std::string(" or kDLCUDA") : std::string()) + " tensors");

  struct OpDecl {
    Op op;
    const char* field;
    std::uint32_t dtypes;
    bool has_fn;
    const char* fn;
  };
  const OpDecl decls[] = {
      {Op::softmax, "softmax_dtypes", t.softmax_dtypes, t.softmax_forward != nullptr,
       "softmax_forward"},
      {Op::attention, "attention_dtypes", t.attention_dtypes, t.attention_forward != nullptr,
       "attention_forward"},
      {Op::cross_entropy, "cross_entropy_dtypes", t.cross_entropy_dtypes,
       t.cross_entropy != nullptr, "cross_entropy"},
  };
  for (const auto& d : decls) {
    if (d.dtypes & ~kKnownDtypes)
      throw LoadError(w + ": " + d.field + " has unknown dtype bits " +
                      hex(d.dtypes & ~kKnownDtypes));
    if (d.dtypes == 0) continue;
    if (!d.has_fn) throw LoadError(w + ": " + d.field + " is set but " + d.fn + " is NULL");
    info.ops.emplace_back(d.op, dtype_list(d.dtypes));
  }
  if (info.ops.empty())
    throw LoadError(w +
                    ": provides no operation (set attention_dtypes, softmax_dtypes or "
                    "cross_entropy_dtypes and the matching function)");
  if (t.attention_varlen_forward) {
    if (!t.attention_forward)
      throw LoadError(w + ": attention_varlen_forward is set but attention_forward is NULL");
    info.varlen = true;
  }
  // ABI 1.2's backward (zero in older tables, copy_table): attention's cases, some of its dtypes.
  if (const std::uint32_t bwd = t.attention_backward_dtypes; bwd != 0) {
    if (bwd & ~kKnownDtypes)
      throw LoadError(w + ": attention_backward_dtypes has unknown dtype bits " +
                      hex(bwd & ~kKnownDtypes));
    if (!t.attention_backward)
      throw LoadError(w + ": attention_backward_dtypes is set but attention_backward is NULL");
    if (bwd & ~t.attention_dtypes)
      throw LoadError(w + ": attention_backward_dtypes has " + hex(bwd & ~t.attention_dtypes) +
                      " beyond attention_dtypes " + hex(t.attention_dtypes) +
                      " (the backward runs on attention's cases, and needs attention_forward)");
    info.backward = dtype_list(bwd);
  }
  // ABI 1.2's upstream gradient of cross-entropy: some of cross_entropy's dtypes.
  if (const std::uint32_t up = t.cross_entropy_upstream_dtypes; up != 0) {
    if (up & ~kKnownDtypes)
      throw LoadError(w + ": cross_entropy_upstream_dtypes has unknown dtype bits " +
                      hex(up & ~kKnownDtypes));
    if (up & ~t.cross_entropy_dtypes)
      throw LoadError(w + ": cross_entropy_upstream_dtypes has " +
                      hex(up & ~t.cross_entropy_dtypes) + " beyond cross_entropy_dtypes " +
                      hex(t.cross_entropy_dtypes) + " (grad_output is an input of cross_entropy)");
    info.ce_upstream = dtype_list(up);
  }
  // ABI 1.3's score modifiers of attention_forward.
  if (const std::uint32_t mods = t.score_modifiers; mods != 0) {
    constexpr std::uint32_t kKnownMods =
        MASKCHECK_MOD_SOFTCAP | MASKCHECK_MOD_ALIBI | MASKCHECK_MOD_SINK_LOGITS;
    if (mods & ~kKnownMods)
      throw LoadError(w + ": score_modifiers has unknown bits " + hex(mods & ~kKnownMods));
    if (t.attention_dtypes == 0)
      throw LoadError(w + ": score_modifiers is set but the plugin has no attention_forward");
    info.modifiers.softcap = (mods & MASKCHECK_MOD_SOFTCAP) != 0;
    info.modifiers.alibi = (mods & MASKCHECK_MOD_ALIBI) != 0;
    info.modifiers.sink_logits = (mods & MASKCHECK_MOD_SINK_LOGITS) != 0;
  }
  // ABI 1.5's attention_forward variants.
  if (const std::uint32_t f = t.attention_features; f != 0) {
    constexpr std::uint32_t kKnown = MASKCHECK_ATTN_PAGED_KV | MASKCHECK_ATTN_KEY_CHUNK;
    if (f & ~kKnown)
      throw LoadError(w + ": attention_features has unknown bits " + hex(f & ~kKnown));
    if (t.attention_dtypes == 0)
      throw LoadError(w + ": attention_features is set but the plugin has no attention_forward");
    info.paged = (f & MASKCHECK_ATTN_PAGED_KV) != 0;
    info.key_chunk = (f & MASKCHECK_ATTN_KEY_CHUNK) != 0;
  }
  // Mixed storage: every dtype an operation lists, checked against that operation's tensors.
  for (DType dt : {DType::f64, DType::f32, DType::f16, DType::bf16}) {
    const Storage st = read_storage(t.storage[dtype_index(dt)], dt, w);
    bool listed = false;
    for (const auto& [op, dts] : info.ops) {
      if (std::find(dts.begin(), dts.end(), dt) == dts.end()) continue;
      listed = true;
      try {
        check_storage(st, op, dt, "storage[MASKCHECK_DTYPE_INDEX_" + upper(to_string(dt)) + "]");
      } catch (const InvalidArgument& e) {
        throw LoadError(w + ": " + e.what());
      }
    }
    Storage plain = Storage::of(dt);
    plain.mask = DType::f32;
    if (listed && !(st == plain)) info.storage.emplace_back(dt, st);
  }
  return info;
}

// ---- calls ----------------------------------------------------------------------------------

// The mask descriptor of a call, with the arrays it points into.
class MaskArgs {
 public:
  // additive: the dtype of the additive mask tensor, when the plugin takes one.
  MaskArgs(const MaskSpec& spec, bool keep_tensor, std::optional<DType> additive,
           const Device& device, bool query)
      : flat_(spec) {
    const MaskView v = flat_.view();
    m_.batch = v.B;
    m_.q_len = v.Lq;
    m_.k_len = v.Lk;
    m_.q_lens = v.q_lens;
    m_.k_lens = v.k_lens;
    m_.padding = v.padding == PaddingSide::left ? MASKCHECK_PADDING_LEFT : MASKCHECK_PADDING_RIGHT;
    m_.causal = v.causal ? 1 : 0;
    m_.alignment = v.alignment == Alignment::top_left ? MASKCHECK_ALIGN_TOP_LEFT
                                                      : MASKCHECK_ALIGN_BOTTOM_RIGHT;
    m_.window_left = v.window_left;
    m_.window_right = v.window_right;
    m_.doc_ptr = v.doc_ptr;
    m_.cu_seqlens_q = v.doc_ptr ? v.cu_q : nullptr;
    m_.cu_seqlens_k = v.doc_ptr ? v.cu_k : nullptr;
    m_.prefix_lens = v.prefix_lens;  // ABI 1.2 (older plugins never read past `additive`)
    m_.chunk = v.chunk;
    m_.sink_tokens = v.sink_tokens;  // ABI 1.4
    if (keep_tensor) {
      keep_.emplace("mask.keep", kUInt8, std::vector<std::int64_t>{spec.B, spec.Lq, spec.Lk});
      if (query) {
        keep_->describe_on(device);
      } else {
        const auto keep = ref::build_keep_mask(spec);
        keep_->place(device, keep.data(), true);
      }
      m_.keep = keep_->dl();
    }
    if (additive) {
      additive_.emplace("mask.additive", dl_dtype(*additive),
                        std::vector<std::int64_t>{spec.B, spec.Lq, spec.Lk});
      if (query) {
        additive_->describe_on(device);
      } else {
        const auto values =
            ref::encode_mask(ref::build_keep_mask(spec), MaskEncoding::additive_inf, *additive);
        additive_->place(device, storage_bytes(values, *additive).data(), true);
      }
      m_.additive = additive_->dl();
    }
  }
  const maskcheck_mask* get() const { return &m_; }
  void collect(const std::string& function) {
    if (keep_) keep_->collect(function);
    if (additive_) additive_->collect(function);
  }

 private:
  FlatMask flat_;
  maskcheck_mask m_{};
  std::optional<Tensor> keep_, additive_;
};

// The inputs every call in the padded attention layout shares: q [B, H, Lq, D], k and v
// [B, Hkv, Lk, D], each in its storage dtype, and the mask descriptor.
class PaddedAttentionInputs {
 public:
  // `cache`: k and v are a paged cache of this shape (ABI 1.5) instead of [B, Hkv, Lk, D].
  PaddedAttentionInputs(const AttentionProblem& p, const Storage& st, bool keep_tensor,
                        std::optional<DType> additive, const Device& device, bool query,
                        std::optional<std::vector<std::int64_t>> cache = std::nullopt)
      : q_shape{p.mask.B, p.H, p.mask.Lq, p.D},
        kv_shape(cache ? *cache : std::vector<std::int64_t>{p.mask.B, p.Hkv, p.mask.Lk, p.D}),
        q("q", dl_dtype(st.q), q_shape),
        k("k", dl_dtype(st.k), kv_shape),
        v("v", dl_dtype(st.v), kv_shape),
        mask(p.mask, keep_tensor, additive, device, query) {
    if (query) {
      for (Tensor* t : {&q, &k, &v}) t->describe_on(device);
    }
  }
  // A real call: the values, in their storage.
  void place(const Device& device, const Storage& st, std::span<const double> qv,
             std::span<const double> kv, std::span<const double> vv) {
    q.place(device, storage_bytes(qv, st.q).data(), true);
    k.place(device, storage_bytes(kv, st.k).data(), true);
    v.place(device, storage_bytes(vv, st.v).data(), true);
  }
  // After a real call: guards, and inputs unchanged.
  void collect(const std::string& function) {
    for (Tensor* t : {&q, &k, &v}) t->collect(function);
    mask.collect(function);
  }

  const std::vector<std::int64_t> q_shape, kv_shape;
  Tensor q, k, v;
  MaskArgs mask;
};

// A DLTensor over memory someone else owns (prepared calls).
class View {
 public:
  View(const void* data, DLDataType dtype, std::vector<std::int64_t> shape)
      : shape_(std::move(shape)), strides_(shape_.size()) {
    std::int64_t stride = 1;
    for (std::size_t i = shape_.size(); i-- > 0;) {
      strides_[i] = stride;
      stride *= shape_[i];
    }
    t_.data = const_cast<void*>(data);
    t_.device = {kDLCPU, 0};
    t_.ndim = static_cast<int>(shape_.size());
    t_.dtype = dtype;
    t_.shape = shape_.data();
    t_.strides = strides_.data();
  }
  View(const View&) = delete;
  View& operator=(const View&) = delete;
  const DLTensor* dl() const { return &t_; }

 private:
  std::vector<std::int64_t> shape_, strides_;
  DLTensor t_{};
};

// What every prepared call in the padded attention layout (forward, backward) hands the plugin:
// q [B, H, Lq, D], k and v [B, Hkv, Lk, D] over the caller's memory, each in its storage dtype,
// and the mask descriptor (with the keep or additive tensor the plugin asked for) built once.
struct PreparedAttentionInputs {
  PreparedAttentionInputs(const AttentionProblem& p, const Storage& st, const void* qp,
                          const void* kp, const void* vp, bool keep_tensor,
                          std::optional<DType> additive, const Device& device)
      : q_shape{p.mask.B, p.H, p.mask.Lq, p.D},
        kv_shape{p.mask.B, p.Hkv, p.mask.Lk, p.D},
        q(qp, dl_dtype(st.q), q_shape),
        k(kp, dl_dtype(st.k), kv_shape),
        v(vp, dl_dtype(st.v), kv_shape),
        mask(p.mask, keep_tensor, additive, device, false),
        scale(p.effective_scale()) {}
  // Points a call's arguments (maskcheck_attention_args, ..._backward_args) at them.
  template <class Args>
  void point(Args& a) const {
    a.q = q.dl();
    a.k = k.dl();
    a.v = v.dl();
    a.mask = mask.get();
    a.scale = scale;
  }

  const std::vector<std::int64_t> q_shape, kv_shape;
  View q, k, v;
  MaskArgs mask;
  double scale;
};

// A prepared call: the arguments live here, run() is one call of `fn`.
template <class Args, class Fn>
class RawCall final : public PreparedCall {
 public:
  RawCall(std::string what, Fn fn) : what_(std::move(what)), fn_(std::move(fn)) {}
  void run() override {
    std::array<char, 4096> msg{};
    const maskcheck_status s = fn_(msg.data(), msg.size());
    msg.back() = '\0';
    if (s != MASKCHECK_OK)
      throw std::runtime_error(what_ + " returned " + status_name(s) +
                               (msg[0] ? ": " + std::string(msg.data()) : std::string()));
  }

 private:
  std::string what_;
  Fn fn_;
};
template <class Fn>
std::unique_ptr<PreparedCall> raw_call(std::string what, Fn fn) {
  return std::make_unique<RawCall<int, Fn>>(std::move(what), std::move(fn));
}

class PluginImplementation final : public detail::PluginBase {
 public:
  PluginImplementation(Library lib, const maskcheck_plugin& table, PluginInfo info,
                       CallObserver* observer)
      : PluginBase(std::move(info)),
        lib_(std::move(lib)),
        t_(table),
        device_(info_),
        observer_(observer) {}

  // ---- softmax: x, y [B, H, Lq, Lk]
  Support supports_softmax(const SoftmaxProblem& p, DType t) const override {
    if (auto s = precheck(Op::softmax, t); !s) return s;
    return softmax_call(p, t, {}, nullptr);
  }
  std::vector<double> softmax(const SoftmaxProblem& p, DType t,
                              std::span<const double> x) const override {
    p.validate();
    require_size("x", x.size(), p.numel());
    std::vector<double> y;
    softmax_call(p, t, x, &y);
    return y;
  }

  // ---- attention: q [B, H, Lq, D], k, v [B, Hkv, Lk, D]
  Support attention_support(const AttentionProblem& p, DType t, bool want_lse) const override {
    if (auto s = precheck(Op::attention, t); !s) return s;
    return attention_call(p, t, {}, {}, {}, want_lse, nullptr);
  }
  AttentionResult attention(const AttentionProblem& p, DType t, std::span<const double> q,
                            std::span<const double> k, std::span<const double> v,
                            bool want_lse) const override {
    validate_attention_inputs(p, q.size(), k.size(), v.size());
    AttentionResult r;
    attention_call(p, t, q, k, v, want_lse, &r);
    return r;
  }

  // ---- attention over a paged KV cache and split-KV chunks (ABI 1.5's attention_features):
  // attention_forward with the block table, or with the chunk's keys. The score modifiers are
  // checked here as supports_attention does (a chunk takes no sink logit: it is a chunk of its
  // own).
  Support supports_attention_paged(const AttentionProblem& p, const PagedKv& kv, DType t,
                                   bool want_lse) const override {
    if (const std::string why = info_.no_attention_feature(true); !why.empty())
      return Support::no(why);
    if (auto s = info_.modifiers.admits(p.mods, name()); !s) return s;
    if (auto s = precheck(Op::attention, t); !s) return s;
    kv.validate(p);
    return attention_call(p, t, {}, {}, {}, want_lse, nullptr, &kv);
  }
  AttentionResult attention_paged(const AttentionProblem& p, const PagedKv& kv, DType t,
                                  std::span<const double> q, std::span<const double> k_cache,
                                  std::span<const double> v_cache, bool want_lse) const override {
    validate_paged_inputs(p, kv, q.size(), k_cache.size(), v_cache.size());
    AttentionResult r;
    attention_call(p, t, q, k_cache, v_cache, want_lse, &r, &kv);
    return r;
  }
  Support supports_attention_chunk(const AttentionProblem& p, DType t) const override {
    if (const std::string why = info_.no_attention_feature(false); !why.empty())
      return Support::no(why);
    AttentionProblem chunk = p;
    chunk.mods.sink_logits.clear();
    if (auto s = info_.modifiers.admits(chunk.mods, name()); !s) return s;
    if (auto s = precheck(Op::attention, t); !s) return s;
    const KeyRange keys{0, p.mask.Lk};
    return attention_call(chunk, t, {}, {}, {}, true, nullptr, nullptr, &keys);
  }
  AttentionResult attention_chunk(const AttentionProblem& p, DType t, std::span<const double> q,
                                  std::span<const double> k, std::span<const double> v,
                                  std::int64_t key_begin, std::int64_t key_end) const override {
    validate_attention_inputs(p, q.size(), k.size(), v.size());
    require(key_begin >= 0 && key_begin <= key_end && key_end <= p.mask.Lk, "key_begin", key_begin,
            "must satisfy 0 <= key_begin <= key_end <= Lk");
    AttentionProblem chunk = p;
    chunk.mods.sink_logits.clear();
    const KeyRange keys{key_begin, key_end};
    AttentionResult r;
    attention_call(chunk, t, q, k, v, true, &r, nullptr, &keys);
    return r;
  }

  // ---- attention backward (ABI 1.2): q, dout, dq [B, H, Lq, D], k, v, dk, dv [B, Hkv, Lk, D]
  Support attention_backward_support(const AttentionProblem& p, DType t) const override {
    if (const std::string why = info_.no_backward(); !why.empty()) return Support::no(why);
    if (std::find(info_.backward.begin(), info_.backward.end(), t) == info_.backward.end())
      return Support::no(name() + " does not take " + std::string(to_string(t)) +
                         " for attention_backward");
    if (auto s = precheck(Op::attention, t); !s) return s;
    return backward_call(p, t, {}, {}, {}, {}, nullptr);
  }
  AttentionGradients attention_backward(const AttentionProblem& p, DType t,
                                        std::span<const double> q, std::span<const double> k,
                                        std::span<const double> v,
                                        std::span<const double> dout) const override {
    validate_attention_inputs(p, q.size(), k.size(), v.size(), dout.size());
    if (const std::string why = info_.no_backward(); !why.empty()) throw Unsupported(why);
    AttentionGradients g;
    backward_call(p, t, q, k, v, dout, &g);
    return g;
  }

  // ---- attention, packed (varlen): q [Tq, H, D], k, v [Tk, Hkv, D], lse [H, Tq]
  Support supports_attention_varlen(const VarlenAttentionProblem& p, DType t,
                                    bool want_lse) const override {
    if (auto s = precheck(Op::attention, t); !s) return s;
    if (!info_.varlen)
      return Support::no(name() + " has no attention_varlen_forward (ABI 1.1: the packed layout)");
    return varlen_call(p, t, {}, {}, {}, want_lse, nullptr);
  }
  AttentionResult attention_varlen(const VarlenAttentionProblem& p, DType t,
                                   std::span<const double> q, std::span<const double> k,
                                   std::span<const double> v, bool want_lse) const override {
    p.validate();
    (void)p.padded();  // heads and head dim
    require_size("q", q.size(), checked_numel("q", {p.total_q(), p.H, p.D}));
    require_size("k", k.size(), checked_numel("k", {p.total_k(), p.Hkv, p.D}));
    require_size("v", v.size(), checked_numel("v", {p.total_k(), p.Hkv, p.D}));
    if (!info_.varlen) throw Unsupported(name() + " has no attention_varlen_forward");
    AttentionResult r;
    varlen_call(p, t, q, k, v, want_lse, &r);
    return r;
  }

  // ---- prepared calls on the caller's memory (plugin_host.hpp)
  std::unique_ptr<PreparedCall> prepare_softmax(const SoftmaxProblem& p, DType t, const void* x,
                                                void* y) const {
    require_here(supports_softmax(p, t));
    const Storage st = info_.storage_for(t);
    const std::vector<std::int64_t> shape{p.mask.B, p.H, p.mask.Lq, p.mask.Lk};
    struct State {
      View x, y;
      MaskArgs mask;
      maskcheck_softmax_args a{};
    };
    std::shared_ptr<State> s(new State{{x, dl_dtype(st.x), shape},
                                       {y, dl_dtype(st.y), shape},
                                       {p.mask, info_.keep_tensor, additive(st), device_, false},
                                       {}});
    s->a.x = s->x.dl();
    s->a.y = s->y.dl();
    s->a.mask = s->mask.get();
    s->a.scale = p.scale;
    const auto fn = t_.softmax_forward;
    return raw_call(name() + " softmax_forward",
                    [s, fn](char* msg, std::size_t n) { return fn(&s->a, msg, n); });
  }
  std::unique_ptr<PreparedCall> prepare_attention(const AttentionProblem& p, DType t, const void* q,
                                                  const void* k, const void* v, void* out) const {
    require_here(supports_attention(p, t, false));
    const Storage st = info_.storage_for(t);
    struct State {
      PreparedAttentionInputs in;
      View out;
      maskcheck_attention_args a{};
    };
    std::shared_ptr<State> s(new State{{p, st, q, k, v, info_.keep_tensor, additive(st), device_},
                                       {out, dl_dtype(st.out), {p.mask.B, p.H, p.mask.Lq, p.D}},
                                       {}});
    s->in.point(s->a);
    s->a.out = s->out.dl();
    const auto fn = t_.attention_forward;
    return raw_call(name() + " attention_forward",
                    [s, fn](char* msg, std::size_t n) { return fn(&s->a, msg, n); });
  }
  std::unique_ptr<PreparedCall> prepare_attention_backward(const AttentionProblem& p, DType t,
                                                           const void* q, const void* k,
                                                           const void* v, const void* dout,
                                                           void* dq, void* dk, void* dv) const {
    require_here(supports_attention_backward(p, t));
    // dout in out's storage, each gradient in its operand's
    const Storage st = info_.storage_for(t);
    const std::vector<std::int64_t> qs{p.mask.B, p.H, p.mask.Lq, p.D},
        kvs{p.mask.B, p.Hkv, p.mask.Lk, p.D};
    struct State {
      PreparedAttentionInputs in;
      View dout, dq, dk, dv;
      maskcheck_attention_backward_args a{};
    };
    std::shared_ptr<State> s(new State{{p, st, q, k, v, info_.keep_tensor, additive(st), device_},
                                       {dout, dl_dtype(st.out), qs},
                                       {dq, dl_dtype(st.q), qs},
                                       {dk, dl_dtype(st.k), kvs},
                                       {dv, dl_dtype(st.v), kvs},
                                       {}});
    s->in.point(s->a);
    s->a.dout = s->dout.dl();
    s->a.dq = s->dq.dl();
    s->a.dk = s->dk.dl();
    s->a.dv = s->dv.dl();
    const auto fn = t_.attention_backward;
    return raw_call(name() + " attention_backward",
                    [s, fn](char* msg, std::size_t n) { return fn(&s->a, msg, n); });
  }
  std::unique_ptr<PreparedCall> prepare_cross_entropy(const LossProblem& p, DType t,
                                                      const void* logits,
                                                      const std::int64_t* labels, void* losses,
                                                      void* dlogits, double* loss) const {
    require_here(supports_cross_entropy(p, t));
    const Storage st = info_.storage_for(t);
    struct State {
      View logits, labels, losses, dlogits;
      maskcheck_cross_entropy_args a{};
      maskcheck_loss_totals totals{};
    };
    std::shared_ptr<State> s(new State{{logits, dl_dtype(st.logits), {p.N, p.V}},
                                       {labels, kInt64, {p.N}},
                                       {losses, dl_dtype(aux_dtype(t)), {p.N}},
                                       {dlogits, dl_dtype(st.dlogits), {p.N, p.V}},
                                       {},
                                       {}});
    s->a.logits = s->logits.dl();
    s->a.labels = s->labels.dl();
    s->a.losses = s->losses.dl();
    s->a.dlogits = s->dlogits.dl();
    s->a.ignore_index = p.ignore_index;
    s->a.label_smoothing = p.label_smoothing;
    s->a.reduction = p.reduction == Reduction::none  ? MASKCHECK_REDUCTION_NONE
                     : p.reduction == Reduction::sum ? MASKCHECK_REDUCTION_SUM
                                                     : MASKCHECK_REDUCTION_MEAN;
    const auto fn = t_.cross_entropy;
    return raw_call(name() + " cross_entropy", [s, fn, loss](char* msg, std::size_t n) {
      const maskcheck_status status = fn(&s->a, &s->totals, msg, n);
      *loss = s->totals.loss;
      return status;
    });
  }

  // ---- cross-entropy: logits [N, V], labels [N], weights [N]
  Support supports_cross_entropy(const LossProblem& p, DType t) const override {
    if (auto s = precheck(Op::cross_entropy, t); !s) return s;
    return loss_call(p, t, {}, {}, {}, true, false, {}, nullptr);
  }
  LossResult cross_entropy(const LossProblem& p, DType t, std::span<const double> logits,
                           std::span<const std::int64_t> labels, std::span<const double> weights,
                           bool backward) const override {
    // Shapes only: label values are the plugin's to check (rejectsOutOfRangeLabels).
    p.validate();
    require_size("logits", logits.size(), checked_numel("logits", {p.N, p.V}));
    require_size("labels", labels.size(), p.N);
    require_size("weights", weights.size(), p.weighted ? p.N : 0);
    LossResult r;
    loss_call(p, t, logits, labels, weights, backward, false, {}, &r);
    return r;
  }
  // ABI 1.2: the same with grad_output, [N] for reduction none and [1] otherwise.
  Support supports_cross_entropy_upstream(const LossProblem& p, DType t) const override {
    if (auto s = precheck(Op::cross_entropy, t); !s) return s;
    if (const std::string why = info_.no_ce_upstream(t); !why.empty()) return Support::no(why);
    return loss_call(p, t, {}, {}, {}, true, true, {}, nullptr);
  }
  LossResult cross_entropy_upstream(const LossProblem& p, DType t, std::span<const double> logits,
                                    std::span<const std::int64_t> labels,
                                    std::span<const double> weights,
                                    std::span<const double> grad_output) const override {
    p.validate();
    require_size("logits", logits.size(), checked_numel("logits", {p.N, p.V}));
    require_size("labels", labels.size(), p.N);
    require_size("weights", weights.size(), p.weighted ? p.N : 0);
    require_size("grad_output", grad_output.size(), p.reduction == Reduction::none ? p.N : 1);
    if (const std::string why = info_.no_ce_upstream(t); !why.empty()) throw Unsupported(why);
    LossResult r;
    loss_call(p, t, logits, labels, weights, true, true, grad_output, &r);
    return r;
  }

 private:
  Support precheck(Op op, DType t) const {
    const auto dts = dtypes(op);
    if (std::find(dts.begin(), dts.end(), t) == dts.end())
      return Support::no(name() + " does not take " + std::string(to_string(t)) + " for " +
                         std::string(to_string(op)));
    if (!device_.unavailable().empty()) return Support::no(device_.unavailable());
    return Support::yes();
  }

  // The mask clauses ABI 1.2 added (prefix-LM, chunks) and ABI 1.4 added (attention sinks) reach
  // an older plugin only through a mask tensor: without one it is not asked (a query says why; a
  // real call throws Unsupported).
  Support mask_support(const MaskSpec& m, bool query) const {
    if (info_.keep_tensor || info_.additive_mask) return Support::yes();
    std::string what;
    int since = 0;
    if (m.has_prefix_or_chunk() && info_.abi_minor < 2) {
      what = "prefix-LM or chunked masks";
      since = 2;
    } else if (m.has_sink_tokens() && info_.abi_minor < 4) {
      what = "masks with attention sinks";
      since = 4;
    } else {
      return Support::yes();
    }
    const std::string why = name() + " (plugin ABI " + std::to_string(info_.abi_major) + "." +
                            std::to_string(info_.abi_minor) + ") is not given " + what +
                            ": its mask descriptor has them from ABI 1." + std::to_string(since) +
                            " on, and it takes no mask tensor";
    if (query) return Support::no(why);
    throw Unsupported(why);
  }

  // A real call when `out` is set, else a query.
  Support softmax_call(const SoftmaxProblem& p, DType t, std::span<const double> x,
                       std::vector<double>* out) const {
    const bool query = out == nullptr;
    const MaskSpec& m = p.mask;
    if (Support s = mask_support(m, query); !s) return s;
    const Storage st = info_.storage_for(t);
    const std::vector<std::int64_t> shape{m.B, p.H, m.Lq, m.Lk};
    Tensor xt("x", dl_dtype(st.x), shape), yt("y", dl_dtype(st.y), shape);
    MaskArgs mask(m, info_.keep_tensor, additive(st), device_, query);
    if (query) {
      shape_only(xt, yt);
    } else {
      xt.place(device_, storage_bytes(x, st.x).data(), true);
      poison(yt, st.y);
    }
    maskcheck_softmax_args a{};
    a.x = xt.dl();
    a.y = yt.dl();
    a.mask = mask.get();
    a.scale = p.scale;
    a.query = query ? 1 : 0;
    a.stream = device_.stream();
    std::ostringstream what;
    what << "softmax " << to_string(t) << " H=" << p.H << " " << describe(m)
         << " scale=" << p.scale;
    const Support s = call("softmax_forward", query, what.str(), [&](char* msg, std::size_t n) {
      return t_.softmax_forward(&a, msg, n);
    });
    if (query) return s;
    for (Tensor* tensor : {&xt, &yt}) tensor->collect("softmax_forward");
    mask.collect("softmax_forward");
    *out = storage_values(yt, st.y);
    return s;
  }

  // attention_forward; with `kv`, k and v are its caches (ABI 1.5); with `chunk`, only those
  // keys count (ABI 1.5).
  Support attention_call(const AttentionProblem& p, DType t, std::span<const double> q,
                         std::span<const double> k, std::span<const double> v, bool want_lse,
                         AttentionResult* out, const PagedKv* kv = nullptr,
                         const KeyRange* chunk = nullptr) const {
    const bool query = out == nullptr;
    if (Support s = mask_support(p.mask, query); !s) return s;
    const Storage st = info_.storage_for(t);
    std::optional<std::vector<std::int64_t>> cache;
    if (kv) cache = std::vector<std::int64_t>{kv->num_pages, kv->page_size, p.Hkv, p.D};
    PaddedAttentionInputs in(p, st, info_.keep_tensor, additive(st), device_, query, cache);
    Tensor ot("out", dl_dtype(st.out), in.q_shape),
        lt("lse", dl_dtype(aux_dtype(t)), {p.mask.B, p.H, p.mask.Lq}),
        bt("block_table", kInt32, {p.mask.B, kv ? kv->max_pages : 0});
    if (query) {
      shape_only(ot, lt);
      if (kv) shape_only(bt);
    } else {
      in.place(device_, st, q, k, v);
      if (kv) bt.place(device_, kv->block_table.data(), true);
      poison(ot, st.out);
      if (want_lse) poison(lt, aux_dtype(t));
    }
    maskcheck_attention_args a{};
    a.q = in.q.dl();
    a.k = in.k.dl();
    a.v = in.v.dl();
    a.out = ot.dl();
    a.lse = want_lse ? lt.dl() : nullptr;
    a.mask = in.mask.get();
    a.scale = p.effective_scale();
    a.query = query ? 1 : 0;
    a.stream = device_.stream();
    // Only modifiers the plugin declared reach it (supports_attention declines the others).
    a.softcap = p.mods.softcap;
    a.alibi_slopes = p.mods.alibi_slopes.empty() ? nullptr : p.mods.alibi_slopes.data();
    a.sink_logits = p.mods.sink_logits.empty() ? nullptr : p.mods.sink_logits.data();
    std::string what =
        "attention " + problem_text(p, t, a.scale) + " lse=" + (want_lse ? "1" : "0");
    if (kv) {  // only to plugins that declare it (supports_attention_paged)
      a.block_table = bt.dl();
      a.block_table_host = kv->block_table.data();
      a.page_size = kv->page_size;
      what += " paged(page_size=" + std::to_string(kv->page_size) +
              " num_pages=" + std::to_string(kv->num_pages) + ")";
    }
    if (chunk) {  // likewise (supports_attention_chunk)
      a.key_chunk = 1;
      a.key_begin = chunk->begin;
      a.key_end = chunk->end;
      what += " keys=[" + std::to_string(chunk->begin) + ", " + std::to_string(chunk->end) + ")";
    }
    const Support s = call("attention_forward", query, what, [&](char* msg, std::size_t n) {
      return t_.attention_forward(&a, msg, n);
    });
    if (query) return s;
    in.collect("attention_forward");
    for (Tensor* tensor : {&ot, &lt}) tensor->collect("attention_forward");
    if (kv) bt.collect("attention_forward");
    out->out = storage_values(ot, st.out);
    if (want_lse) out->lse = storage_values(lt, aux_dtype(t));
    return s;
  }

  // Attention backward (ABI 1.2): dout in out's storage, each gradient in its operand's.
  Support backward_call(const AttentionProblem& p, DType t, std::span<const double> q,
                        std::span<const double> k, std::span<const double> v,
                        std::span<const double> dout, AttentionGradients* out) const {
    const bool query = out == nullptr;
    if (Support s = mask_support(p.mask, query); !s) return s;
    const Storage st = info_.storage_for(t);
    PaddedAttentionInputs in(p, st, info_.keep_tensor, additive(st), device_, query);
    Tensor gt("dout", dl_dtype(st.out), in.q_shape), dq("dq", dl_dtype(st.q), in.q_shape),
        dk("dk", dl_dtype(st.k), in.kv_shape), dv("dv", dl_dtype(st.v), in.kv_shape);
    if (query) {
      shape_only(gt, dq, dk, dv);
    } else {
      in.place(device_, st, q, k, v);
      gt.place(device_, storage_bytes(dout, st.out).data(), true);
      poison(dq, st.q);
      poison(dk, st.k);
      poison(dv, st.v);
    }
    maskcheck_attention_backward_args a{};
    a.q = in.q.dl();
    a.k = in.k.dl();
    a.v = in.v.dl();
    a.dout = gt.dl();
    a.dq = dq.dl();
    a.dk = dk.dl();
    a.dv = dv.dl();
    a.mask = in.mask.get();
    a.scale = p.effective_scale();
    a.query = query ? 1 : 0;
    a.stream = device_.stream();
    const Support s =
        call("attention_backward", query, "attention_backward " + problem_text(p, t, a.scale),
             [&](char* msg, std::size_t n) { return t_.attention_backward(&a, msg, n); });
    if (query) return s;
    in.collect("attention_backward");
    for (Tensor* tensor : {&gt, &dq, &dk, &dv}) tensor->collect("attention_backward");
    out->dq = storage_values(dq, st.q);
    out->dk = storage_values(dk, st.k);
    out->dv = storage_values(dv, st.v);
    return s;
  }

  // "f32 H=2 Hkv=1 D=8 <mask> scale=0.35": a padded attention problem, for the call's message.
  static std::string problem_text(const AttentionProblem& p, DType t, double scale) {
    std::ostringstream os;
    os << to_string(t) << " H=" << p.H << " Hkv=" << p.Hkv << " D=" << p.D << " "
       << describe(p.mask) << " scale=" << scale;
    return os.str();
  }

  Support varlen_call(const VarlenAttentionProblem& p, DType t, std::span<const double> q,
                      std::span<const double> k, std::span<const double> v, bool want_lse,
                      AttentionResult* out) const {
    const bool query = out == nullptr;
    const Storage st = info_.storage_for(t);
    const std::int64_t B = p.batch(), Tq = p.total_q(), Tk = p.total_k();
    Tensor qt("q", dl_dtype(st.q), {Tq, p.H, p.D}), kt("k", dl_dtype(st.k), {Tk, p.Hkv, p.D}),
        vt("v", dl_dtype(st.v), {Tk, p.Hkv, p.D}), ot("out", dl_dtype(st.out), {Tq, p.H, p.D}),
        lt("lse", dl_dtype(aux_dtype(t)), {p.H, Tq}), cq("cu_seqlens_q", kInt32, {B + 1}),
        ck("cu_seqlens_k", kInt32, {B + 1});
    if (query) {
      shape_only(qt, kt, vt, ot, lt, cq, ck);
    } else {
      qt.place(device_, storage_bytes(q, st.q).data(), true);
      kt.place(device_, storage_bytes(k, st.k).data(), true);
      vt.place(device_, storage_bytes(v, st.v).data(), true);
      cq.place(device_, p.cu_seqlens_q.data(), true);
      ck.place(device_, p.cu_seqlens_k.data(), true);
      poison(ot, st.out);
      if (want_lse) poison(lt, aux_dtype(t));
    }
    std::int64_t max_q = 0, max_k = 0;
    for (std::int64_t b = 0; b < B; ++b) {
      max_q = std::max<std::int64_t>(max_q, p.cu_seqlens_q[b + 1] - p.cu_seqlens_q[b]);
      max_k = std::max<std::int64_t>(max_k, p.cu_seqlens_k[b + 1] - p.cu_seqlens_k[b]);
    }
    maskcheck_attention_varlen_args a{};
    a.q = qt.dl();
    a.k = kt.dl();
    a.v = vt.dl();
    a.out = ot.dl();
    a.lse = want_lse ? lt.dl() : nullptr;
    a.cu_seqlens_q = cq.dl();
    a.cu_seqlens_k = ck.dl();
    a.cu_seqlens_q_host = p.cu_seqlens_q.data();
    a.cu_seqlens_k_host = p.cu_seqlens_k.data();
    a.batch = B;
    a.max_seqlen_q = max_q;
    a.max_seqlen_k = max_k;
    a.causal = p.causal ? 1 : 0;
    a.alignment = p.alignment == Alignment::top_left ? MASKCHECK_ALIGN_TOP_LEFT
                                                     : MASKCHECK_ALIGN_BOTTOM_RIGHT;
    a.window_left = p.window ? p.window->left : MASKCHECK_UNBOUNDED;
    a.window_right = p.window ? p.window->right : MASKCHECK_UNBOUNDED;
    a.scale = p.scale ? *p.scale : 1.0 / std::sqrt(static_cast<double>(p.D));
    a.query = query ? 1 : 0;
    a.stream = device_.stream();
    std::ostringstream what;
    what << "attention_varlen " << to_string(t) << " H=" << p.H << " Hkv=" << p.Hkv << " D=" << p.D
         << " B=" << B << " Tq=" << Tq << " Tk=" << Tk << (p.causal ? " causal" : "")
         << " scale=" << a.scale << " lse=" << (want_lse ? 1 : 0);
    const Support s =
        call("attention_varlen_forward", query, what.str(),
             [&](char* msg, std::size_t n) { return t_.attention_varlen_forward(&a, msg, n); });
    if (query) return s;
    for (Tensor* tensor : {&qt, &kt, &vt, &ot, &lt, &cq, &ck})
      tensor->collect("attention_varlen_forward");
    out->out = storage_values(ot, st.out);
    if (want_lse) out->lse = storage_values(lt, aux_dtype(t));
    return s;
  }

  // Prepared calls take host memory: a CPU plugin, and a problem its query accepts.
  void require_here(const Support& s) const {
    if (!device_.host())
      throw std::invalid_argument(name() + " runs on " + info_.device() +
                                  ": prepared calls take host memory (CPU plugins)");
    if (!s) throw Unsupported(s.reason);
  }

  // The additive mask's dtype, when the plugin takes one.
  std::optional<DType> additive(const Storage& st) const {
    return info_.additive_mask ? std::optional<DType>(st.mask) : std::nullopt;
  }

  Support loss_call(const LossProblem& p, DType t, std::span<const double> logits,
                    std::span<const std::int64_t> labels, std::span<const double> weights,
                    bool backward, bool upstream, std::span<const double> grad_output,
                    LossResult* out) const {
    // upstream: the call passes grad_output (a backward of a plugin that declared it for t).
    const bool query = out == nullptr;
    const DType at = aux_dtype(t);
    const Storage st = info_.storage_for(t);
    Tensor xt("logits", dl_dtype(st.logits), {p.N, p.V}), yt("labels", kInt64, {p.N}),
        wt("weights", dl_dtype(at), {p.N}), lt("losses", dl_dtype(at), {p.N}),
        gt("dlogits", dl_dtype(st.dlogits), {p.N, p.V}),
        ut("grad_output", dl_dtype(at), {p.reduction == Reduction::none ? p.N : 1});
    if (query) {
      shape_only(xt, yt, wt, lt, gt, ut);
    } else {
      xt.place(device_, storage_bytes(logits, st.logits).data(), true);
      yt.place(device_, raw(labels), true);
      if (p.weighted) wt.place(device_, storage_bytes(weights, at).data(), true);
      if (upstream) ut.place(device_, storage_bytes(grad_output, at).data(), true);
      poison(lt, at);
      if (backward) poison(gt, st.dlogits);
    }
    maskcheck_cross_entropy_args a{};
    a.logits = xt.dl();
    a.labels = yt.dl();
    a.weights = p.weighted ? wt.dl() : nullptr;
    a.losses = lt.dl();
    a.dlogits = backward ? gt.dl() : nullptr;
    a.grad_output = upstream ? ut.dl() : nullptr;
    a.ignore_index = p.ignore_index;
    a.label_smoothing = p.label_smoothing;
    a.reduction = p.reduction == Reduction::none  ? MASKCHECK_REDUCTION_NONE
                  : p.reduction == Reduction::sum ? MASKCHECK_REDUCTION_SUM
                                                  : MASKCHECK_REDUCTION_MEAN;
    a.query = query ? 1 : 0;
    a.stream = device_.stream();
    const double nan = std::numeric_limits<double>::quiet_NaN();
    maskcheck_loss_totals totals{nan, -1, nan};
    std::ostringstream what;
    what << "cross_entropy " << to_string(t) << " N=" << p.N << " V=" << p.V
         << " ignore_index=" << p.ignore_index << " reduction=" << to_string(p.reduction)
         << " smoothing=" << p.label_smoothing << " weighted=" << (p.weighted ? 1 : 0)
         << " backward=" << (backward ? 1 : 0) << (upstream ? " grad_output" : "");
    const Support s = call("cross_entropy", query, what.str(), [&](char* msg, std::size_t n) {
      return t_.cross_entropy(&a, query ? nullptr : &totals, msg, n);
    });
    if (query) return s;
    for (Tensor* tensor : {&xt, &yt, &wt, &lt, &gt, &ut}) tensor->collect("cross_entropy");
    out->loss = totals.loss;
    out->count = totals.count;
    out->weight_sum = totals.weight_sum;
    out->losses = storage_values(lt, at);
    if (backward) out->dlogits = storage_values(gt, st.dlogits);
    return s;
  }

  template <class... T>
  void shape_only(T&... tensors) const {
    (tensors.describe_on(device_), ...);
  }
  // Outputs start as a signaling NaN with a payload of its own (no arithmetic produces one): a
  // plugin must write every element, and one it leaves alone is told apart from a NaN it
  // computed.
  void poison(Tensor& tensor, DType t) const {
    std::vector<unsigned char> element;
    auto bytes_of = [&](auto bits) {
      element.resize(sizeof bits);
      std::memcpy(element.data(), &bits, sizeof bits);
    };
    switch (t) {
      case DType::f64:
        bytes_of(std::uint64_t{0x7FF5A5A5A5A5A5A5});
        break;
      case DType::f32:
        bytes_of(std::uint32_t{0x7FA5A5A5});
        break;
      case DType::f16:
        bytes_of(std::uint16_t{0x7D5A});
        break;
      case DType::bf16:
        bytes_of(std::uint16_t{0x7FA5});
        break;
    }
    std::vector<unsigned char> all;
    for (std::int64_t i = 0; i < tensor.numel(); ++i)
      all.insert(all.end(), element.begin(), element.end());
    tensor.place(device_, all.data(), false);
    tensor.set_poison(std::move(element));
  }

  // Calls into the plugin and turns its status into a Support (queries) or an exception.
  template <class F>
  Support call(const std::string& function, bool query, const std::string& problem, F&& f) const {
    std::array<char, 4096> msg{};
    if (observer_) observer_->before_call(function, query, problem);
    const maskcheck_status status = f(msg.data(), msg.size());
    if (observer_) observer_->after_call();
    msg.back() = '\0';
    std::string text(msg.data());
    if (status == MASKCHECK_OK) {
      if (!query) device_.synchronize(name() + " " + function);
      return Support::yes();
    }
    if (status == MASKCHECK_UNSUPPORTED) {
      if (text.empty()) text = name() + " " + function + " declined without a reason";
      if (query) return Support::no(text);
      throw Unsupported(name() + " " + function +
                        " declined a call its query had accepted: " + text);
    }
    const std::string head = name() + " " + function + (query ? " (query)" : "");
    if (status == MASKCHECK_INVALID_ARGUMENT) throw InvalidArgument(head, "INVALID_ARGUMENT", text);
    throw std::runtime_error(head + " returned " + status_name(status) +
                             (text.empty() ? std::string() : ": " + text));
  }

  Library lib_;
  maskcheck_plugin t_;  // a copy (copy_table): the plugin cannot change its table behind our back
  Device device_;
  CallObserver* observer_;
};

const PluginImplementation& loaded(const Implementation& impl) {
  const auto* p = dynamic_cast<const PluginImplementation*>(&impl);
  if (!p) throw std::invalid_argument(impl.name() + " is not a plugin loaded into this process");
  return *p;
}

}  // namespace

std::unique_ptr<PreparedCall> prepare_softmax(const Implementation& plugin, const SoftmaxProblem& p,
                                              DType t, const void* x, void* y) {
  return loaded(plugin).prepare_softmax(p, t, x, y);
}
std::unique_ptr<PreparedCall> prepare_attention(const Implementation& plugin,
                                                const AttentionProblem& p, DType t, const void* q,
                                                const void* k, const void* v, void* out) {
  return loaded(plugin).prepare_attention(p, t, q, k, v, out);
}
std::unique_ptr<PreparedCall> prepare_attention_backward(const Implementation& plugin,
                                                         const AttentionProblem& p, DType t,
                                                         const void* q, const void* k,
                                                         const void* v, const void* dout, void* dq,
                                                         void* dk, void* dv) {
  return loaded(plugin).prepare_attention_backward(p, t, q, k, v, dout, dq, dk, dv);
}
std::unique_ptr<PreparedCall> prepare_cross_entropy(const Implementation& plugin,
                                                    const LossProblem& p, DType t,
                                                    const void* logits, const std::int64_t* labels,
                                                    void* losses, void* dlogits, double* loss) {
  return loaded(plugin).prepare_cross_entropy(p, t, logits, labels, losses, dlogits, loss);
}

std::shared_ptr<const Implementation> load_plugin(const std::string& path, CallObserver* observer) {
  Library lib = open_library(path);
  const maskcheck_plugin table = copy_table(*entry_table(lib, path));
  PluginInfo info = read_table(table, path, lib);
  return std::make_shared<PluginImplementation>(std::move(lib), table, std::move(info), observer);
}

}  // namespace maskcheck::plugin
