// Unit tests of the reference: storage formats, Philox, the predicate against an independent
// clause-by-clause formulation, validation messages, and hand-computed results of each operation.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <span>
#include <string>

#include "maskcheck/reference/reference.hpp"
#include "maskcheck/suite/generators.hpp"

namespace mc = maskcheck;

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// ---- storage formats ---------------------------------------------------------------------

TEST(DType, halfEncodesKnownBitPatterns) {
  EXPECT_EQ(mc::half(1.0).bits, 0x3C00);
  EXPECT_EQ(mc::half(-2.0).bits, 0xC000);
  EXPECT_EQ(mc::half(65504.0).bits, 0x7BFF);
  EXPECT_EQ(mc::half(65519.0).bits, 0x7BFF);  // below the halfway point to 65536
  EXPECT_EQ(mc::half(65520.0).bits, 0x7C00);  // halfway rounds to even: infinity
  EXPECT_EQ(mc::half(-1e9).bits, 0xFC00);
  EXPECT_EQ(mc::half(std::ldexp(1.0, -24)).bits, 0x0001);      // smallest subnormal
  EXPECT_EQ(mc::half(std::ldexp(1.0, -25)).bits, 0x0000);      // tie between 0 and 1 quantum: even
  EXPECT_EQ(mc::half(3 * std::ldexp(1.0, -25)).bits, 0x0002);  // tie between 1 and 2: even
  EXPECT_EQ(mc::half(1.0 + std::ldexp(1.0, -11)).bits, 0x3C00);      // tie: even
  EXPECT_EQ(mc::half(1.0 + 3 * std::ldexp(1.0, -11)).bits, 0x3C02);  // tie: even
  EXPECT_TRUE(std::isnan(static_cast<double>(mc::half(std::nan("")))));
  EXPECT_EQ(static_cast<double>(mc::half::from_bits(0x7BFF)), 65504.0);
  EXPECT_EQ(static_cast<double>(mc::half::from_bits(0x0001)), std::ldexp(1.0, -24));
}

TEST(DType, bfloat16EncodesKnownBitPatterns) {
  EXPECT_EQ(mc::bfloat16(1.0).bits, 0x3F80);
  EXPECT_EQ(mc::bfloat16(1.0 + std::ldexp(1.0, -8)).bits, 0x3F80);      // tie: even
  EXPECT_EQ(mc::bfloat16(1.0 + 3 * std::ldexp(1.0, -8)).bits, 0x3F82);  // tie: even
  EXPECT_EQ(mc::bfloat16(-1e9).bits, 0xCE6E);
  EXPECT_EQ(mc::bfloat16(3.5e38).bits, 0x7F80);  // past the largest finite value: infinity
  EXPECT_EQ(static_cast<double>(mc::bfloat16::from_bits(0x7F7F)), mc::max_finite(mc::DType::bf16));
}

TEST(DType, roundTripsEveryHalfAndBfloat16Value) {
  for (std::uint32_t b = 0; b < 0x10000; ++b) {
    const auto h = mc::half::from_bits(static_cast<std::uint16_t>(b));
    const double x = static_cast<double>(h);
    if (!std::isnan(x)) {
      ASSERT_EQ(mc::half(x).bits, b);
      ASSERT_EQ(static_cast<double>(mc::half(static_cast<float>(x))), x);
    }
    const auto bf = mc::bfloat16::from_bits(static_cast<std::uint16_t>(b));
    const double y = static_cast<double>(bf);
    if (!std::isnan(y)) {
      ASSERT_EQ(mc::bfloat16(y).bits, b);
      float f = static_cast<float>(y);
      std::uint32_t fb;
      std::memcpy(&fb, &f, 4);
      ASSERT_EQ(fb >> 16, b);  // bfloat16 is the top half of an fp32
    }
  }
}

TEST(DType, parsesNamesAndRejectsOthers) {
  EXPECT_EQ(mc::dtype_from_string("bf16"), mc::DType::bf16);
  EXPECT_EQ(mc::dtype_from_string("float16"), mc::DType::f16);
  EXPECT_THROW(mc::dtype_from_string("f8"), mc::InvalidArgument);
}

// ---- Philox4x32-10: the Random123 known-answer vectors -----------------------------------

