// LibTorch peers: LibTorch's own implementations of maskcheck's operations (SDPA and its
// backends, softmax of x plus an additive mask, cross_entropy forward + backward), run over
// maskcheck's buffers. Benchmarks time them next to maskcheck's kernels; the torch
// Implementation adapters of the property tests are built on them too.
//
// This header has no torch types: suite/adapters/torch is the only place that includes LibTorch.
//
// Life of a peer: it is built once, outside any timing, from a problem, a dtype and the addresses
// of its inputs (device memory for Device::cuda, host memory for Device::cpu; wrapped with
// torch::from_blob, never copied, except K/V heads expanded for a backend without grouped-query
// attention). Building materializes everything a call needs (mask tensors, cu_seqlens) so that
// run() launches the operation and nothing else, on LibTorch's current CUDA stream (the legacy
// default stream unless the caller made another one current). Results are read back with the
// output accessors, outside timing. A peer that cannot compute a problem exactly throws
// Unsupported with the reason; supports() gives the same reason without building anything.
// LibTorch errors (c10::Error) come out as TorchError with LibTorch's message, no backtrace.
//
// Mask translation (translate_mask below, the one place): maskcheck's MaskSpec is a structured
// keep-mask, true = attend, with causal and windows bottom-right aligned by default. LibTorch has
// three ways to receive it, and this file decides which one each peer uses:
//   none        no mask argument: the spec masks nothing.
//   is_causal   is_causal = true, no mask tensor: the spec is plain causal (no padding, no
//               documents, no window) and square (Lq == Lk). LibTorch's is_causal is TOP-LEFT
//               aligned (k <= q), maskcheck's default is bottom-right (k <= q + Lk - Lq); the two
//               coincide only when Lq == Lk, so a non-square causal spec never becomes is_causal.
//   window      flash only: window_size_left / right of FlashAttention (bottom-right aligned
//               windows; used only where segments are square, so alignment cannot matter).
//   varlen      flash only, packed layout: cu_seqlens per segment (a sequence's valid tokens, or
//               one document), causal / window inside each square segment. Padding disappears in
//               the packing.
//   boolean     dispatch only: the boolean keep-mask [B, 1, Lq, Lk] (true = attend), handed to
//               the public at::scaled_dot_product_attention as users call it; LibTorch converts
//               it to an additive mask on every call and picks the backend itself (on the CPU,
//               its flash kernel).
//   additive    a mask tensor [B, 1, Lq, Lk] (broadcast over heads) in the dtype: 0 where the
//               keep-mask is true and -inf where it is false. The keep-mask is built on the host
//               with ref::build_keep_mask (one predicate), uploaded once as a boolean tensor
//               (true = attend, SDPA's public attn_mask polarity) and converted on the device
//               once. It has to be additive: the explicit SDPA ops (_scaled_dot_product_*)
//               ADD their attn_mask / attn_bias to the scores, so a boolean tensor would be read
//               as +1 / +0 (the public scaled_dot_product_attention converts bool to -inf
//               before dispatching; we do the same conversion once instead of per call). The
//               storage of the last axis is padded to a multiple of 16 elements, the alignment
//               the memory-efficient kernel requires.
// A query with no visible key (a fully masked row) gets NaN or a uniform row from some of these
// paths (softmax of an all -inf row); maskcheck's spec says zeros. Such rows are a documented
// deviation: compare only rows with at least one visible key.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "maskcheck/reference/dtype.hpp"
#include "maskcheck/reference/problems.hpp"

namespace maskcheck::torch_peers {

// A problem (or device, backend, dtype) a peer cannot compute exactly; what() is the reason.
class Unsupported : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};
// A LibTorch error (c10::Error) with LibTorch's message and no backtrace.
class TorchError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class Device : std::uint8_t { cpu, cuda };
std::string_view to_string(Device d);

