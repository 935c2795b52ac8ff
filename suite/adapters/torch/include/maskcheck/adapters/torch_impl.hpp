// LibTorch as implementations under test: the built-in registry holds these adapters when the build
// has LibTorch, so that `maskcheck verify` regression-tests LibTorch's masking the way users call
// it. Every adapter reaches LibTorch through the one mask translation (torch_peers.hpp:
// translate_for / translate_mask) and declares with a reason what it cannot express.
//
// CPU (always):
//   torch:sdpa-bool        at::scaled_dot_product_attention, boolean attn_mask (true = attend)
//   torch:sdpa-additive    at::scaled_dot_product_attention, additive 0 / -inf attn_mask
//   torch:sdpa-is_causal   at::scaled_dot_product_attention, is_causal=True (top-left aligned)
//   torch:sdpa-flash-cpu   at::_scaled_dot_product_flash_attention_for_cpu, with log-sum-exp
//   torch:mha              torch::nn::functional::multi_head_attention_forward, identity
//                          projections, key_padding_mask (true = ignore) + attn_mask
//   torch:softmax          softmax(x * scale + additive mask, -1)
//   torch:cross_entropy    at::cross_entropy_loss (ignore_index, reduction, label_smoothing)
//                          + backward
// CUDA (when LibTorch sees a GPU): one implementation per SDPA backend, each forced through its
// explicit op: torch:cuda-math, torch:cuda-flash (padding and documents through cu_seqlens),
// torch:cuda-efficient, torch:cuda-cudnn.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "maskcheck/suite/registry.hpp"

namespace maskcheck {

// The adapters this process can run; `cuda_note` (if given) says why the CUDA ones are absent.
std::vector<std::shared_ptr<const Implementation>> make_torch_implementations(
    std::string* cuda_note = nullptr);

}  // namespace maskcheck
