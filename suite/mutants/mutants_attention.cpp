// Mutants of mask construction and masked attention: a wrong keep-mask (each masked operation
// uses it), a wrong grouped-query head mapping, NaN log-sum-exp on rows with no visible key.
#include <algorithm>
#include <cmath>
#include <limits>

#include "maskcheck/reference/predicate.hpp"
#include "maskcheck/reference/reference.hpp"
#include "mutants_internal.hpp"

namespace maskcheck::mutants {
namespace {

// A mutant whose bug lives in mask construction: every masked operation uses its broken mask.
class MaskBug : public Named {
 public:
  using KeepFn = std::vector<std::uint8_t> (*)(MaskSpec);
  MaskBug(std::string id, std::string how, KeepFn keep)
      : Named(std::move(id), std::move(how)), keep_(keep) {}

  std::vector<double> build_mask(const MaskSpec& spec, MaskEncoding e, DType t) const override {
    return ref::encode_mask(keep_(spec), e, t);
  }
  std::vector<double> softmax(const SoftmaxProblem& p, DType t,
                              std::span<const double> x) const override {
    p.validate();
    const auto k = keep_(p.mask);
    return softmax_in_storage(t, x, [&](auto tag, auto xs, auto ys) {
      ref::masked_softmax<decltype(tag), double>(p, k, xs, ys);
    });
  }
  AttentionResult attention(const AttentionProblem& p, DType t, std::span<const double> q,
                            std::span<const double> k, std::span<const double> v,
                            bool want_lse) const override {
    p.validate();
    const auto m = keep_(p.mask);
    return dispatch_dtype(t, [&](auto tag) {
      using S = decltype(tag);
      const auto qs = to_storage_vec<S>(q), ks = to_storage_vec<S>(k), vs = to_storage_vec<S>(v);
      std::vector<S> out(qs.size());
      std::vector<double> lse(want_lse ? static_cast<std::size_t>(p.lse_numel()) : 0);
      ref::attention_forward<S, double>(p, m, std::span<const S>(qs), std::span<const S>(ks),
                                        std::span<const S>(vs), std::span<S>(out),
                                        std::span<double>(lse));
      return AttentionResult{to_double_vec(out), lse};
    });
  }

