// Properties of mask construction and conversion.
#include <rapidcheck.h>

#include <algorithm>
#include <string>

#include "maskcheck/reference/masks.hpp"
#include "maskcheck/reference/predicate.hpp"
#include "maskcheck/suite/properties.hpp"

namespace maskcheck {
namespace {

std::vector<double> ref_mask(const MaskSpec& spec, MaskEncoding e, DType t) {
  return ref::encode_mask(ref::build_keep_mask(spec), e, t);
}

// Draws a case the implementation supports, or returns false after tagging the skip.
bool draw(const Implementation& impl, const CaseLimits& lim, MaskCase& c) {
  c = *gen_mask_case(lim).as("case");
  if (!supported(impl.supports_masks(c.spec, c.encoding, c.dtype))) return false;
  tag_case(c.spec, c.dtype);
  return true;
}

// The spec of one document of sequence b, run alone: no padding, no other documents.
MaskSpec document_alone(const MaskSpec& m, std::int64_t b, std::size_t d) {
  MaskSpec s;
  s.B = 1;
  s.Lq = m.cu_seqlens_q[b][d + 1] - m.cu_seqlens_q[b][d];
  s.Lk = m.cu_seqlens_k[b][d + 1] - m.cu_seqlens_k[b][d];
  s.causal = m.causal;
  s.window = m.window;
  s.alignment = m.alignment;
  if (!m.prefix_lens.empty()) s.prefix_lens = {m.prefix_lens[b]};  // per segment, like chunks
  s.chunk = m.chunk;
  s.sink_tokens = m.sink_tokens;  // (per segment too)
  return s;
}

}  // namespace

void add_mask_properties(std::vector<Property>& out) {
  out.push_back({"masks.agreesWithReference", Op::masks,
                 "the mask built from a spec equals the reference bit for bit, in every encoding",
                 [](const Implementation& impl, const CaseLimits& lim) {
                   MaskCase c;
                   if (!draw(impl, lim, c)) return;
                   const auto got = impl.build_mask(c.spec, c.encoding, c.dtype);
                   expect(check_exact("mask", mask_shape(c.spec), got,
                                      ref_mask(c.spec, c.encoding, c.dtype)));
                 }});

  out.push_back({"masks.encodingsAgreeAfterConversion", Op::masks,
                 "keep, masked-out, additive -inf / lowest / -1e4 / -1e9 masks convert into each "
                 "other exactly",
                 [](const Implementation& impl, const CaseLimits& lim) {
                   MaskCase c;
                   if (!draw(impl, lim, c)) return;
                   const auto keep = ref::build_keep_mask(c.spec);
                   for (MaskEncoding to : kAllMaskEncodings) {
                     const auto from_values = ref::encode_mask(keep, c.encoding, c.dtype);
                     const auto got = impl.convert_mask(from_values, c.encoding, to, c.dtype);
                     expect(check_exact(
                         std::string(to_string(c.encoding)) + "->" + std::string(to_string(to)),
                         mask_shape(c.spec), got, ref::encode_mask(keep, to, c.dtype)));
                   }
                 }});

  out.push_back({"masks.causalIsUnboundedLeftWindow", Op::masks,
                 "causal equals the window (unbounded, 0) under the same alignment",
                 [](const Implementation& impl, const CaseLimits& lim) {
                   MaskCase c;
                   if (!draw(impl, lim, c)) return;
                   MaskSpec causal = c.spec, window = c.spec;
                   causal.causal = true;
                   window.causal = false;
                   causal.prefix_lens.clear();  // prefix-LM relaxes causal only, not the window
                   window.prefix_lens.clear();
                   Window w = c.spec.window.value_or(Window{});
                   w.right = std::min<std::int64_t>(w.right, 0);
                   window.window = w;
                   expect(check_exact("mask", mask_shape(c.spec),
                                      impl.build_mask(window, c.encoding, c.dtype),
                                      impl.build_mask(causal, c.encoding, c.dtype)));
                 }});

  out.push_back({"masks.wideWindowIsNoWindow", Op::masks,
                 "a window wider than Lq + Lk on both sides changes nothing",
                 [](const Implementation& impl, const CaseLimits& lim) {
                   MaskCase c;
                   if (!draw(impl, lim, c)) return;
                   MaskSpec wide = c.spec, none = c.spec;
                   none.window.reset();
                   wide.window = Window{c.spec.Lq + c.spec.Lk, c.spec.Lq + c.spec.Lk};
                   expect(check_exact("mask", mask_shape(c.spec),
                                      impl.build_mask(wide, c.encoding, c.dtype),
                                      impl.build_mask(none, c.encoding, c.dtype)));
                 }});

  out.push_back({"masks.paddingHelpersAgree", Op::masks,
                 "keep-from-lengths and last-valid-index match the padding clause of the predicate",
                 [](const Implementation& impl, const CaseLimits& lim) {
                   MaskCase c;
                   if (!draw(impl, lim, c)) return;
                   const MaskSpec& m = c.spec;
                   std::vector<std::int32_t> lens(m.B);
                   for (std::int64_t b = 0; b < m.B; ++b)
                     lens[b] = static_cast<std::int32_t>(m.k_len(b));
                   const auto keep = impl.keep_from_lengths(lens, m.Lk, m.padding);
                   std::vector<std::int64_t> got(keep.begin(), keep.end()), want(keep.size());
                   for (std::int64_t b = 0; b < m.B; ++b)
                     for (std::int64_t t = 0; t < m.Lk; ++t) {
                       const std::int64_t t0 = valid_begin(m.padding, m.Lk, lens[b]);
                       want[b * m.Lk + t] = t >= t0 && t < t0 + lens[b];
                     }
                   expect(check_exact("keep", tokens_shape(m.B, m.Lk), got, want));
                   const auto last = impl.last_valid_index(lens, m.Lk, m.padding);
                   std::vector<std::int64_t> want_last(m.B, -1);
                   for (std::int64_t b = 0; b < m.B; ++b)
                     for (std::int64_t t = 0; t < m.Lk; ++t)
                       if (want[b * m.Lk + t]) want_last[b] = t;
                   expect(check_exact("last_valid_index", rows_shape(m.B), last, want_last));
                 }});

  out.push_back(
      {"masks.leftPaddingIsShiftedRightPadding", Op::masks,
       "the left-padded mask is the right-padded mask shifted by the padding, masked elsewhere",
       [](const Implementation& impl, const CaseLimits& lim) {
         MaskCase c;
         if (!draw(impl, lim, c)) return;
         MaskSpec right = c.spec, left = c.spec;
         right.padding = PaddingSide::right;
         left.padding = PaddingSide::left;
         const auto r = impl.build_mask(right, MaskEncoding::keep, c.dtype);
         const auto l = impl.build_mask(left, MaskEncoding::keep, c.dtype);
         const MaskSpec& m = c.spec;
         std::vector<double> shifted(r.size(), 0.0);
         for (std::int64_t b = 0; b < m.B; ++b) {
           const std::int64_t dq = m.Lq - m.q_len(b), dk = m.Lk - m.k_len(b);
           for (std::int64_t q = 0; q < m.q_len(b); ++q)
             for (std::int64_t k = 0; k < m.k_len(b); ++k)
               shifted[(b * m.Lq + q + dq) * m.Lk + k + dk] = r[(b * m.Lq + q) * m.Lk + k];
         }
         expect(check_exact("left-padded mask", mask_shape(m), l, shifted));
       }});

  out.push_back(
      {"masks.prefixLmIsBidirectionalPrefixThenCausal", Op::masks,
       "prefix-LM: a row whose diagonal lies in the prefix equals the bidirectional mask of the "
       "prefix keys, every other row the plain causal mask",
       [](const Implementation& impl, const CaseLimits& lim) {
         MaskCase c;
         if (!draw(impl, lim, c)) return;
         const PrefixSplit s = prefix_split(c.spec, draw_prefix_lens(c.spec));
         if (!supported(impl.supports_masks(s.prefix, c.encoding, c.dtype))) return;
         const auto got = impl.build_mask(s.prefix, c.encoding, c.dtype);
         const auto causal = impl.build_mask(s.causal, c.encoding, c.dtype);
         const auto bidirectional = impl.build_mask(s.bidirectional, c.encoding, c.dtype);
         auto want = causal;
         const std::int64_t Lk = s.prefix.Lk;
         for (std::int64_t b = 0; b < s.prefix.B; ++b)
           for (std::int64_t q = 0; q < s.prefix.Lq; ++q)
             if (s.in_prefix(b, q)) {
               const std::int64_t row = (b * s.prefix.Lq + q) * Lk;
               std::copy(bidirectional.begin() + row, bidirectional.begin() + row + Lk,
                         want.begin() + row);
             }
         expect(check_exact("mask", mask_shape(s.prefix), got, want));
       }});

  out.push_back({"masks.chunkedEqualsDocuments", Op::masks,
                 "chunked self-attention's mask equals the mask of documents of the chunk's "
                 "length",
                 [](const Implementation& impl, const CaseLimits& lim) {
                   MaskCase c;
                   if (!draw(impl, lim, c)) return;
                   const auto s = chunk_split(c.spec, draw_chunk(c.spec));
                   if (!s) return;  // Lq != Lk
                   if (!supported(impl.supports_masks(s->chunked, c.encoding, c.dtype))) return;
                   expect(check_exact("mask", mask_shape(s->chunked),
                                      impl.build_mask(s->chunked, c.encoding, c.dtype),
                                      impl.build_mask(s->documents, c.encoding, c.dtype)));
                 }});

  out.push_back(
      {"masks.sinksAreTheWindowPlusTheSegmentsFirstKeys", Op::masks,
       "attention sinks: each row that sees a key without sinks sees, with them, also each of "
       "the first S keys of its segment that it would see without the window's left bound; rows "
       "that see nothing still see nothing (three masks of the implementation, combined)",
       [](const Implementation& impl, const CaseLimits& lim) {
         MaskCase c;
         if (!draw(impl, lim, c)) return;
         const MaskSpec m = with_sinks(c.spec);
         MaskSpec plain = m, wide = m;
         plain.sink_tokens = 0;
         wide.sink_tokens = 0;
         wide.window->left = kUnbounded;
         for (const MaskSpec* s : std::initializer_list<const MaskSpec*>{&m, &plain, &wide})
           if (!supported(impl.supports_masks(*s, MaskEncoding::keep, c.dtype))) return;
         const auto got = impl.build_mask(m, MaskEncoding::keep, c.dtype);
         auto want = impl.build_mask(plain, MaskEncoding::keep, c.dtype);
         const auto wide_keep = impl.build_mask(wide, MaskEncoding::keep, c.dtype);
         const auto first = segment_first_keys(m, m.sink_tokens);
         for (std::int64_t b = 0; b < m.B; ++b)
           for (std::int64_t q = 0; q < m.Lq; ++q) {
             const auto row = want.begin() + (b * m.Lq + q) * m.Lk;
             if (std::none_of(row, row + m.Lk, [](double x) { return x != 0; })) continue;
             for (std::int64_t k = 0; k < m.Lk; ++k)
               if (first[b * m.Lk + k] && wide_keep[(b * m.Lq + q) * m.Lk + k] != 0) row[k] = 1;
           }
         expect(check_exact("mask (sink_tokens=" + std::to_string(m.sink_tokens) + ")",
                            mask_shape(m), got, want));
       }});

  out.push_back(
      {"masks.documentsAreBlockDiagonal", Op::masks,
       "with packed documents each diagonal block is that document's own mask, the rest masked",
       [](const Implementation& impl, const CaseLimits& lim) {
         MaskCase c;
         if (!draw(impl, lim, c)) return;
         const MaskSpec& m = c.spec;
         if (!m.has_documents()) return;
         const auto got = impl.build_mask(m, MaskEncoding::keep, c.dtype);
         std::vector<double> want(got.size(), 0.0);
         for (std::int64_t b = 0; b < m.B; ++b) {
           const std::int64_t q0 = valid_begin(m.padding, m.Lq, m.q_len(b));
           const std::int64_t k0 = valid_begin(m.padding, m.Lk, m.k_len(b));
           for (std::size_t d = 0; d + 1 < m.cu_seqlens_q[b].size(); ++d) {
             const MaskSpec alone = document_alone(m, b, d);
             const auto block = impl.build_mask(alone, MaskEncoding::keep, c.dtype);
             for (std::int64_t q = 0; q < alone.Lq; ++q)
               for (std::int64_t k = 0; k < alone.Lk; ++k)
                 want[(b * m.Lq + q0 + m.cu_seqlens_q[b][d] + q) * m.Lk + k0 +
                      m.cu_seqlens_k[b][d] + k] = block[q * alone.Lk + k];
           }
         }
         expect(check_exact("mask", mask_shape(m), got, want));
       }});
}

}  // namespace maskcheck