// LibTorch's version ("2.11.0"), and its CUDA and cuDNN versions ("" without CUDA).
std::string torch_version();
std::string torch_cuda_version();
std::string torch_cudnn_version();
// LibTorch's intra-op threads on the CPU (at::get_num_threads).
int torch_num_threads();
// Whether LibTorch sees a CUDA device; otherwise why not.
bool torch_cuda_available(std::string* why = nullptr);
// Some virtual machines advertise AMX and let a process configure tiles, yet LibTorch's oneDNN
// AMX kernels die there with SIGILL (seen on a Firecracker VM: bf16 SDPA, L 64). Once per
// process, before LibTorch's first CPU operation: unless ONEDNN_MAX_CPU_ISA is set, runs a small
// bf16 SDPA in a forked child and, when the child dies of SIGILL, caps oneDNN below AMX
// (ONEDNN_MAX_CPU_ISA=AVX512_CORE_FP16). Returns a note saying so, or "".
std::string guard_onednn_amx();
// Returns LibTorch's cached CUDA memory to the driver (between benchmark cases, so that
// maskcheck's own allocations find the memory free). No-op without CUDA.
void release_cached_memory();

// ---- the one mask translation ---------------------------------------------------------------

// Who receives the mask: an SDPA backend, or softmax(x + mask). `dispatch` is the public
// at::scaled_dot_product_attention, which picks the backend itself (on the CPU: its flash kernel,
// which takes a mask; on CUDA: whichever backend accepts the inputs).
enum class SdpaBackend : std::uint8_t { math, flash, efficient, cudnn, dispatch };
std::string_view to_string(SdpaBackend b);
inline constexpr SdpaBackend kAllSdpaBackends[] = {SdpaBackend::math, SdpaBackend::flash,
                                                   SdpaBackend::efficient, SdpaBackend::cudnn,
                                                   SdpaBackend::dispatch};

// Where q, k, v, out live:
//   padded  q, out: [B, H, Lq, D], k, v: [B, Hkv, Lk, D], contiguous (maskcheck's layout);
//   packed  q, out: [total_q, H, D], k, v: [total_k, Hkv, D]: the valid tokens of sequence 0,
//           then sequence 1, ... (no padding rows; see packed_segments).
enum class Layout : std::uint8_t { padded, packed };
std::string_view to_string(Layout l);

enum class MaskForm : std::uint8_t {
  none,
  is_causal,
  window,
  varlen,
  boolean,
  additive,
  key_padding  // MHA: key_padding_mask [B, Lk] (true = ignore), plus attn_mask where needed
};
std::string_view to_string(MaskForm f);

struct TorchMask {
  MaskForm form = MaskForm::none;
  bool is_causal = false;                   // is_causal argument (none / is_causal / varlen)
  std::optional<std::int64_t> window_left;  // flash window_size_left (nullopt: unbounded)
  std::optional<std::int64_t> window_right;
  double fill = 0;           // additive: the value of masked entries (-inf)
  bool key_padding = false;  // key_padding: some sequence has padded keys
  bool attn_mask = false;    // key_padding: causal / window as an additive attn_mask [Lq, Lk]
  std::string description;   // one line for labels and reports
  std::string unsupported;   // non-empty: the consumer cannot express the spec exactly, and why
};

// How `spec` reaches SDPA backend `b` in `layout`, or why it cannot.
TorchMask translate_mask(const MaskSpec& spec, SdpaBackend b, Layout layout = Layout::padded);
// How `spec` reaches softmax(x + mask): none, or additive.
TorchMask translate_softmax_mask(const MaskSpec& spec);