TEST(Philox, matchesRandom123KnownAnswers) {
  auto check = [](mc::U32x4 ctr, std::uint32_t k0, std::uint32_t k1, mc::U32x4 want) {
    const mc::U32x4 got = mc::philox4x32_10(ctr, k0, k1);
    EXPECT_EQ(got.x, want.x);
    EXPECT_EQ(got.y, want.y);
    EXPECT_EQ(got.z, want.z);
    EXPECT_EQ(got.w, want.w);
  };
  check({0, 0, 0, 0}, 0, 0, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8});
  check({0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, 0xffffffff, 0xffffffff,
        {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd});
  check({0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, 0xa4093822, 0x299f31d0,
        {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1});
}

TEST(Philox, thresholdsAndUniformToken) {
  EXPECT_EQ(mc::probability_threshold(0.0), 0u);
  EXPECT_EQ(mc::probability_threshold(1.0), std::uint64_t{1} << 32);
  EXPECT_EQ(mc::probability_threshold(0.5), std::uint64_t{1} << 31);
  EXPECT_EQ(mc::uniform_token(0, 10), 0);
  EXPECT_EQ(mc::uniform_token(0xffffffffu, 10), 9);
}

// ---- the predicate against the clauses written out literally -----------------------------

// Document index of position i (relative to the valid start) under cu, by linear scan; the
// last document starting at or before i, so empty documents are skipped.
std::int64_t doc_of(const std::vector<std::int32_t>& cu, std::int64_t i) {
  std::int64_t d = 0;
  for (std::size_t j = 0; j + 1 < cu.size(); ++j)
    if (cu[j] <= i) d = static_cast<std::int64_t>(j);
  return d;
}

// The clauses but the sinks; with `no_left`, without the window's left bound. *seg_k receives
// the key's position in its segment.
bool textbook_clauses(const mc::MaskSpec& m, std::int64_t b, std::int64_t q, std::int64_t k,
                      bool no_left, std::int64_t* seg_k) {
  const std::int64_t ql = m.q_len(b), kl = m.k_len(b);
  const std::int64_t q0 = m.padding == mc::PaddingSide::left ? m.Lq - ql : 0;
  const std::int64_t k0 = m.padding == mc::PaddingSide::left ? m.Lk - kl : 0;
  if (!(q0 <= q && q < q0 + ql)) return false;  // padded query
  if (!(k0 <= k && k < k0 + kl)) return false;  // padded key
  std::int64_t qi = q - q0, ki = k - k0, sq = ql, sk = kl;
  if (m.has_documents()) {
    const auto& cq = m.cu_seqlens_q[b];
    const auto& ck = m.cu_seqlens_k[b];
    const std::int64_t dq = doc_of(cq, qi);
    if (ki < ck[dq] || ki >= ck[dq + 1]) return false;  // another document
    qi -= cq[dq];
    ki -= ck[dq];
    sq = cq[dq + 1] - cq[dq];
    sk = ck[dq + 1] - ck[dq];
  }
  const std::int64_t offset = m.alignment == mc::Alignment::bottom_right ? sk - sq : 0;
  const std::int64_t prefix = m.prefix_lens.empty() ? 0 : m.prefix_lens[b];
  *seg_k = ki;
  if (m.causal && ki > qi + offset && ki >= prefix) return false;  // the prefix is bidirectional
  if (m.window) {
    if (!no_left && m.window->left != mc::kUnbounded && ki < qi + offset - m.window->left)
      return false;
    if (m.window->right != mc::kUnbounded && ki > qi + offset + m.window->right) return false;
  }
  if (m.chunk > 0) {  // the same chunk as the diagonal: floor division, negative diagonals too
    const auto chunk_of = [&](std::int64_t i) {
      return static_cast<std::int64_t>(std::floor(static_cast<double>(i) / m.chunk));
    };
    if (chunk_of(ki) != chunk_of(qi + offset)) return false;
  }
  return true;
}

// Attention sinks: a row that sees some key also sees the first sink_tokens keys of its segment
// that pass every clause but the window's left bound.
bool textbook_visible(const mc::MaskSpec& m, std::int64_t b, std::int64_t q, std::int64_t k) {
  std::int64_t ki = 0;
  if (textbook_clauses(m, b, q, k, false, &ki)) return true;
  if (m.sink_tokens == 0 || !textbook_clauses(m, b, q, k, true, &ki) || ki >= m.sink_tokens)
    return false;
  for (std::int64_t j = 0; j < m.Lk; ++j)
    if (textbook_clauses(m, b, q, j, false, &ki)) return true;
  return false;
}

RC_GTEST_PROP(Predicate, agreesWithTheClausesWrittenOut, (const mc::MaskSpec& m)) {
  const mc::FlatMask flat(m);
  const mc::MaskView v = flat.view();
  for (std::int64_t b = 0; b < m.B; ++b)
    for (std::int64_t q = 0; q < m.Lq; ++q)
      for (std::int64_t k = 0; k < m.Lk; ++k)
        RC_ASSERT(mc::visible(v, b, q, k) == textbook_visible(m, b, q, k));
}

RC_GTEST_PROP(Predicate, tileHelpersAgreeWithElementwisePredicate, (const mc::MaskSpec& m)) {
  const mc::FlatMask flat(m);
  const mc::MaskView v = flat.view();
  const std::int64_t tq = *rc::gen::inRange<std::int64_t>(1, 20),
                     tk = *rc::gen::inRange<std::int64_t>(1, 20);
  for (std::int64_t b = 0; b < m.B; ++b)
    for (std::int64_t q0 = 0; q0 < m.Lq; q0 += tq) {
      const std::int64_t q1 = std::min(m.Lq, q0 + tq);
      const mc::KeyRange span = mc::tile_key_span(v, b, q0, q1);
      for (std::int64_t k0 = 0; k0 < m.Lk; k0 += tk) {
        const std::int64_t k1 = std::min(m.Lk, k0 + tk);
        bool all = true;
        for (std::int64_t q = q0; q < q1; ++q)
          for (std::int64_t k = k0; k < k1; ++k) {
            const bool vis = mc::visible(v, b, q, k);
            all = all && vis;
            if (vis) RC_ASSERT(span.contains(k));  // the span holds every visible key
          }
        // Exact with one interval per row; with attention sinks apart from the window the
        // common interval leaves the sinks out (a per-element test where none was needed).
        if (m.sink_tokens == 0) {
          RC_ASSERT(mc::tile_fully_visible(v, b, q0, q1, k0, k1) == all);
        } else {
          RC_ASSERT(!mc::tile_fully_visible(v, b, q0, q1, k0, k1) || all);
        }
      }
    }
}

TEST(Predicate, bottomRightAndTopLeftDifferWhenLqNotLk) {
  mc::MaskSpec m;
  m.Lq = 2;
  m.Lk = 4;
  m.causal = true;
  const mc::FlatMask br(m);
  EXPECT_EQ(mc::visible_keys(br.view(), 0, 0).end, 3);  // the last query sees the last key
  EXPECT_EQ(mc::visible_keys(br.view(), 0, 1).end, 4);
  m.alignment = mc::Alignment::top_left;
  const mc::FlatMask tl(m);
  EXPECT_EQ(mc::visible_keys(tl.view(), 0, 0).end, 1);
  // Lq > Lk bottom-right: the first Lq - Lk queries see nothing.
  mc::MaskSpec n;
  n.Lq = 4;
  n.Lk = 2;
  n.causal = true;
  const mc::FlatMask nm(n);
  EXPECT_TRUE(mc::visible_keys(nm.view(), 0, 0).empty());
  EXPECT_TRUE(mc::visible_keys(nm.view(), 0, 1).empty());
  EXPECT_EQ(mc::visible_keys(nm.view(), 0, 2).size(), 1);
}

TEST(Predicate, attentionSinksOnHandDrawnMasks) {
  // StreamingLLM over 8 keys: causal, a window of 2 keys back, 2 sinks.
  mc::MaskSpec m;
  m.Lq = m.Lk = 8;
  m.causal = true;
  m.window = mc::Window{2, mc::kUnbounded};
  m.sink_tokens = 2;
  const mc::FlatMask f(m);
  auto keys = [&](const mc::FlatMask& fm, std::int64_t q) { return mc::row_keys(fm.view(), 0, q); };
  // Row 0 sees key 0 (the sinks are causal too): one interval.
  EXPECT_EQ(keys(f, 0).keys.begin, 0);
  EXPECT_EQ(keys(f, 0).keys.end, 1);
  EXPECT_TRUE(keys(f, 0).sinks.empty());
  // Row 3: window [1, 4) touches the sinks [0, 2): merged into [0, 4).
  EXPECT_EQ(keys(f, 3).keys.begin, 0);
  EXPECT_EQ(keys(f, 3).keys.end, 4);
  EXPECT_TRUE(keys(f, 3).sinks.empty());
  // Row 6: sinks [0, 2), a gap, the window [4, 7).
  EXPECT_EQ(keys(f, 6).sinks.begin, 0);
  EXPECT_EQ(keys(f, 6).sinks.end, 2);
  EXPECT_EQ(keys(f, 6).keys.begin, 4);
  EXPECT_EQ(keys(f, 6).keys.end, 7);
  EXPECT_EQ(keys(f, 6).size(), 5);
  EXPECT_TRUE(mc::visible(f.view(), 0, 6, 1));
  EXPECT_FALSE(mc::visible(f.view(), 0, 6, 2));
  EXPECT_EQ(mc::visible_keys(f.view(), 0, 6).begin, 4);  // the interval alone
  // The tile of rows 6-7 skips keys [2, 4), the gap of both rows, and not [1, 3).
  const mc::TileBounds t = mc::tile_bounds(f.view(), 0, 6, 8);
  EXPECT_TRUE(t.skips(2, 4));
  EXPECT_FALSE(t.skips(1, 3));
  EXPECT_EQ(t.span.begin, 0);
  // Left padding: the sinks are the first valid keys, not padded positions.
  mc::MaskSpec l = m;
  l.q_lens = {6};
  l.k_lens = {6};
  l.padding = mc::PaddingSide::left;
  const mc::FlatMask fl(l);
  EXPECT_EQ(keys(fl, 7).sinks.begin, 2);
  EXPECT_EQ(keys(fl, 7).sinks.end, 4);
  // A row that sees no key sees no sink: top-left, 10 queries over 4 keys, window (1, 0).
  mc::MaskSpec e;
  e.Lq = 10;
  e.Lk = 4;
  e.alignment = mc::Alignment::top_left;
  e.window = mc::Window{1, 0};
  e.sink_tokens = 2;
  const mc::FlatMask fe(e);
  EXPECT_TRUE(keys(fe, 7).empty());
  EXPECT_TRUE(keys(fe, 7).sinks.empty());
  EXPECT_TRUE(keys(fe, 3).sinks.empty());  // diag 3: window [2, 4), sinks [0, 2) merged
  EXPECT_EQ(keys(fe, 3).keys.begin, 0);
  // Validation names the field.
  mc::MaskSpec bad = m;
  bad.sink_tokens = -1;
  EXPECT_THROW(bad.validate(), mc::InvalidArgument);
}

TEST(Predicate, prefixLmAndChunksOnHandDrawnMasks) {
  // Self-attention over 6 keys, causal, prefix of 3: rows 0-2 see keys 0-2, row q > 2 keys 0..q.
  mc::MaskSpec m;
  m.Lq = m.Lk = 6;
  m.causal = true;
  m.prefix_lens = {3};
  const mc::FlatMask pm(m);
  for (std::int64_t q = 0; q < 6; ++q) {
    const mc::KeyRange r = mc::visible_keys(pm.view(), 0, q);
    EXPECT_EQ(r.begin, 0) << q;
    EXPECT_EQ(r.end, std::max<std::int64_t>(q + 1, 3)) << q;
  }
  // Right padding to 4 valid tokens and a window of 1: the prefix still reaches key 2 from row 0,
  // the window cuts it off from row 3 (keys 2, 3).
  m.k_lens = m.q_lens = {4};
  m.window = mc::Window{1, mc::kUnbounded};
  const mc::FlatMask pw(m);
  EXPECT_EQ(mc::visible_keys(pw.view(), 0, 0).end, 3);
  EXPECT_EQ(mc::visible_keys(pw.view(), 0, 3).begin, 2);
  EXPECT_TRUE(mc::visible_keys(pw.view(), 0, 4).empty());  // padded

  // Chunks of 4 over 10 keys, 3 queries bottom-right: their diagonals are keys 7, 8, 9, all in
  // chunk [4, 8) or [8, 12); causal inside the chunk.
  mc::MaskSpec c;
  c.Lq = 3;
  c.Lk = 10;
  c.chunk = 4;
  c.causal = true;
  const mc::FlatMask cm(c);
  EXPECT_EQ(mc::visible_keys(cm.view(), 0, 0).begin, 4);
  EXPECT_EQ(mc::visible_keys(cm.view(), 0, 0).end, 8);
  EXPECT_EQ(mc::visible_keys(cm.view(), 0, 1).begin, 8);
  EXPECT_EQ(mc::visible_keys(cm.view(), 0, 1).end, 9);
  EXPECT_EQ(mc::visible_keys(cm.view(), 0, 2).end, 10);
  // Top-left: the queries' own positions 0, 1, 2 lie in chunk [0, 4).
  c.alignment = mc::Alignment::top_left;
  const mc::FlatMask ct(c);
  EXPECT_EQ(mc::visible_keys(ct.view(), 0, 2).begin, 0);
  EXPECT_EQ(mc::visible_keys(ct.view(), 0, 2).end, 3);
  // More queries than keys, no causal: the first query's diagonal is key -2, chunk [-4, 0):
  // nothing visible.
  mc::MaskSpec n;
  n.Lq = 5;
  n.Lk = 3;
  n.chunk = 2;
  const mc::FlatMask nm(n);
  EXPECT_TRUE(mc::visible_keys(nm.view(), 0, 0).empty());
  EXPECT_TRUE(mc::visible_keys(nm.view(), 0, 1).empty());
  EXPECT_EQ(mc::visible_keys(nm.view(), 0, 2).end, 2);  // diagonal 0: chunk [0, 2)
}

// ---- validation names the field and the value --------------------------------------------

template <class F>
std::string error_of(F f) {
  try {
    f();
  } catch (const mc::InvalidArgument& e) {
    return e.what();
  }
  return "no error";
}

TEST(Validation, badInputsNameTheFieldAndValue) {
  mc::MaskSpec m;
  m.B = 2;
  m.Lq = m.Lk = 8;
  m.k_lens = {3, 9};
  EXPECT_EQ(error_of([&] { m.validate(); }),
            "invalid argument: k_lens[1] = 9 (must be in [0, Lk=8])");
  m.k_lens = {3, -1};
  EXPECT_NE(error_of([&] { m.validate(); }).find("k_lens[1] = -1"), std::string::npos);
  m.k_lens = {3};
  EXPECT_NE(error_of([&] { m.validate(); }).find("k_lens.size() = 1"), std::string::npos);
  m.k_lens.clear();
  m.window = mc::Window{-1, 0};
  EXPECT_NE(error_of([&] { m.validate(); }).find("window.left = -1"), std::string::npos);
  m.window.reset();
  m.prefix_lens = {2, 2};
  EXPECT_NE(error_of([&] { m.validate(); }).find("needs causal"), std::string::npos);
  m.causal = true;
  m.prefix_lens = {2, -1};
  EXPECT_NE(error_of([&] { m.validate(); }).find("prefix_lens[1] = -1"), std::string::npos);
  m.prefix_lens = {2};
  EXPECT_NE(error_of([&] { m.validate(); }).find("prefix_lens.size() = 1"), std::string::npos);
  m.prefix_lens.clear();
  m.causal = false;
  m.chunk = -3;
  EXPECT_NE(error_of([&] { m.validate(); }).find("chunk = -3"), std::string::npos);
  m.chunk = 0;
  m.cu_seqlens_q = m.cu_seqlens_k = {{0, 5, 3, 8}, {0, 8}};
  EXPECT_NE(error_of([&] { m.validate(); }).find("cu_seqlens_q[0][2] = 3"), std::string::npos);
  m.cu_seqlens_q = m.cu_seqlens_k = {{0, 5, 7}, {0, 8}};
  EXPECT_NE(error_of([&] { m.validate(); }).find("cu_seqlens_q[0].back() = 7"), std::string::npos);

  mc::AttentionProblem a;
  a.mask.Lq = a.mask.Lk = 4;
  a.H = 6;
  a.Hkv = 4;
  EXPECT_NE(error_of([&] { a.validate(); }).find("H % Hkv = 2"), std::string::npos);

  mc::LossProblem l;
  l.N = 3;
  l.V = 5;
  const std::vector<std::int64_t> labels{1, -100, 5};
  EXPECT_EQ(error_of([&] { mc::validate_loss_inputs(l, labels, {}); }),
            "invalid argument: labels[2] = 5 (must be in [0, V=5) or ignore_index=-100)");
  const std::vector<std::int64_t> negative{1, -7, 2};
  EXPECT_NE(error_of([&] { mc::validate_loss_inputs(l, negative, {}); }).find("labels[1] = -7"),
            std::string::npos);
  const std::vector<float> x(15);
  EXPECT_NE(error_of([&] {
              mc::ref::cross_entropy<float, double>(l, std::span<const float>(x.data(), 14), labels,
                                                    {}, {});
            }).find("logits.size() = 14"),
            std::string::npos);
}

// ---- operations on hand-computed examples -------------------------------------------------

TEST(Masks, additiveEncodingsPerDtypeAndDecodingOfSums) {
  EXPECT_EQ(mc::masking_value(mc::MaskEncoding::additive_1e9, mc::DType::f16), -kInf);
  EXPECT_EQ(mc::masking_value(mc::MaskEncoding::additive_lowest, mc::DType::f16), -65504.0);
  EXPECT_EQ(mc::masking_value(mc::MaskEncoding::additive_1e4, mc::DType::bf16), -9984.0);
  // HF adds a padding mask and a causal mask: lowest + lowest overflows to -inf in fp16 and
  // still decodes as masked; a single lowest decodes as masked too.
  const std::vector<double> sums{0.0, -65504.0, -kInf};
  EXPECT_EQ(mc::ref::decode_mask(sums, mc::MaskEncoding::additive_lowest, mc::DType::f16),
            (std::vector<std::uint8_t>{1, 0, 0}));
  EXPECT_THROW(mc::ref::decode_mask(std::vector<double>{std::nan("")}, mc::MaskEncoding::keep,
                                    mc::DType::f32),
               mc::InvalidArgument);
}

TEST(Masks, lengthsRoundTripAndRejectNonPaddingRows) {
  const std::vector<std::int32_t> lengths{0, 2, 4};
  for (auto side : {mc::PaddingSide::right, mc::PaddingSide::left}) {
    const auto keep = mc::ref::keep_from_lengths(lengths, 4, side);
    EXPECT_EQ(mc::ref::lengths_from_keep(keep, 3, 4, side), lengths);
  }
  const std::vector<std::uint8_t> holes{1, 0, 1, 0};
  EXPECT_THROW(mc::ref::lengths_from_keep(holes, 1, 4, mc::PaddingSide::right),
               mc::InvalidArgument);
  EXPECT_EQ(mc::ref::keep_from_ids(std::vector<std::int64_t>{5, 2, 0, 0}, 0),
            (std::vector<std::uint8_t>{1, 1, 0, 0}));
}

TEST(Masks, packUnpackRoundTrip) {
  const std::vector<std::int32_t> lengths{2, 0, 3};
  std::vector<double> padded(3 * 3 * 2);
  for (std::size_t i = 0; i < padded.size(); ++i) padded[i] = static_cast<double>(i);
  for (auto side : {mc::PaddingSide::right, mc::PaddingSide::left}) {
    const auto packed = mc::ref::pack(padded, lengths, 3, 2, side);
    EXPECT_EQ(packed.cu_seqlens, (std::vector<std::int32_t>{0, 2, 2, 5}));
    const auto back = mc::ref::unpack(packed.values, packed.cu_seqlens, 3, 2, side, -1.0);
    const auto keep = mc::ref::keep_from_lengths(lengths, 3, side);
    for (std::size_t i = 0; i < back.size(); ++i)
      EXPECT_EQ(back[i], keep[i / 2] ? padded[i] : -1.0) << i;
  }
}

TEST(Softmax, equalScoresGiveUniformRowsAndEmptyRowsZero) {
  mc::SoftmaxProblem p;
  p.mask.Lq = 2;
  p.mask.Lk = 4;
  p.mask.q_lens = {1};
  p.mask.k_lens = {3};
  const std::vector<double> x(8, 2.5);
  std::vector<double> y(8);
  mc::ref::masked_softmax<double, double>(p, x, y);
  EXPECT_EQ(y, (std::vector<double>{1 / 3., 1 / 3., 1 / 3., 0, 0, 0, 0, 0}));
}

// Split-KV: attention over chunks of the keys, each run alone, merged by log-sum-exp, equals
// attention over all of them, empty chunks (lse -inf) included; all chunks empty: an empty row.
TEST(Attention, splitKvPartialsMergeToTheUnsplitRow) {
  std::mt19937 gen(5);
  std::normal_distribution<double> n(0, 1);
  mc::AttentionProblem p;
  p.mask.Lq = 3;
  p.mask.Lk = 10;
  p.D = 4;
  p.scale = 0.7;
  std::vector<double> q(p.q_numel()), k(p.kv_numel()), v(p.kv_numel());
  for (auto* x : {&q, &k, &v})
    for (auto& e : *x) e = 3 * n(gen);
  std::vector<double> out(p.q_numel()), lse(p.lse_numel());
  mc::ref::attention_forward<double, double>(p, q, k, v, out, lse);

  const std::vector<std::pair<std::int64_t, std::int64_t>> chunks{{0, 0}, {0, 4}, {4, 4}, {4, 10}};
  const std::int64_t C = static_cast<std::int64_t>(chunks.size()), D = p.D;
  std::vector<double> outs(static_cast<std::size_t>(p.mask.Lq * C * D)),
      lses(static_cast<std::size_t>(p.mask.Lq * C));
  for (std::int64_t c = 0; c < C; ++c) {
    mc::AttentionProblem part = p;
    part.mask.Lk = chunks[c].second - chunks[c].first;
    const std::vector<double> kc(k.begin() + chunks[c].first * D, k.begin() + chunks[c].second * D),
        vc(v.begin() + chunks[c].first * D, v.begin() + chunks[c].second * D);
    std::vector<double> oc(part.q_numel()), lc(part.lse_numel());
    mc::ref::attention_forward<double, double>(part, q, kc, vc, oc, lc);
    for (std::int64_t i = 0; i < p.mask.Lq; ++i) {
      std::copy_n(oc.begin() + i * D, D, outs.begin() + (i * C + c) * D);
      lses[i * C + c] = lc[i];
    }
  }
  for (std::int64_t i = 0; i < p.mask.Lq; ++i) {
    std::vector<double> merged(static_cast<std::size_t>(D));
    double merged_lse = 0;
    mc::ref::merge_partials<double>(std::span<const double>(outs).subspan(i * C * D, C * D),
                                    std::span<const double>(lses).subspan(i * C, C), merged,
                                    merged_lse);
    EXPECT_NEAR(merged_lse, lse[i], 1e-12) << i;
    for (std::int64_t d = 0; d < D; ++d) EXPECT_NEAR(merged[d], out[i * D + d], 1e-12) << i;
  }

  // Every chunk empty: zeros and -inf, not exp(-inf - -inf) = NaN.
  const std::vector<double> none_out(2 * 3, 0.0), none_lse(2, -kInf);
  std::vector<double> merged(3, 7.0);
  double merged_lse = 0;
  mc::ref::merge_partials<double>(none_out, none_lse, merged, merged_lse);
  EXPECT_EQ(merged_lse, -kInf);
  EXPECT_EQ(merged, (std::vector<double>{0.0, 0.0, 0.0}));
}

TEST(Attention, averagesVisibleValuesAndEmptyRowsAreZeroWithLseMinusInf) {
  mc::AttentionProblem p;
  p.mask.Lq = 2;
  p.mask.Lk = 3;
  p.mask.causal = true;
  p.mask.alignment = mc::Alignment::top_left;
  p.D = 1;
  p.mask.Lq = 3;
  p.mask.q_lens = {2};  // the third query is padding
  const std::vector<double> q(3, 0.0), k(3, 0.0), v{1.0, 2.0, 4.0};
  std::vector<double> out(3), lse(3);
  mc::ref::attention_forward<double, double>(p, q, k, v, out, lse);
  EXPECT_EQ(out, (std::vector<double>{1.0, 1.5, 0.0}));
  EXPECT_EQ(lse[0], 0.0);
  EXPECT_DOUBLE_EQ(lse[1], std::log(2.0));
  EXPECT_EQ(lse[2], -kInf);
}

// Score modifiers by hand: two keys with scores 0 and 2 (q = 1, k = {0, 2}, scale 1).
TEST(Attention, scoreModifiersByHand) {
  mc::AttentionProblem p;
  p.mask.Lq = 1;
  p.mask.Lk = 2;
  p.D = 1;
  p.scale = 1.0;
  const std::vector<double> q{1.0}, k{0.0, 2.0}, v{1.0, 3.0};
  auto run = [&](const mc::ScoreModifiers& mods, double& lse) {
    p.mods = mods;
    std::vector<double> out(1), l(1);
    mc::ref::attention_forward<double, double>(p, q, k, v, out, l);
    lse = l[0];
    return out[0];
  };
  auto mix = [](double s0, double s1, double sink) {  // sum_j e^s_j v_j / (e^sink + sum_j e^s_j)
    return (std::exp(s0) * 1.0 + std::exp(s1) * 3.0) /
           (std::exp(sink) + std::exp(s0) + std::exp(s1));
  };
  double lse = 0;
  mc::ScoreModifiers m;
  m.softcap = 1.0;  // scores 0 and tanh(2)
  EXPECT_DOUBLE_EQ(run(m, lse), mix(0, std::tanh(2.0), -kInf));
  EXPECT_DOUBLE_EQ(lse, std::log(1 + std::exp(std::tanh(2.0))));
  m = {};
  m.alibi_slopes = {0.5};  // bottom-right: the query faces key 1; key 0 is 1 away
  EXPECT_DOUBLE_EQ(run(m, lse), mix(-0.5, 2, -kInf));
  m.softcap = 1.0;  // capped first, then the bias
  EXPECT_DOUBLE_EQ(run(m, lse), mix(-0.5, std::tanh(2.0), -kInf));
  m = {};
  m.sink_logits = {1.0};
  EXPECT_DOUBLE_EQ(run(m, lse), mix(0, 2, 1.0));
  EXPECT_DOUBLE_EQ(lse, std::log(std::exp(1.0) + 1 + std::exp(2.0)));
  // A row without a visible key ignores its sink: out 0, lse -inf.
  p.mask.k_lens = {0};
  EXPECT_EQ(run(m, lse), 0.0);
  EXPECT_EQ(lse, -kInf);
}

TEST(Attention, alibiSlopeScheduleAndModifierValidation) {
  EXPECT_EQ(mc::alibi_slope_schedule(1), (std::vector<double>{1.0 / 256}));
  const auto s8 = mc::alibi_slope_schedule(8);
  ASSERT_EQ(s8.size(), 8U);
  EXPECT_EQ(s8.front(), 0.5);
  EXPECT_EQ(s8.back(), 1.0 / 256);
  // 12 heads: the 8-head schedule, then 2^-0.5, 2^-1.5, 2^-2.5, 2^-3.5 (Hugging Face's
  // build_alibi_tensor).
  const auto s12 = mc::alibi_slope_schedule(12);
  ASSERT_EQ(s12.size(), 12U);
  EXPECT_DOUBLE_EQ(s12[8], std::exp2(-0.5));
  EXPECT_DOUBLE_EQ(s12[11], std::exp2(-3.5));
  mc::AttentionProblem p;
  p.mask.Lq = p.mask.Lk = 1;
  p.H = 2;
  p.mods.alibi_slopes = {1.0};
  EXPECT_THROW(p.validate(), mc::InvalidArgument);  // [H] slopes
  p.mods.alibi_slopes = {1.0, std::nan("")};
  EXPECT_THROW(p.validate(), mc::InvalidArgument);
  p.mods.alibi_slopes.clear();
  p.mods.softcap = -1;
  EXPECT_THROW(p.validate(), mc::InvalidArgument);
  p.mods.softcap = 50;
  p.mods.sink_logits = {0.0, kInf};
  EXPECT_THROW(p.validate(), mc::InvalidArgument);
  p.mods.sink_logits = {0.0, -2.0};
  EXPECT_NO_THROW(p.validate());
}

// A paged cache gathers back to the contiguous keys, whatever the page order; bad tables are
// refused naming the entry.
TEST(Attention, pagedCacheGathersAndValidates) {
  mc::AttentionProblem p;
  p.mask.B = 2;
  p.mask.Lq = 1;
  p.mask.Lk = 5;
  p.mask.k_lens = {5, 2};
  p.D = 1;
  mc::PagedKv kv;
  kv.page_size = 2;
  kv.max_pages = 3;
  kv.num_pages = 5;
  // Sequence 0: pages 4, 0, 2 (keys 0..4); sequence 1: page 3; the rest unused (-1, 1).
  kv.block_table = {4, 0, 2, 3, -1, 1};
  const std::vector<double> cache{10, 11, 90, 91, 14, 99, 20, 21, 0, 1};  // slot = page * 2 + i
  const auto k = mc::ref::gather_paged<double>(p, kv, cache, -1.0);
  EXPECT_EQ(k, (std::vector<double>{0, 1, 10, 11, 14, 20, 21, -1, -1, -1}));
  kv.block_table[1] = 5;
  EXPECT_THROW(kv.validate(p), mc::InvalidArgument);
  kv.block_table[1] = 0;
  p.mask.padding = mc::PaddingSide::left;
  EXPECT_THROW(kv.validate(p), mc::InvalidArgument);
  p.mask.padding = mc::PaddingSide::right;
  p.mask.Lk = 7;  // beyond max_pages * page_size
  EXPECT_THROW(kv.validate(p), mc::InvalidArgument);
}

// The backward reference checks itself against the forward reference: every gradient element
// equals the central finite difference of L(q, k, v) = sum(out * dout) computed by the forward
// (f64, step 1e-6: truncation and rounding errors far below the bound), over random masks
// (padding on either side, causal both alignments, windows, documents), GQA and head dims 1-4.
// Masked and padded elements get an exact 0 both ways (the forward never reads them).
RC_GTEST_PROP(AttentionBackward, matchesCentralFiniteDifferencesOfTheForward, ()) {
  const auto Hkv = *rc::gen::inRange<std::int64_t>(1, 3);
  const auto group = *rc::gen::inRange<std::int64_t>(1, 3);
  mc::AttentionProblem p;
  p.Hkv = Hkv;
  p.H = Hkv * group;
  p.D = *rc::gen::inRange<std::int64_t>(1, 5);
  const auto B = *rc::gen::inRange<std::int64_t>(1, 3);
  const auto Lq = *rc::gen::inRange<std::int64_t>(0, 7);
  const auto Lk = *rc::gen::inRange<std::int64_t>(0, 7);
  p.mask = *mc::gen_mask_spec(B, Lq, Lk);
  const auto seed = *rc::gen::arbitrary<std::uint64_t>();
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  auto fill = [&](std::int64_t n) {
    std::vector<double> x(static_cast<std::size_t>(n));
    for (auto& e : x) e = normal(rng);
    return x;
  };
  std::vector<double> q = fill(p.q_numel()), k = fill(p.kv_numel()), v = fill(p.kv_numel()),
                      g = fill(p.q_numel());
  std::vector<double> dq(q.size()), dk(k.size()), dv(v.size());
  mc::ref::attention_backward<double, double>(p, q, k, v, g, dq, dk, dv);
  const auto loss = [&] {
    std::vector<double> out(q.size());
    mc::ref::attention_forward<double, double>(p, q, k, v, out, std::span<double>());
    double l = 0;
    for (std::size_t i = 0; i < out.size(); ++i) l += out[i] * g[i];
    return l;
  };
  const double h = 1e-6;
  auto check = [&](const char* name, std::vector<double>& x, const std::vector<double>& grad) {
    for (std::size_t i = 0; i < x.size(); ++i) {
      const double x0 = x[i];
      x[i] = x0 + h;
      const double up = loss();
      x[i] = x0 - h;
      const double down = loss();
      x[i] = x0;
      const double fd = (up - down) / (2 * h);
      RC_ASSERT(std::isfinite(grad[i]));
      if (fd == 0.0 && up == down) {
        // Not read by the forward at all (masked, padded): the gradient is an exact zero.
        if (grad[i] != 0.0)
          RC_FAIL(std::string(name) + "[" + std::to_string(i) + "] = " + std::to_string(grad[i]) +
                  " where the forward ignores it");
        continue;
      }
      if (std::abs(fd - grad[i]) > 1e-6 + 1e-6 * std::abs(grad[i]))
        RC_FAIL(std::string(name) + "[" + std::to_string(i) + "]: backward " +
                std::to_string(grad[i]) + ", finite difference " + std::to_string(fd));
    }
  };
  check("dq", q, dq);
  check("dk", k, dk);
  check("dv", v, dv);
}

TEST(AttentionBackward, handComputedGradientsAndExactZeros) {
  // One query, two visible keys of three (the third is padding), equal scores: p = 1/2 each.
  mc::AttentionProblem p;
  p.D = 1;
  p.mask.Lq = 1;
  p.mask.Lk = 3;
  p.mask.k_lens = {2};
  p.scale = 1.0;
  const std::vector<double> q{0.0}, k{1.0, 1.0, kInf}, v{1.0, 3.0, kNaN}, g{2.0};
  std::vector<double> dq(1), dk(3, 99.0), dv(3, 99.0);
  mc::ref::attention_backward<double, double>(p, q, k, v, g, dq, dk, dv);
  // dp = g v = (2, 6), delta = 4, ds = p (dp - delta) = (-1, 1); dq = ds . k = 0;
  // dk_j = ds_j q = 0; dv_j = p_j g = 1.
  EXPECT_EQ(dq, (std::vector<double>{0.0}));
  EXPECT_EQ(dk, (std::vector<double>{0.0, 0.0, 0.0}));
  EXPECT_EQ(dv, (std::vector<double>{1.0, 1.0, 0.0}));
  // A query with no visible key: dq = 0, and it contributes nothing to dk, dv.
  p.mask.k_lens = {0};
  mc::ref::attention_backward<double, double>(p, q, k, v, g, dq, dk, dv);
  EXPECT_EQ(dq, (std::vector<double>{0.0}));
  EXPECT_EQ(dk, (std::vector<double>{0.0, 0.0, 0.0}));
  EXPECT_EQ(dv, (std::vector<double>{0.0, 0.0, 0.0}));
}

TEST(CrossEntropy, handComputedLossGradientAndAllIgnored) {
  mc::LossProblem p;
  p.N = 2;
  p.V = 2;
  const std::vector<double> x{0.0, 0.0, 5.0, -5.0};
  const std::vector<std::int64_t> labels{0, -100};
  std::vector<double> g(4, 99.0);
  const auto o = mc::ref::cross_entropy<double, double>(p, x, labels, {}, g);
  EXPECT_DOUBLE_EQ(o.loss, std::log(2.0));
  EXPECT_EQ(o.count, 1);
  EXPECT_EQ(g, (std::vector<double>{-0.5, 0.5, 0.0, 0.0}));
  const std::vector<std::int64_t> none{-100, -100};
  const auto z = mc::ref::cross_entropy<double, double>(p, x, none, {}, g);
  EXPECT_EQ(z.loss, 0.0);  // PyTorch gives NaN here: a documented deviation
  EXPECT_EQ(z.count, 0);
  // Label smoothing eps: loss = (1 - eps) nll + eps * mean_j(-log p_j).
  p.label_smoothing = 0.2;
  p.N = 1;
  const auto s = mc::ref::cross_entropy<double, double>(p, std::vector<double>{0.0, std::log(3.0)},
                                                        std::vector<std::int64_t>{1}, {}, {});
  EXPECT_NEAR(s.loss, 0.8 * std::log(4.0 / 3.0) + 0.2 * 0.5 * (std::log(4.0) + std::log(4.0 / 3.0)),
              1e-15);
}

TEST(LmLabels, shiftIgnorePaddingAndPromptKeepEosEqualToPad) {
  mc::LmLabelsProblem p;
  p.B = 2;
  p.L = 5;
  // EOS == pad == 0. Sequence 0: [7 8 9 0(EOS)] + pad; sequence 1 left-padded: [pad 5 6 0(EOS)]...
  const std::vector<std::int64_t> ids{7, 8, 9, 0, 0, /**/ 0, 0, 5, 6, 0};
  const std::vector<std::uint8_t> keep{1, 1, 1, 1, 0, /**/ 0, 0, 1, 1, 1};
  const auto labels = mc::ref::lm_labels(p, ids, keep, std::vector<std::int32_t>{2, 0});
  EXPECT_EQ(labels,
            (std::vector<std::int64_t>{-100, 9, 0, -100, -100, /**/ -100, -100, 6, 0, -100}));
}

TEST(Mlm, extremeRatesAndSplits) {
  mc::MlmProblem p;
  p.B = 1;
  p.L = 6;
  p.V = 100;
  p.mask_id = 3;
  const std::vector<std::int64_t> ids{1, 10, 11, 12, 2, 0};
  const std::vector<std::uint8_t> keep{1, 1, 1, 1, 1, 0}, special{1, 0, 0, 0, 1, 0};
  p.p = 1.0;
  p.p_mask = 1.0;
  p.p_random = 0.0;
  auto o = mc::ref::mlm_mask(p, ids, keep, special, {});
  EXPECT_EQ(o.ids, (std::vector<std::int64_t>{1, 3, 3, 3, 2, 0}));
  EXPECT_EQ(o.labels, (std::vector<std::int64_t>{-100, 10, 11, 12, -100, -100}));
  p.p_mask = 0.0;  // all kept
  o = mc::ref::mlm_mask(p, ids, keep, special, {});
  EXPECT_EQ(o.ids, ids);
  p.p = 0.0;
  o = mc::ref::mlm_mask(p, ids, keep, special, {});
  EXPECT_EQ(o.labels, std::vector<std::int64_t>(6, -100));
  p.p = 1.0;
  p.max_predictions = 2;
  o = mc::ref::mlm_mask(p, ids, keep, special, {});
  int selected = 0;
  for (auto l : o.labels) selected += l != -100;
  EXPECT_EQ(selected, 2);
  // Whole-word: tokens 2 and 3 continue the word starting at token 1.
  p.max_predictions = 0;
  p.p = 0.5;
  p.whole_word = true;
  const std::vector<std::uint8_t> cont{0, 0, 1, 1, 0, 0};
  for (std::uint64_t seed = 0; seed < 64; ++seed) {
    p.seed = seed;
    o = mc::ref::mlm_mask(p, ids, keep, special, cont);
    EXPECT_EQ(o.labels[1] == -100, o.labels[2] == -100);
    EXPECT_EQ(o.labels[1] == -100, o.labels[3] == -100);
  }
  const std::vector<std::int64_t> bad{1, 100, 11, 12, 2, 0};
  EXPECT_THROW(mc::ref::mlm_mask(p, bad, keep, special, cont), mc::InvalidArgument);
}

}  // namespace
