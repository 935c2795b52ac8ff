// Device management: errors, availability, info, buffers, masks in device memory.
#include <string>

#include "common.cuh"

namespace maskcheck::cuda {

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess)
    throw CudaError(std::string(what) + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) +
                    ")");
}

bool device_available(std::string* why) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky-free error state of the failed query
    if (why) *why = std::string("no CUDA device: ") + cudaGetErrorString(e);
    return false;
  }
  if (n == 0) {
    if (why) *why = "no CUDA device: none present";
    return false;
  }
  return true;
}

DeviceInfo device_info(int device) {
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
  DeviceInfo d;
  d.name = prop.name;
  d.cc_major = prop.major;
  d.cc_minor = prop.minor;
  d.sm_count = prop.multiProcessorCount;
  d.memory_bytes = prop.totalGlobalMem;
  d.l2_bytes = static_cast<std::size_t>(prop.l2CacheSize);
  d.memory_bus_bits = prop.memoryBusWidth;
  check(cudaDriverGetVersion(&d.driver_version), "cudaDriverGetVersion");
  check(cudaRuntimeGetVersion(&d.runtime_version), "cudaRuntimeGetVersion");
  check(cudaDeviceGetAttribute(&d.sm_clock_khz, cudaDevAttrClockRate, device), "clock rate");
  check(cudaDeviceGetAttribute(&d.memory_clock_khz, cudaDevAttrMemoryClockRate, device),
        "memory clock rate");
  return d;
}

DeviceBuffer::DeviceBuffer(std::size_t bytes) : bytes_(bytes) {
  if (bytes > 0) check(cudaMalloc(&ptr_, bytes), "cudaMalloc");
}
DeviceBuffer::DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(o.ptr_), bytes_(o.bytes_) {
  o.ptr_ = nullptr;
  o.bytes_ = 0;
}
DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
  if (this != &o) {
    if (ptr_) cudaFree(ptr_);
    ptr_ = o.ptr_;
    bytes_ = o.bytes_;
    o.ptr_ = nullptr;
    o.bytes_ = 0;
  }
  return *this;
}
DeviceBuffer::~DeviceBuffer() {
  if (ptr_) cudaFree(ptr_);
}
void DeviceBuffer::upload(const void* host, std::size_t bytes, cudaStream_t stream) {
  if (bytes > bytes_) throw CudaError("upload larger than the buffer");
  if (bytes > 0)
    check(cudaMemcpyAsync(ptr_, host, bytes, cudaMemcpyHostToDevice, stream), "upload");
}
void DeviceBuffer::download(void* host, std::size_t bytes, cudaStream_t stream) const {
  if (bytes > bytes_) throw CudaError("download larger than the buffer");
  if (bytes > 0) {
    check(cudaMemcpyAsync(host, ptr_, bytes, cudaMemcpyDeviceToHost, stream), "download");
    check(cudaStreamSynchronize(stream), "download sync");
  }
}

namespace {
DeviceBuffer upload_vector(const std::vector<std::int32_t>& v, cudaStream_t stream) {
  DeviceBuffer b(v.size() * sizeof(std::int32_t));
  b.upload(v.data(), b.bytes(), stream);
  return b;
}
}  // namespace

DeviceMask::DeviceMask(const MaskSpec& spec, cudaStream_t stream) {
  const FlatMask flat(spec);  // validates
  // The kernels keep one key interval per row (visible_keys); attention sinks apart from it
  // would be dropped silently.
  require(spec.sink_tokens == 0, "sink_tokens", spec.sink_tokens,
          "must be 0: the CUDA kernels do not apply attention-sink tokens yet");
  view_ = flat.view();
  q_lens_ = upload_vector(flat.q_lens(), stream);
  k_lens_ = upload_vector(flat.k_lens(), stream);
  doc_ptr_ = upload_vector(flat.doc_ptr(), stream);
  cu_q_ = upload_vector(flat.cu_q(), stream);
  cu_k_ = upload_vector(flat.cu_k(), stream);
  prefix_lens_ = upload_vector(flat.prefix_lens(), stream);
  view_.q_lens = flat.q_lens().empty() ? nullptr : q_lens_.as<std::int32_t>();
  view_.k_lens = flat.k_lens().empty() ? nullptr : k_lens_.as<std::int32_t>();
  view_.doc_ptr = flat.doc_ptr().empty() ? nullptr : doc_ptr_.as<std::int32_t>();
  view_.cu_q = flat.cu_q().empty() ? nullptr : cu_q_.as<std::int32_t>();
  view_.cu_k = flat.cu_k().empty() ? nullptr : cu_k_.as<std::int32_t>();
  view_.prefix_lens = flat.prefix_lens().empty() ? nullptr : prefix_lens_.as<std::int32_t>();
  // The host vectors die with `flat`: the copies must land before returning.
  check(cudaStreamSynchronize(stream), "DeviceMask upload");
}

void require_cuda_dtype(DType t) {
  if (t == DType::f64) throw_invalid("dtype", "f64", "the CUDA kernels take f32, f16 or bf16");
}

}  // namespace maskcheck::cuda