 private:
  KeepFn keep_;
};

// Causal diagonal off by one: each query also sees the next key (k <= diag + 1).
std::vector<std::uint8_t> causal_off_by_one(MaskSpec s) {
  if (s.causal) {
    s.causal = false;
    s.prefix_lens.clear();
    Window w = s.window.value_or(Window{});
    w.right = std::min<std::int64_t>(w.right, 0) + 1;
    s.window = w;
  }
  return ref::build_keep_mask(s);
}

// The padding mask transposed: the key lengths limit the queries, keys are never limited.
std::vector<std::uint8_t> padding_on_queries(MaskSpec s) {
  if (!s.k_lens.empty()) {
    s.q_lens.assign(s.k_lens.begin(), s.k_lens.end());
    for (auto& l : s.q_lens) l = static_cast<std::int32_t>(std::min<std::int64_t>(l, s.Lq));
    s.k_lens.clear();
    s.cu_seqlens_q.clear();  // documents no longer line up with the lengths
    s.cu_seqlens_k.clear();
  }
  return ref::build_keep_mask(s);
}

// Top-left alignment where bottom-right was asked for (PyTorch is_causal with Lq != Lk).
std::vector<std::uint8_t> top_left_always(MaskSpec s) {
  s.alignment = Alignment::top_left;
  return ref::build_keep_mask(s);
}

// Alignment that depends on the sign of Lk - Lq: top-left on every segment (sequence or
// document) with more keys than queries, bottom-right on the others. Each case alone may look like
// PyTorch's is_causal convention (top_left_causal), but no library aligns this way: the deviation
// filter must not excuse it.
std::vector<std::uint8_t> alignment_by_sign(MaskSpec s) {
  MaskSpec tl = s;
  tl.alignment = Alignment::top_left;
  const auto br_keep = ref::build_keep_mask(s), tl_keep = ref::build_keep_mask(tl);
  if (!s.causal && !s.window) return br_keep;
  std::vector<std::uint8_t> keep = br_keep;
  for (std::int64_t b = 0; b < s.B; ++b) {
    const std::int64_t q0 = valid_begin(s.padding, s.Lq, s.q_len(b));
    for (std::int64_t i = 0; i < s.q_len(b); ++i) {
      std::int64_t ql = s.q_len(b), kl = s.k_len(b);
      if (s.has_documents()) {
        const auto& cq = s.cu_seqlens_q[b];
        const auto& ck = s.cu_seqlens_k[b];
        std::size_t d = 0;
        while (d + 2 < cq.size() && cq[d + 1] <= i) ++d;
        ql = cq[d + 1] - cq[d];
        kl = ck[d + 1] - ck[d];
      }
      if (kl <= ql) continue;
      const std::int64_t row = (b * s.Lq + q0 + i) * s.Lk;
      std::copy_n(tl_keep.begin() + row, s.Lk, keep.begin() + row);
    }
  }
  return keep;
}

// Sliding window one key too wide on the left: diag - left - 1 <= k (a window "of left keys"
// read as left keys besides the query's own, the Mistral sliding_window confusion).
std::vector<std::uint8_t> window_off_by_one(MaskSpec s) {
  if (s.window && s.window->left < kMaxWindow) ++s.window->left;
  return ref::build_keep_mask(s);
}

// Key lengths one too long (cu_seqlens_k built from lengths + 1): every sequence with padding
// sees one padded key, and the bottom-right diagonal moves with the length.
std::vector<std::uint8_t> seqlen_k_off_by_one(MaskSpec s) {
  for (std::size_t b = 0; b < s.k_lens.size(); ++b) {
    if (s.k_lens[b] >= s.Lk) continue;
    ++s.k_lens[b];
    if (s.has_documents()) ++s.cu_seqlens_k[b].back();
  }
  return ref::build_keep_mask(s);
}

// Left padding treated as right padding: the valid block is assumed to start at position 0.
std::vector<std::uint8_t> left_padding_as_right(MaskSpec s) {
  s.padding = PaddingSide::right;
  return ref::build_keep_mask(s);
}

// Packed documents ignored: a packed row is masked as one sequence, so the causal mask lets
// every document see the documents before it.
std::vector<std::uint8_t> documents_ignored(MaskSpec s) {
  s.cu_seqlens_q.clear();
  s.cu_seqlens_k.clear();
  return ref::build_keep_mask(s);
}

// Prefix-LM's prefix ignored: every query is plain causal (a kernel given a prefix-LM model's
// mask that only knows is_causal).
std::vector<std::uint8_t> prefix_ignored(MaskSpec s) {
  s.prefix_lens.clear();
  return ref::build_keep_mask(s);
}

// Prefix-LM's prefix one key too long: the key right after the prefix is bidirectional too (a
// prefix length taken as an inclusive last index).
std::vector<std::uint8_t> prefix_off_by_one(MaskSpec s) {
  for (auto& p : s.prefix_lens)
    if (p < s.Lk) ++p;
  return ref::build_keep_mask(s);
}

// Chunked attention ignored: the chunk clause is dropped (a kernel without Llama 4's chunking
// runs the layer as global attention).
std::vector<std::uint8_t> chunk_ignored(MaskSpec s) {
  s.chunk = 0;
  return ref::build_keep_mask(s);
}

// Chunks one key too long: chunk boundaries drift by one more key per chunk.
std::vector<std::uint8_t> chunk_off_by_one(MaskSpec s) {
  if (s.chunk > 0) ++s.chunk;
  return ref::build_keep_mask(s);
}

// The query's chunk taken from its own position instead of its diagonal (top-left where
// bottom-right was asked): with more keys than queries, queries look into earlier chunks. The
// chunk clause is a conjunct of its own, so the mutant's mask is the mask without chunks AND the
// chunk-only mask aligned top-left.
std::vector<std::uint8_t> chunk_from_query_position(MaskSpec s) {
  if (s.chunk == 0) return ref::build_keep_mask(s);
  MaskSpec chunks = s;
  chunks.causal = false;
  chunks.window.reset();
  chunks.prefix_lens.clear();
  chunks.alignment = Alignment::top_left;
  s.chunk = 0;
  auto keep = ref::build_keep_mask(s);
  const auto in_chunk = ref::build_keep_mask(chunks);
  for (std::size_t i = 0; i < keep.size(); ++i) keep[i] = keep[i] & in_chunk[i];
  return keep;
}

// Attention sinks computed another way: the keep-mask without sinks plus, per row, the keys
// extra(row) returns. extra gets the row's segment, its interval without sinks (`keys`) and its
// interval with every clause but the window's left bound (`wide`; the right sinks are the first
// sink_tokens keys of the segment inside it, for a row whose `keys` is not empty).
template <class Extra>
std::vector<std::uint8_t> sinks_variant(const MaskSpec& s, Extra extra) {
  MaskSpec base = s;
  base.sink_tokens = 0;
  auto keep = ref::build_keep_mask(base);
  if (s.sink_tokens == 0) return keep;
  MaskSpec no_left = base;
  if (no_left.window) no_left.window->left = kUnbounded;
  const FlatMask fb(base), fw(no_left);
  for (std::int64_t b = 0; b < s.B; ++b)
    for (std::int64_t q = 0; q < s.Lq; ++q) {
      const QuerySegment seg = query_segment(fb.view(), b, q);
      if (!seg.valid) continue;
      const KeyRange e = extra(seg, visible_keys(fb.view(), b, q), visible_keys(fw.view(), b, q));
      for (std::int64_t k = std::max<std::int64_t>(e.begin, 0); k < std::min(e.end, s.Lk); ++k)
        keep[static_cast<std::size_t>((b * s.Lq + q) * s.Lk + k)] = 1;
    }
  return keep;
}

// Attention sinks ignored: a StreamingLLM cache served by a plain sliding-window kernel.
std::vector<std::uint8_t> sinks_ignored(MaskSpec s) {
  s.sink_tokens = 0;
  return ref::build_keep_mask(s);
}

// One sink key too many (a sink count taken as the last sink's index).
std::vector<std::uint8_t> sinks_off_by_one(MaskSpec s) {
  if (s.sink_tokens > 0) ++s.sink_tokens;
  return ref::build_keep_mask(s);
}

// Sinks at the first sink_tokens padded key positions instead of the segment's first keys:
// left-padded sequences and every document after the first lose them (and a left-padded
// sequence would read padding if nothing else masked it).
std::vector<std::uint8_t> sinks_absolute_position(MaskSpec s) {
  const std::int64_t S = s.sink_tokens;
  return sinks_variant(s, [S](const QuerySegment&, KeyRange keys, KeyRange wide) {
    if (keys.empty()) return KeyRange{};
    return KeyRange{wide.begin, std::min(wide.end, S)};
  });
}

// Sinks given to rows that see no key (a window past every key of a top-left aligned row):
// their output is no longer zero.
std::vector<std::uint8_t> sinks_on_empty_rows(MaskSpec s) {
  const std::int64_t S = s.sink_tokens;
  return sinks_variant(s, [S](const QuerySegment& seg, KeyRange, KeyRange wide) {
    return KeyRange{wide.begin, std::min(wide.end, seg.key0 + S)};
  });
}

// Sinks exempt from every clause, not just the window's left bound: early queries see sink
// keys in their future.
std::vector<std::uint8_t> sinks_past_causal(MaskSpec s) {
  const std::int64_t S = s.sink_tokens;
  return sinks_variant(s, [S](const QuerySegment& seg, KeyRange keys, KeyRange) {
    if (keys.empty()) return KeyRange{};
    return KeyRange{seg.key0, seg.key0 + std::min(S, seg.k_len)};
  });
}

// The window widened by sink_tokens keys on the left instead of keeping the segment's first
// keys (the sinks follow the window instead of staying at the start).
std::vector<std::uint8_t> sinks_widen_window(MaskSpec s) {
  const std::int64_t S = s.sink_tokens;
  return sinks_variant(s, [S](const QuerySegment&, KeyRange keys, KeyRange wide) {
    if (keys.empty()) return KeyRange{};
    return KeyRange{std::max(wide.begin, keys.begin - S), keys.begin};
  });
}

// Grouped-query attention reading kv head h % Hkv instead of h / (H / Hkv).
class GqaHeadModulo : public Named {
 public:
  using Named::Named;
  AttentionResult attention(const AttentionProblem& p, DType t, std::span<const double> q,
                            std::span<const double> k, std::span<const double> v,
                            bool want_lse) const override {
    p.validate();
    AttentionProblem mha = p;
    mha.Hkv = p.H;
    const std::int64_t rows = p.mask.Lk * p.D;
    std::vector<double> km(static_cast<std::size_t>(mha.kv_numel())), vm(km.size());
    for (std::int64_t b = 0; b < p.mask.B; ++b)
      for (std::int64_t h = 0; h < p.H; ++h) {
        const std::int64_t from = (b * p.Hkv + h % p.Hkv) * rows, to = (b * p.H + h) * rows;
        std::copy_n(k.begin() + from, rows, km.begin() + to);
        std::copy_n(v.begin() + from, rows, vm.begin() + to);
      }
    return ReferenceImplementation::attention(mha, t, q, km, vm, want_lse);
  }
};

// Log-sum-exp of a row with no visible key computed as m + log(sum) with m = -inf and the sum
// of exp(-inf - -inf): NaN, where the output row itself is guarded to zero.
class NanLseOnEmptyRows : public Named {
 public:
  using Named::Named;
  AttentionResult attention(const AttentionProblem& p, DType t, std::span<const double> q,
                            std::span<const double> k, std::span<const double> v,
                            bool want_lse) const override {
    AttentionResult r = ReferenceImplementation::attention(p, t, q, k, v, want_lse);
    if (!want_lse) return r;
    const FlatMask flat(p.mask);
    for (std::int64_t b = 0; b < p.mask.B; ++b)
      for (std::int64_t i = 0; i < p.mask.Lq; ++i)
        if (visible_keys(flat.view(), b, i).empty())
          for (std::int64_t h = 0; h < p.H; ++h)
            r.lse[(b * p.H + h) * p.mask.Lq + i] = std::numeric_limits<double>::quiet_NaN();
    return r;
  }
};

}  // namespace

void add_attention_mutants(std::vector<Mutant>& out) {
  const Op op = Op::attention;
  out.push_back(entry<MaskBug>(op, "causal diagonal off by one", "causal-off-by-one",
                               "the causal diagonal is off by one: k <= q + offset + 1",
                               causal_off_by_one));
  out.push_back(entry<MaskBug>(
      op, "padding mask applied to queries instead of keys", "padding-on-queries",
      "the key-padding mask is applied to the queries instead of the keys", padding_on_queries));
  out.push_back(entry<MaskBug>(
      op, "top-left vs bottom-right confusion when Lq != Lk", "top-left-causal",
      "causal and window always top-left aligned (is_causal=True)", top_left_always));
  out.push_back(entry<MaskBug>(
      op, "alignment chosen by the sign of Lk - Lq", "alignment-by-sign",
      "causal and window top-left aligned on segments with more keys than queries, bottom-right "
      "on the others: each case may pass for is_causal's top-left convention, the run does not",
      alignment_by_sign));
  out.push_back(entry<MaskBug>(op, "sliding window off by one", "window-off-by-one",
                               "the window's left edge admits one key too many: "
                               "diag - left - 1 <= k",
                               window_off_by_one));
  out.push_back(entry<MaskBug>(op, "key lengths off by one", "seqlen-k-off-by-one",
                               "key lengths are taken one too long (cu_seqlens_k from len + 1): "
                               "one padded key becomes visible and the bottom-right diagonal moves",
                               seqlen_k_off_by_one));
  out.push_back(entry<MaskBug>(op, "left padding treated as right padding", "left-padding-as-right",
                               "the valid tokens are assumed to start at position 0 whatever the "
                               "padding side",
                               left_padding_as_right));
  out.push_back(entry<MaskBug>(op, "packed documents leak across boundaries", "documents-leak",
                               "cu_seqlens are ignored: a packed row is masked as one sequence, "
                               "so a document attends to the documents packed before it",
                               documents_ignored));
  out.push_back(entry<MaskBug>(op, "prefix-LM prefix ignored", "prefix-ignored",
                               "prefix_lens are ignored: queries in the prefix are causal instead "
                               "of seeing the whole prefix",
                               prefix_ignored));
  out.push_back(entry<MaskBug>(op, "prefix-LM prefix off by one", "prefix-off-by-one",
                               "the prefix is one key too long: P_b + 1 keys are bidirectional",
                               prefix_off_by_one));
  out.push_back(entry<MaskBug>(op, "chunked attention ignored", "chunk-ignored",
                               "the chunk clause is dropped: chunked layers attend globally",
                               chunk_ignored));
  out.push_back(entry<MaskBug>(op, "chunk length off by one", "chunk-off-by-one",
                               "chunks are one key too long: boundaries drift by one per chunk",
                               chunk_off_by_one));
  out.push_back(entry<MaskBug>(
      op, "chunk of the query's position instead of its diagonal", "chunk-query-position",
      "a query's chunk is that of its own index (top-left) where bottom-right alignment puts it "
      "at its diagonal: with more keys than queries it attends into an earlier chunk",
      chunk_from_query_position));
  out.push_back(entry<MaskBug>(op, "attention sinks ignored", "sinks-ignored",
                               "the sink tokens are dropped: a sliding window loses them",
                               sinks_ignored));
  out.push_back(entry<MaskBug>(op, "one sink token too many", "sinks-off-by-one",
                               "sink_tokens + 1 keys at each segment's start stay visible",
                               sinks_off_by_one));
  out.push_back(entry<MaskBug>(
      op, "sinks at padded positions", "sinks-absolute-position",
      "the sinks are the first padded key positions, not each segment's first keys: left "
      "padding and later documents lose them",
      sinks_absolute_position));
  out.push_back(entry<MaskBug>(op, "sinks on rows without keys", "sinks-on-empty-rows",
                               "rows that see no key (a window past every key) still see the "
                               "sinks and output a nonzero row",
                               sinks_on_empty_rows));
  out.push_back(entry<MaskBug>(op, "sinks past the causal diagonal", "sinks-past-causal",
                               "sinks are exempt from every clause: early queries see sink keys "
                               "in their future",
                               sinks_past_causal));
  out.push_back(entry<MaskBug>(op, "window widened instead of sinks", "sinks-widen-window",
                               "the window is widened by sink_tokens keys on the left instead of "
                               "keeping each segment's first keys",
                               sinks_widen_window));
  out.push_back(
      entry<GqaHeadModulo>(op, "GQA head mapping wrong", "gqa-head-modulo",
                           "query head h reads kv head h % Hkv instead of h / (H / Hkv)"));
  out.push_back(entry<NanLseOnEmptyRows>(
      op, "NaN log-sum-exp on rows with no visible key", "nan-lse-empty-rows",
      "a row with no visible key gets a zero output but log-sum-exp m + log(sum) with m = -inf "
      "and sum = exp(-inf - (-inf)) = NaN"));
}

}  // namespace maskcheck::mutants
