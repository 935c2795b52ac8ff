// The one translation of a MaskSpec into LibTorch's mask arguments (see torch_peers.hpp for the
// forms and why each exists). Plain C++: no LibTorch here, only decisions, so that the rules can
// be read (and tested) in one place.
#include <algorithm>
#include <functional>
#include <limits>
#include <string>

#include "maskcheck/adapters/torch_peers.hpp"
#include "maskcheck/reference/predicate.hpp"

namespace maskcheck::torch_peers {

std::string_view to_string(Device d) {
  return d == Device::cuda ? "cuda" : "cpu";
}

std::string_view to_string(SdpaBackend b) {
  switch (b) {
    case SdpaBackend::math:
      return "math";
    case SdpaBackend::flash:
      return "flash";
    case SdpaBackend::efficient:
      return "efficient";
    case SdpaBackend::cudnn:
      return "cudnn";
    case SdpaBackend::dispatch:
      return "dispatch";
  }
  return "?";
}

std::string_view to_string(Layout l) {
  return l == Layout::packed ? "packed" : "padded";
}

std::string_view to_string(MaskForm f) {
  switch (f) {
    case MaskForm::none:
      return "none";
    case MaskForm::is_causal:
      return "is_causal";
    case MaskForm::window:
      return "window";
    case MaskForm::varlen:
      return "varlen";
    case MaskForm::boolean:
      return "boolean";
    case MaskForm::additive:
      return "additive";
    case MaskForm::key_padding:
      return "key_padding";
  }
  return "?";
}

std::string_view to_string(Convention c) {
  switch (c) {
    case Convention::sdpa_bool:
      return "sdpa-bool";
    case Convention::sdpa_additive:
      return "sdpa-additive";
    case Convention::sdpa_is_causal:
      return "sdpa-is_causal";
    case Convention::flash_cpu:
      return "sdpa-flash-cpu";
    case Convention::mha:
      return "mha";
  }
  return "?";
}

namespace {

// What a spec restricts, with causal folded into the window: causal == window (unbounded, 0).
struct SpecShape {
  bool padding = false;    // some sequence has fewer than Lq queries or Lk keys
  bool documents = false;  // cu_seqlens split sequences into documents
  // prefix-LM, chunked attention or attention sinks: only a mask tensor says it
  bool prefix_or_chunk = false;
  std::int64_t left = kUnbounded, right = kUnbounded;
  bool windowed() const { return left != kUnbounded || right != kUnbounded; }
  bool plain_causal() const { return left == kUnbounded && right == 0 && !prefix_or_chunk; }
  bool masks_nothing() const { return !padding && !documents && !windowed() && !prefix_or_chunk; }
};

SpecShape analyze(const MaskSpec& m) {
  m.validate();
  SpecShape s;
  for (std::int64_t b = 0; b < m.B; ++b)
    if (m.q_len(b) < m.Lq || m.k_len(b) < m.Lk) s.padding = true;
  s.documents = m.has_documents();
  s.prefix_or_chunk = m.has_prefix_or_chunk() || m.has_sink_tokens();
  if (m.window) {
    s.left = m.window->left;
    s.right = m.window->right;
  }
  if (m.causal) s.right = std::min<std::int64_t>(s.right, 0);
  return s;
}

std::string window_text(const SpecShape& s) {
  auto side = [](std::int64_t w) {
    return w == kUnbounded ? std::string("inf") : std::to_string(w);
  };
  return "(" + side(s.left) + ", " + side(s.right) + ")";
}

// The additive value of a masked entry. -inf for every consumer, as SDPA's public front door
// converts a boolean mask for math and efficient. (For cuDNN, PyTorch has at times converted with
// a finite fill instead, because cuDNN turned fully masked rows into NaN; rows with at least one
// visible key are identical either way, and those are the only rows compared.)
constexpr double kAdditiveFill = -std::numeric_limits<double>::infinity();

TorchMask additive(const MaskSpec& m) {
  TorchMask t;
  t.form = MaskForm::additive;
  t.fill = kAdditiveFill;
  t.description = "additive 0/-inf mask [B=" + std::to_string(m.B) +
                  ", 1, Lq, Lk] from the boolean keep-mask (true = attend), materialized once";
  return t;
}

}  // namespace

PackedSegments packed_segments(const MaskSpec& m) {
  m.validate();
  PackedSegments s;
  s.cu_q.push_back(0);
  s.cu_k.push_back(0);
  auto add = [&](std::int32_t len_q, std::int32_t len_k) {
    s.cu_q.push_back(s.cu_q.back() + len_q);
    s.cu_k.push_back(s.cu_k.back() + len_k);
    s.max_q = std::max(s.max_q, len_q);
    s.max_k = std::max(s.max_k, len_k);
  };
  for (std::int64_t b = 0; b < m.B; ++b) {
    if (m.has_documents()) {
      const auto& cq = m.cu_seqlens_q[b];
      const auto& ck = m.cu_seqlens_k[b];
      for (std::size_t i = 0; i + 1 < cq.size(); ++i) add(cq[i + 1] - cq[i], ck[i + 1] - ck[i]);
    } else {
      add(static_cast<std::int32_t>(m.q_len(b)), static_cast<std::int32_t>(m.k_len(b)));
    }
  }
  return s;
}

TorchMask translate_mask(const MaskSpec& m, SdpaBackend b, Layout layout) {
  const SpecShape s = analyze(m);
  TorchMask t;
  if (layout == Layout::packed && b != SdpaBackend::flash) {
    t.unsupported = "packed layout: only flash takes cu_seqlens here";
    return t;
  }

  if (b == SdpaBackend::flash) {
    if (s.prefix_or_chunk) {
      t.unsupported =
          "flash takes no mask tensor, and neither is_causal nor window_size expresses prefix-LM, "
          "chunked attention or attention sinks";
      return t;
    }
    if (layout == Layout::padded) {
      if (s.padding || s.documents) {
        t.unsupported =
            "flash takes no mask tensor: padding and documents need the packed layout "
            "(cu_seqlens)";
        return t;
      }
      if (s.masks_nothing()) {
        t.description = "no mask";
        return t;
      }
      if (m.Lq != m.Lk) {
        t.unsupported =
            "flash with causal/window and Lq != Lk: SDPA's is_causal is top-left aligned, "
            "FlashAttention's bottom-right; only square problems, where they agree, are mapped";
        return t;
      }
      if (s.plain_causal()) {
        t.form = MaskForm::is_causal;
        t.is_causal = true;
        t.description = "is_causal=True (top-left == bottom-right since Lq == Lk)";
        return t;
      }
      t.form = MaskForm::window;
      if (s.left != kUnbounded) t.window_left = s.left;
      if (s.right != kUnbounded) t.window_right = s.right;
      t.description = "flash window_size=" + window_text(s) + " (Lq == Lk)";
      return t;
    }
    // Packed: segments carry padding and documents; causal / window apply inside each.
    const PackedSegments seg = packed_segments(m);
    if (s.windowed()) {
      for (std::size_t i = 0; i + 1 < seg.cu_q.size(); ++i) {
        if (seg.cu_q[i + 1] - seg.cu_q[i] != seg.cu_k[i + 1] - seg.cu_k[i]) {
          t.unsupported =
              "flash varlen with causal/window and a segment with q_len != k_len: alignment "
              "conventions differ there; only square segments are mapped";
          return t;
        }
      }
    }
    t.form = MaskForm::varlen;
    t.is_causal = s.plain_causal();
    if (s.windowed() && !s.plain_causal()) {
      if (s.left != kUnbounded) t.window_left = s.left;
      if (s.right != kUnbounded) t.window_right = s.right;
    }
    t.description = "cu_seqlens over " + std::to_string(seg.cu_q.size() - 1) +
                    (s.documents ? " documents" : " sequences") +
                    (t.is_causal    ? ", is_causal=True per segment"
                     : s.windowed() ? ", window_size=" + window_text(s) + " per segment"
                                    : std::string());
    return t;
  }

  // math, efficient, cudnn, dispatch: a mask tensor, or is_causal where it is exact.
  if (s.masks_nothing()) {
    t.description = "no mask";
    return t;
  }
  if (s.plain_causal() && !s.padding && !s.documents && m.Lq == m.Lk) {
    t.form = MaskForm::is_causal;
    t.is_causal = true;
    t.description = "is_causal=True (top-left == bottom-right since Lq == Lk)";
    return t;
  }
  if (b == SdpaBackend::dispatch) {
    // The public op takes the boolean mask as users pass it and converts it to -inf itself
    // (per call, inside the timed region: that is what its callers pay).
    t.form = MaskForm::boolean;
    t.description = "boolean keep-mask [B=" + std::to_string(m.B) +
                    ", 1, Lq, Lk] (true = attend), materialized once";
    return t;
  }
  return additive(m);
}

TorchMask translate_softmax_mask(const MaskSpec& m) {
  const SpecShape s = analyze(m);
  if (s.masks_nothing()) {
    TorchMask t;
    t.description = "no mask";
    return t;
  }
  return additive(m);
}

TorchMask translate_for(Convention c, const MaskSpec& m) {
  const SpecShape s = analyze(m);
  TorchMask t;
  if (s.masks_nothing()) {
    t.description = "no mask";
    return t;
  }
  switch (c) {
    case Convention::sdpa_bool:
      t.form = MaskForm::boolean;
      t.description = "boolean attn_mask [B, 1, Lq, Lk] (true = attend)";
      return t;
    case Convention::sdpa_additive:
    case Convention::flash_cpu:
      return additive(m);
    case Convention::sdpa_is_causal:
      if (!s.plain_causal() || s.padding || s.documents) {
        t.unsupported =
            "is_causal=True without a mask tensor expresses plain causal masking only (no "
            "padding, documents or windows; torch:sdpa-bool takes those)";
        return t;
      }
      t.form = MaskForm::is_causal;
      t.is_causal = true;
      t.description = m.Lq == m.Lk ? "is_causal=True (top-left == bottom-right since Lq == Lk)"
                                   : "is_causal=True, which is top-left aligned (Lq != Lk)";
      return t;
    case Convention::mha: {
      // The C++ frontend's multi_head_attention_forward masks keys with key_padding_mask and
      // ADDS attn_mask, which must be [Lq, Lk] (one mask for every sequence and head): unlike
      // Python's, it takes neither a boolean nor a per-sequence attn_mask.
      bool q_padding = false;
      for (std::int64_t b = 0; b < m.B; ++b) {
        q_padding = q_padding || m.q_len(b) < m.Lq;
        t.key_padding = t.key_padding || m.k_len(b) < m.Lk;
      }
      if (q_padding)
        t.unsupported =
            "padded queries: multi_head_attention_forward masks keys only, so padded queries "
            "still attend (the spec gives them zeros)";
      else if (s.documents)
        t.unsupported =
            "documents: the C++ multi_head_attention_forward takes one additive attn_mask "
            "[Lq, Lk] for every sequence";
      else if ((s.windowed() || s.prefix_or_chunk) && t.key_padding)
        t.unsupported =
            "causal/window/prefix/chunk/sinks with padded keys: the diagonal moves with each "
            "sequence's "
            "length, but the C++ multi_head_attention_forward takes one attn_mask [Lq, Lk] for "
            "every sequence";
      else if (!m.prefix_lens.empty() &&
               std::adjacent_find(m.prefix_lens.begin(), m.prefix_lens.end(),
                                  std::not_equal_to<>()) != m.prefix_lens.end())
        t.unsupported =
            "prefix-LM with prefixes of different lengths: the C++ multi_head_attention_forward "
            "takes one attn_mask [Lq, Lk] for every sequence";
      if (!t.unsupported.empty()) return t;
      t.form = MaskForm::key_padding;
      t.attn_mask = s.windowed() || s.prefix_or_chunk;
      t.fill = kAdditiveFill;
      t.description = std::string(t.key_padding ? "key_padding_mask [B, Lk] (true = ignore)" : "") +
                      (t.key_padding && t.attn_mask ? " + " : "") +
                      (t.attn_mask ? "additive attn_mask [Lq, Lk] (0 / -inf)" : "");
      return t;
    }
  }
  t.unsupported = "unknown convention";
  return t;
}

}  // namespace maskcheck::torch_peers