// The conventions of the LibTorch implementations that `maskcheck verify` tests (torch_impl.hpp):
//   sdpa_bool       public scaled_dot_product_attention, boolean attn_mask (true = attend).
//   sdpa_additive   public scaled_dot_product_attention, additive float attn_mask (0 / -inf).
//   sdpa_is_causal  public scaled_dot_product_attention, is_causal=True and no mask tensor: only
//                   plain causal specs without padding, documents or windows. is_causal is
//                   TOP-LEFT aligned; it is used for non-square problems too, where it differs from
//                   the bottom-right spec, and the suite names that deviation top_left_causal.
//   flash_cpu       at::_scaled_dot_product_flash_attention_for_cpu, additive attn_mask; it returns
//                   the log-sum-exp.
//   mha             torch::nn::functional::multi_head_attention_forward (the C++ frontend's):
//                   key_padding_mask [B, Lk] with the OPPOSITE polarity (true = ignore) for padded
//                   keys, and causal / windows as an ADDITIVE attn_mask [Lq, Lk] shared by every
//                   sequence and head (the C++ function adds attn_mask to the scores: a boolean
//                   one would be added as 0 / 1, and a 3-D one does not broadcast). Padded
//                   queries, documents, and causal masks over padded keys (whose diagonal moves
//                   with each sequence) are not expressible there.
enum class Convention : std::uint8_t { sdpa_bool, sdpa_additive, sdpa_is_causal, flash_cpu, mha };
std::string_view to_string(Convention c);
TorchMask translate_for(Convention c, const MaskSpec& spec);

// Segments of the packed layout: the documents when the spec has them, else each sequence's
// valid tokens, in order. cu_q / cu_k: [segments + 1] offsets into the packed rows (a sequence's
// documents are consecutive, so the packed rows are the same either way; only the boundaries
// differ). max_q / max_k: the longest segment.
struct PackedSegments {
  std::vector<std::int32_t> cu_q, cu_k;
  std::int32_t max_q = 0, max_k = 0;
  std::int64_t total_q() const { return cu_q.empty() ? 0 : cu_q.back(); }
  std::int64_t total_k() const { return cu_k.empty() ? 0 : cu_k.back(); }
};
PackedSegments packed_segments(const MaskSpec& spec);

// ---- peers ------------------------------------------------------------------------------------

// "" when the peer can compute the problem exactly on that device and dtype, else the reason.
std::string sdpa_supports(SdpaBackend b, Layout layout, const AttentionProblem& p, DType t,
                          Device d);

// Scaled dot-product attention with one backend forced, through its explicit LibTorch op
// (at::_scaled_dot_product_attention_math, at::_flash_attention_forward (the op under
// _scaled_dot_product_flash_attention, which also takes windows and cu_seqlens),
// at::_scaled_dot_product_efficient_attention, at::_scaled_dot_product_cudnn_attention), or, for
// `dispatch`, the public at::scaled_dot_product_attention with the boolean mask (padded layout
// only; the description names the backend LibTorch chose, from at::_fused_sdp_choice).
// Grouped-query attention: math and dispatch take enable_gqa, flash takes fewer K/V heads
// natively; efficient and cudnn get K/V heads expanded once at construction (a copy, described).
class SdpaPeer {
 public:
  SdpaPeer(SdpaBackend b, Layout layout, const AttentionProblem& p, DType t, Device d,
           const void* q, const void* k, const void* v);
  ~SdpaPeer();
  SdpaPeer(SdpaPeer&&) noexcept;
  SdpaPeer& operator=(SdpaPeer&&) noexcept;

  void run();
  // The last run's output in the peer's layout (padded [B, H, Lq, D] or packed
  // [total_q, H, D]), as doubles on the host (synchronizes).
  std::vector<double> output() const;
  // Copies the last run's output, contiguous in the peer's layout and dtype, to `dst` in the
  // peer's memory (device or host), ordered on the current stream.
  void copy_output(void* dst) const;
  const TorchMask& mask() const;
  // One line: backend, mask form, K/V expansion.
  const std::string& description() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// LibTorch's SDPA backward on device d, the way a training step runs it: q, k, v copied into
// leaf tensors that require grad, the forward at::scaled_dot_product_attention with the boolean
// keep-mask [B, 1, Lq, Lk] run once here, then each run() one backward of that graph with dout
// (retain_graph; the gradients set to none first, as optimizer.zero_grad(set_to_none=True)), so
// that only the backward is timed. Padded layout, q, dout [B, H, Lq, D], k, v [B, Hkv, Lk, D] in t,
// in d's memory. On CUDA, run() returns once the backward's kernels are enqueued.
class SdpaBackwardPeer {
 public:
  SdpaBackwardPeer(const AttentionProblem& p, DType t, Device d, const void* q, const void* k,
                   const void* v, const void* dout);
  ~SdpaBackwardPeer();
  SdpaBackwardPeer(const SdpaBackwardPeer&) = delete;
  SdpaBackwardPeer& operator=(const SdpaBackwardPeer&) = delete;

  void run();
  // The last run's dq, dk, dv, contiguous in the case's dtype, into buffers in d's memory.
  void copy_gradients(void* dq, void* dk, void* dv) const;
  // One line: the backend LibTorch's dispatch chose for the forward, the mask form.
  const std::string& description() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Attention over a paged KV cache (problems.hpp's PagedKv) the way a user without a paged kernel
// serves one: each run() gathers every sequence's keys and values from their pages with
// index_select into the padded layout [B, Hkv, Lk, D] (padded keys read slot 0, masked), then calls
// at::scaled_dot_product_attention with the boolean keep-mask [B, 1, Lq, Lk] (enable_gqa). q
// [B, H, Lq, D], k_cache, v_cache [num_pages, page_size, Hkv, D] in t, on the CPU.
class PagedSdpaPeer {
 public:
  PagedSdpaPeer(const AttentionProblem& p, const PagedKv& kv, DType t, const void* q,
                const void* k_cache, const void* v_cache);
  ~PagedSdpaPeer();
  PagedSdpaPeer(const PagedSdpaPeer&) = delete;
  PagedSdpaPeer& operator=(const PagedSdpaPeer&) = delete;

  void run();
  void copy_output(void* out) const;  // [B, H, Lq, D] in t
  const std::string& description() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// "" or the reason.
std::string softmax_supports(const SoftmaxProblem& p, DType t, Device d);

// y = softmax(x * scale + mask, dim = -1) with the additive -inf mask [B, 1, Lq, Lk] in the
// dtype, materialized once (the way Hugging Face models apply a mask); written into y.
// x, y: [B, H, Lq, Lk]. A fully masked row comes out NaN (softmax of all -inf).
class SoftmaxPeer {
 public:
  SoftmaxPeer(const SoftmaxProblem& p, DType t, Device d, const void* x, void* y);
  ~SoftmaxPeer();
  SoftmaxPeer(SoftmaxPeer&&) noexcept;
  SoftmaxPeer& operator=(SoftmaxPeer&&) noexcept;

  void run();
  const TorchMask& mask() const;
  const std::string& description() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// "" or the reason (per-token weights are not LibTorch's: its weights are per class).
std::string cross_entropy_supports(const LossProblem& p, DType t, Device d);

// Forward + backward of torch cross_entropy(logits, labels, ignore_index, label_smoothing,
// reduction) in the logits' dtype: logits is wrapped as a leaf with requires_grad; run() clears
// its gradient (set to none, as optimizer.zero_grad() does), computes the loss and calls
// backward() (of the sum of the rows for reduction none). logits: [N, V], labels: [N] int64.
// With reduction mean and every label ignored LibTorch gives NaN (maskcheck: 0).
class CrossEntropyPeer {
 public:
  CrossEntropyPeer(const LossProblem& p, DType t, Device d, const void* logits,
                   const std::int64_t* labels);
  ~CrossEntropyPeer();
  CrossEntropyPeer(CrossEntropyPeer&&) noexcept;
  CrossEntropyPeer& operator=(CrossEntropyPeer&&) noexcept;

  void run();
  // The last run's reduced loss (the sum of the rows for reduction none); synchronizes.
  double loss() const;
  // The last run's dlogits [N, V] as doubles on the host; synchronizes.
  std::vector<double> grad() const;
  // Rows [row_begin, row_end) of dlogits only (cheap for large V).
  std::vector<double> grad_rows(std::int64_t row_begin, std::int64_t row_end) const;
  const std::string& description() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace maskcheck::torch_peers
