// Interop: the safetensors reader and writer (every dtype round-trips, malformed files are
// refused with a message and never crash the reader), the problems' JSON, case files of every
// call (exact round trip over generated cases), the recording decorator, and counterexample
// files written by the runner that replay to what the implementation returned.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>
#include <unistd.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include "maskcheck/reference/masks.hpp"
#include "maskcheck/suite/call.hpp"
#include "maskcheck/suite/generators.hpp"
#include "maskcheck/suite/mutants.hpp"
#include "maskcheck/suite/problem_json.hpp"
#include "maskcheck/suite/recording.hpp"
#include "maskcheck/suite/reference_impl.hpp"
#include "maskcheck/suite/safetensors.hpp"

namespace mc = maskcheck;
namespace st = maskcheck::safetensors;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
const double kNaN = std::numeric_limits<double>::quiet_NaN();

fs::path temp_root() {
  return fs::temp_directory_path() / ("maskcheck_interop_test_" + std::to_string(::getpid()));
}

// Removes this run's temporary files when the tests are done.
class TempFiles : public testing::Environment {
 public:
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(temp_root(), ec);
  }
};
const auto* const temp_files = testing::AddGlobalTestEnvironment(new TempFiles);

fs::path temp_dir(const std::string& name) {
  const auto dir = temp_root() / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

bool same_bits(double a, double b) {
  return std::bit_cast<std::uint64_t>(a) == std::bit_cast<std::uint64_t>(b);
}

// The message of the InvalidArgument that f throws ("" when it throws none).
template <class F>
std::string invalid_message(F&& f) {
  try {
    f();
  } catch (const mc::InvalidArgument& e) {
    return e.what();
  }
  return "";
}

// ---- safetensors ------------------------------------------------------------------------------

TEST(Safetensors, floatingDtypesRoundTripIncludingSpecialValues) {
  const std::vector<double> values{0.0,  -0.0,  1.0,  -2.5,  65504.0, std::ldexp(1.0, -24),
                                   kInf, -kInf, kNaN, 0.375, 3.0};
  for (const mc::DType t : {mc::DType::f64, mc::DType::f32, mc::DType::f16, mc::DType::bf16}) {
    std::vector<double> exact;
    for (double x : values) exact.push_back(mc::round_to(t, x));
    ASSERT_TRUE(st::exactly_representable(exact, t));
    st::File f;
    f.tensors["x"] =
        st::float_tensor(exact, {static_cast<std::int64_t>(exact.size())}, st::file_dtype(t));
    f.metadata["k"] = "v";
    const st::File g = st::parse(st::serialize(f), "mem");
    const auto back = st::to_doubles(g.tensors.at("x"), "x");
    ASSERT_EQ(back.size(), exact.size());
    for (std::size_t i = 0; i < exact.size(); ++i)
      EXPECT_TRUE(std::isnan(exact[i]) ? std::isnan(back[i]) : same_bits(back[i], exact[i]))
          << mc::to_string(t) << " " << exact[i] << " -> " << back[i];
    EXPECT_EQ(g.tensors.at("x").dtype, st::file_dtype(t));
    EXPECT_EQ(g.metadata.at("k"), "v");
    EXPECT_EQ(st::serialize(g), st::serialize(f));
  }
  // f16 and bf16 files carry true 16-bit patterns.
  const auto h = st::float_tensor(std::vector<double>{1.0, -2.0}, {2}, st::Dtype::F16);
  EXPECT_EQ(h.bytes, (std::vector<std::uint8_t>{0x00, 0x3C, 0x00, 0xC0}));
  const auto b = st::float_tensor(std::vector<double>{1.0}, {}, st::Dtype::BF16);
  EXPECT_EQ(b.bytes, (std::vector<std::uint8_t>{0x80, 0x3F}));
  EXPECT_FALSE(st::exactly_representable(std::vector<double>{0.1}, mc::DType::f32));
  EXPECT_TRUE(st::exactly_representable(std::vector<double>{0.1}, mc::DType::f64));
}

TEST(Safetensors, integerDtypesRoundTripAndRangeCheck) {
  const std::vector<std::int64_t> small{0, 1, -1, 127, -128};
  const std::vector<std::int64_t> unsigned_small{0, 1, 255};
  struct Case {
    st::Dtype d;
    std::vector<std::int64_t> v;
    std::int64_t too_big;
  };
  const std::vector<Case> cases{
      {st::Dtype::I64, {0, std::numeric_limits<std::int64_t>::min(), -100, 1ll << 40}, 0},
      {st::Dtype::I32, {0, -2147483648ll, 2147483647ll}, 2147483648ll},
      {st::Dtype::I16, {0, -32768, 32767}, 32768},
      {st::Dtype::I8, small, 128},
      {st::Dtype::U64, {0, std::numeric_limits<std::int64_t>::max()}, -1},
      {st::Dtype::U32, {0, 4294967295ll}, 4294967296ll},
      {st::Dtype::U16, {0, 65535}, 65536},
      {st::Dtype::U8, unsigned_small, 256},
      {st::Dtype::BOOL, {0, 1, 1, 0}, 2}};
  for (const auto& c : cases) {
    st::File f;
    f.tensors["a"] = st::int_tensor(c.v, {1, static_cast<std::int64_t>(c.v.size())}, c.d);
    const st::File g = st::parse(st::serialize(f), "mem");
    EXPECT_EQ(st::to_int64(g.tensors.at("a"), "a"), c.v) << st::to_string(c.d);
    EXPECT_EQ(g.tensors.at("a").shape, f.tensors.at("a").shape);
    if (c.too_big != 0) {
      EXPECT_THROW(st::int_tensor(std::vector<std::int64_t>{c.too_big}, {1}, c.d),
                   mc::InvalidArgument)
          << st::to_string(c.d);
    }
  }
  EXPECT_THROW(st::to_int64(st::float_tensor(std::vector<double>{}, {0}, st::Dtype::F32), "x"),
               mc::InvalidArgument);
  EXPECT_THROW(
      st::to_doubles(st::int_tensor(std::vector<std::int64_t>{1}, {1}, st::Dtype::I64), "y"),
      mc::InvalidArgument);
  EXPECT_THROW(st::int_tensor(std::vector<std::int64_t>{1, 2}, {3}, st::Dtype::I64),
               mc::InvalidArgument);  // shape does not hold the values
}

TEST(Safetensors, writesTheOfficialLayout) {
  st::File f;
  f.tensors["b"] = st::int_tensor(std::vector<std::int32_t>{7}, {}, st::Dtype::I32);
  f.tensors["a"] = st::float_tensor(std::vector<double>{}, {0, 3}, st::Dtype::F32);
  f.metadata["format"] = "pt";
  const std::string bytes = st::serialize(f);
  std::uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ(n % 8, 0u);  // data aligned to 8 bytes, header padded with spaces
  EXPECT_EQ(bytes.size(), 8 + n + 4);
  const json header = json::parse(bytes.substr(8, n));
  EXPECT_EQ(header.at("__metadata__"), json({{"format", "pt"}}));
  EXPECT_EQ(header.at("a"), json({{"dtype", "F32"}, {"shape", {0, 3}}, {"data_offsets", {0, 0}}}));
  EXPECT_EQ(header.at("b"),
            json({{"dtype", "I32"}, {"shape", json::array()}, {"data_offsets", {0, 4}}}));
}

// A valid file of two tensors with a hand-written header (to break it in every way).
std::string file_with_header(const std::string& header, std::string data) {
  std::string out(8, '\0');
  const std::uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);
  return out + header + data;
}

TEST(Safetensors, rejectsMalformedFilesWithAMessage) {
  const std::string data(12, '\x01');
  const std::string ok_header = R"({"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},)"
                                R"( "y": {"dtype": "I32", "shape": [1], "data_offsets": [8, 12]}})";
  ASSERT_NO_THROW(st::parse(file_with_header(ok_header, data), "ok"));

  const std::vector<std::pair<std::string, std::string>> cases{
      {std::string("abc"), "truncated"},
      {std::string("\xff\xff\xff\xff\xff\xff\xff\x7f", 8) + "{}", "at most"},
      {std::string("\x40\0\0\0\0\0\0\0", 8) + "{}", "exceeds"},
      {file_with_header("{not json", ""), "not JSON"},
      {file_with_header("[1, 2]", ""), "JSON object"},
      {file_with_header(R"({"x": {"dtype": "F8", "shape": [1], "data_offsets": [0, 1]}})", "a"),
       "must be one of"},
      {file_with_header(R"({"x": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})", data),
       "needs 12"},
      {file_with_header(R"({"x": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}})", data),
       "dimensions"},
      {file_with_header(R"({"x": {"dtype": "F32", "shape": [1.5], "data_offsets": [0, 4]}})", data),
       "dimensions"},
      {file_with_header(R"({"x": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})", data),
       "past"},
      {file_with_header(R"({"x": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},)"
                        R"( "y": {"dtype": "I32", "shape": [1], "data_offsets": [0, 4]},)"
                        R"( "z": {"dtype": "U8", "shape": [4], "data_offsets": [8, 12]}})",
                        data),
       "overlaps"},
      {file_with_header(R"({"x": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})", data),
       "hole"},
      {file_with_header(R"({"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})", data),
       "trailing"},
      {file_with_header(R"({"x": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}})", data),
       "begin"},
      {file_with_header(R"({"x": {"dtype": "F32", "shape": [1]}})", data), "data_offsets"},
      {file_with_header(R"({"x": {"dtype": "I32", "shape": [1], "data_offsets": [0, 4]},)"
                        R"( "x": {"dtype": "I32", "shape": [1], "data_offsets": [4, 8]}})",
                        std::string(8, '\0')),
       "duplicate"},
      {file_with_header(R"({"__metadata__": {"a": 1}})", ""), "strings"},
      {file_with_header("{\"x\": " + std::string(200000, '[') + std::string(200000, ']') + "}", ""),
       "nested deeper"},
      {file_with_header(R"({"x": {"dtype": "F32", "shape": [4611686018427387904, 4],)"
                        R"( "data_offsets": [0, 4]}})",
                        std::string(4, '\0')),
       "64 bits"}};
  for (const auto& [bytes, expected] : cases) {
    const std::string msg = invalid_message([&] { st::parse(bytes, "bad.safetensors"); });
    EXPECT_NE(msg.find("bad.safetensors"), std::string::npos) << msg;
    EXPECT_NE(msg.find(expected), std::string::npos) << "expected '" << expected << "' in: " << msg;
  }
}

TEST(Safetensors, corruptedBytesNeverCrashTheReader) {
  st::File f;
  f.tensors["q"] = st::float_tensor(std::vector<double>{1, 2, 3, 4}, {2, 2}, st::Dtype::BF16);
  f.tensors["n"] = st::int_tensor(std::vector<std::int64_t>{-100, 5}, {2}, st::Dtype::I64);
  f.metadata["maskcheck.op"] = "attention";
  const std::string good = st::serialize(f);
  int refused = 0;
  for (std::size_t i = 0; i < good.size(); ++i)
    for (const unsigned char flip : {0x01u, 0x20u, 0x80u, 0xFFu}) {
      std::string bad = good;
      bad[i] = static_cast<char>(static_cast<unsigned char>(bad[i]) ^ flip);
      try {
        (void)st::parse(bad, "fuzz");
      } catch (const mc::InvalidArgument&) {
        ++refused;
      }
    }
  for (std::size_t n = 0; n < good.size(); ++n)  // every truncation is refused
    EXPECT_THROW(st::parse(std::string_view(good).substr(0, n), "cut"), mc::InvalidArgument) << n;
  EXPECT_GT(refused, 0);
}

TEST(Safetensors, filesAreWrittenAtomicallyAndReadErrorsNameThePath) {
  const auto dir = temp_dir("atomic");
  st::File f;
  f.tensors["x"] = st::float_tensor(std::vector<double>{1.5}, {1}, st::Dtype::F64);
  const std::string path = (dir / "sub" / "a.safetensors").string();
  st::write_file(path, f);  // creates the directory
  EXPECT_EQ(st::to_doubles(st::read_file(path).tensors.at("x"), "x"), std::vector<double>{1.5});
  // A target that cannot be replaced (a directory) is refused (InvalidArgument, io.hpp) and
  // leaves no temporary file behind.
  fs::create_directories(dir / "taken.safetensors");
  EXPECT_THROW(st::write_file((dir / "taken.safetensors").string(), f), mc::InvalidArgument);
  for (const auto& e : fs::directory_iterator(dir))
    EXPECT_EQ(e.path().filename().string().find(".tmp."), std::string::npos) << e.path();
  try {
    st::read_file((dir / "missing.safetensors").string());
    ADD_FAILURE() << "no error for a missing file";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("missing.safetensors"), std::string::npos) << e.what();
  }
  EXPECT_THROW(st::read_file(dir.string()), std::runtime_error);  // a directory
  std::ofstream(dir / "empty.safetensors").close();
  EXPECT_THROW(st::read_file((dir / "empty.safetensors").string()), mc::InvalidArgument);
}

// ---- problem JSON -----------------------------------------------------------------------------

mc::MaskSpec full_spec() {
  mc::MaskSpec m;
  m.B = 2;
  m.Lq = 7;
  m.Lk = 9;
  m.q_lens = {7, 5};
  m.k_lens = {9, 6};
  m.padding = mc::PaddingSide::left;
  m.causal = true;
  m.alignment = mc::Alignment::top_left;
  m.window = mc::Window{mc::kUnbounded, 3};
  m.cu_seqlens_q = {{0, 3, 7}, {0, 5, 5}};
  m.cu_seqlens_k = {{0, 4, 9}, {0, 2, 6}};
  return m;
}

template <class P>
P json_round_trip(const P& p) {
  const json j = p;
  P back;
  mc::read_json(json::parse(j.dump()), back, "problem");
  EXPECT_EQ(json(back).dump(), j.dump());
  return back;
}

TEST(ProblemJson, everyProblemRoundTripsExactly) {
  const mc::MaskSpec m = full_spec();
  EXPECT_EQ(json_round_trip(m), m);

  mc::AttentionProblem a;
  a.mask = m;
  a.H = 4;
  a.Hkv = 2;
  a.D = 3;
  a.scale = 0.1 + 0.2;  // not a short decimal
  const auto a2 = json_round_trip(a);
  EXPECT_EQ(a2.mask, m);
  EXPECT_TRUE(same_bits(*a2.scale, 0.1 + 0.2));
  a.scale.reset();
  EXPECT_FALSE(json_round_trip(a).scale.has_value());

  mc::SoftmaxProblem s;
  s.mask = m;
  s.H = 3;
  s.scale = kNaN;  // invalid, yet recorded faithfully
  EXPECT_TRUE(std::isnan(json_round_trip(s).scale));
  EXPECT_EQ(json(s)["scale"], "nan");

  mc::VarlenAttentionProblem v;
  v.H = 2;
  v.cu_seqlens_q = {0, 3, 4};
  v.cu_seqlens_k = {0, 1, 8};
  v.window = mc::Window{2, mc::kUnbounded};
  v.alignment = mc::Alignment::top_left;
  const auto v2 = json_round_trip(v);
  EXPECT_EQ(v2.cu_seqlens_k, v.cu_seqlens_k);
  EXPECT_EQ(v2.window, v.window);

  mc::LossProblem l;
  l.N = 5;
  l.V = 11;
  l.ignore_index = -7;
  l.label_smoothing = 1.0 / 3.0;
  l.reduction = mc::Reduction::sum;
  l.weighted = true;
  const auto l2 = json_round_trip(l);
  EXPECT_TRUE(same_bits(l2.label_smoothing, 1.0 / 3.0));
  EXPECT_EQ(l2.reduction, mc::Reduction::sum);

  mc::LmLabelsProblem lm{3, 4, -1};
  EXPECT_EQ(json_round_trip(lm).ignore_index, -1);

  mc::MlmProblem mlm;
  mlm.seed = std::numeric_limits<std::uint64_t>::max();
  mlm.whole_word = true;
  mlm.max_predictions = 3;
  mlm.p = 0.15;
  EXPECT_EQ(json_round_trip(mlm).seed, std::numeric_limits<std::uint64_t>::max());
}

TEST(ProblemJson, readingIsStrictAndNamesThePath) {
  const std::vector<std::pair<std::string, std::string>> cases{
      {R"({"mask": {"B": 1, "causl": true}})", "problem.mask.causl"},
      {R"({"H": 1.5})", "problem.H"},
      {R"({"H": "2"})", "problem.H"},
      {R"({"mask": {"k_lens": [1, 3000000000]}})", "problem.mask.k_lens[1]"},
      {R"({"mask": {"padding": "middle"}})", "problem.mask.padding"},
      {R"({"mask": {"window": {"left": -1, "right": "forever"}}})", "problem.mask.window.right"},
      {R"({"scale": "big"})", "problem.scale"},
      {R"({"mask": 3})", "problem.mask"},
      {R"({"H": 18446744073709551615})", "problem.H"}};
  for (const auto& [text, path] : cases) {
    const std::string msg = invalid_message([&] {
      mc::AttentionProblem p;
      mc::read_json(json::parse(text), p, "problem");
    });
    EXPECT_NE(msg.find(path), std::string::npos) << text << " -> " << msg;
  }
  // Missing fields keep their defaults; reading does not validate.
  mc::AttentionProblem p;
  mc::read_json(json::parse(R"({"mask": {"window": {"left": 3}}, "D": 0})"), p, "problem");
  EXPECT_EQ(p.mask.window->left, 3);
  EXPECT_EQ(p.mask.window->right, mc::kUnbounded);
  EXPECT_EQ(p.D, 0);
  EXPECT_EQ(json::parse(R"({"N": 3})").get<mc::LossProblem>().N, 3);  // nlohmann's hook
}

// ---- case files -------------------------------------------------------------------------------

// encode -> bytes -> decode -> encode gives the same bytes, and the decoded call encodes the same.
mc::CallInputs file_round_trip(const mc::CallInputs& in) {
  const std::string bytes = st::serialize(mc::encode_case(in));
  const mc::CallInputs back = mc::decode_case(st::parse(bytes, "case"), "case");
  EXPECT_EQ(mc::call_of(back), mc::call_of(in));
  EXPECT_EQ(st::serialize(mc::encode_case(back)), bytes);
  return back;
}

RC_GTEST_PROP(CaseFile, attentionCasesRoundTrip, (const mc::AttentionCase& c)) {
  const auto d = mc::make_data(c);
  const mc::AttentionCall in{c.problem, c.dtype, d.q, d.k, d.v, c.want_lse};
  const auto back = std::get<mc::AttentionCall>(file_round_trip(in));
  RC_ASSERT(back.problem.mask == c.problem.mask);
  RC_ASSERT(back.q.size() == d.q.size());
  for (std::size_t i = 0; i < d.q.size(); ++i)
    RC_ASSERT(bool(std::isnan(d.q[i]) ? std::isnan(back.q[i]) : same_bits(back.q[i], d.q[i])));
  const st::File f = mc::encode_case(in);
  RC_ASSERT(f.tensors.at("q").dtype == st::file_dtype(c.dtype));  // true f16 / bf16 tensors
}

RC_GTEST_PROP(CaseFile, otherCasesRoundTrip,
              (const mc::MaskCase& mcase, const mc::SoftmaxCase& sc, const mc::LossCase& lc,
               const mc::LabelsCase& lab, const mc::MlmCase& mlm, bool backward)) {
  file_round_trip(mc::BuildMaskCall{mcase.spec, mcase.encoding, mcase.dtype});
  const auto keep = mc::ref::build_keep_mask(mcase.spec);
  const auto values = mc::ref::encode_mask(keep, mcase.encoding, mcase.dtype);
  file_round_trip(mc::ConvertMaskCall{values,
                                      {mcase.spec.B, mcase.spec.Lq, mcase.spec.Lk},
                                      mcase.encoding,
                                      mc::MaskEncoding::additive_1e9,
                                      mcase.dtype});
  std::vector<std::int32_t> lens;
  for (std::int64_t b = 0; b < mcase.spec.B; ++b)
    lens.push_back(static_cast<std::int32_t>(mcase.spec.k_len(b)));
  file_round_trip(mc::KeepFromLengthsCall{{lens, mcase.spec.Lk, mcase.spec.padding}});
  file_round_trip(mc::LastValidIndexCall{{lens, mcase.spec.Lk, mcase.spec.padding}});
  file_round_trip(mc::SoftmaxCall{sc.problem, sc.dtype, mc::make_data(sc).x});
  const auto ld = mc::make_data(lc);
  file_round_trip(
      mc::CrossEntropyCall{lc.problem, lc.dtype, ld.logits, ld.labels, ld.weights, backward});
  const auto labd = mc::make_data(lab);
  file_round_trip(mc::LmLabelsCall{lab.problem, labd.ids, labd.keep, lab.prompt_lens});
  const auto md = mc::make_data(mlm);
  file_round_trip(mc::MlmCall{mlm.problem, md.ids, md.keep, md.special, md.continuation});
}

TEST(CaseFile, varlenAttentionRoundTrips) {
  mc::VarlenAttentionCall c;
  c.problem.H = 2;
  c.problem.Hkv = 1;
  c.problem.D = 2;
  c.problem.cu_seqlens_q = {0, 2, 3};
  c.problem.cu_seqlens_k = {0, 1, 4};
  c.problem.causal = true;
  c.dtype = mc::DType::bf16;
  c.q = std::vector<double>(3 * 2 * 2, 0.5);
  c.k = std::vector<double>(4 * 1 * 2, -1.0);
  c.v = std::vector<double>(4 * 1 * 2, 2.0);
  const auto back = std::get<mc::VarlenAttentionCall>(file_round_trip(c));
  EXPECT_EQ(back.problem.cu_seqlens_k, c.problem.cu_seqlens_k);
  const auto r = mc::run_call(*std::make_shared<mc::ReferenceImplementation>(), back);
  const auto t = mc::result_tensors(back, r);
  EXPECT_EQ(t.at("out").describe(), "BF16[3, 2, 2]");
  EXPECT_EQ(t.at("lse").describe(), "F64[2, 3]");
}

// A case as a PyTorch user writes it: tensors, a partial problem, no dtype, bool masks.
TEST(CaseFile, handWrittenCasesTakeShapesFromTheTensors) {
  st::File f;
  f.metadata["maskcheck.op"] = "attention";
  f.metadata["maskcheck.problem"] = R"({"mask": {"causal": true, "padding": "left"}})";
  f.tensors["q"] =
      st::float_tensor(std::vector<double>(2 * 4 * 3 * 8, 0.25), {2, 4, 3, 8}, st::Dtype::F16);
  f.tensors["k"] =
      st::float_tensor(std::vector<double>(2 * 2 * 5 * 8, 1.0), {2, 2, 5, 8}, st::Dtype::F16);
  f.tensors["v"] = f.tensors["k"];
  f.tensors["k_lens"] = st::int_tensor(std::vector<std::int64_t>{5, 2}, {2}, st::Dtype::I64);
  const auto in = std::get<mc::AttentionCall>(mc::decode_case(f, "hand"));
  EXPECT_EQ(in.dtype, mc::DType::f16);
  EXPECT_EQ(in.problem.H, 4);
  EXPECT_EQ(in.problem.Hkv, 2);
  EXPECT_EQ(in.problem.D, 8);
  EXPECT_EQ(in.problem.mask.B, 2);
  EXPECT_EQ(in.problem.mask.Lq, 3);
  EXPECT_EQ(in.problem.mask.Lk, 5);
  EXPECT_EQ(in.problem.mask.k_lens, (std::vector<std::int32_t>{5, 2}));
  EXPECT_EQ(in.problem.mask.padding, mc::PaddingSide::left);
  EXPECT_TRUE(in.want_lse);
  mc::validate_call(in);

  st::File ce;
  ce.metadata["maskcheck.op"] = "cross_entropy";
  ce.metadata["maskcheck.problem"] = R"({"label_smoothing": 0.1})";
  ce.metadata["maskcheck.options"] = R"({"backward": true})";
  ce.tensors["logits"] = st::float_tensor(std::vector<double>(6, 0.5), {2, 3}, st::Dtype::F32);
  ce.tensors["labels"] = st::int_tensor(std::vector<std::int64_t>{-100, 2}, {2}, st::Dtype::I64);
  ce.tensors["weights"] = st::float_tensor(std::vector<double>{1, 0.5}, {2}, st::Dtype::F32);
  const auto loss = std::get<mc::CrossEntropyCall>(mc::decode_case(ce, "ce"));
  EXPECT_TRUE(loss.problem.weighted);
  EXPECT_TRUE(loss.backward);
  EXPECT_EQ(loss.problem.V, 3);
  mc::validate_call(loss);
}

// An upstream gradient travels as the tensor grad_output ([N] for reduction none, [1] otherwise),
// replays through cross_entropy_upstream, and a wrong one is refused naming the file and field.
TEST(CaseFile, crossEntropyUpstreamGradientRoundTripsAndReplays) {
  for (const mc::Reduction red : {mc::Reduction::none, mc::Reduction::mean}) {
    mc::CrossEntropyCall c;
    c.problem.N = 3;
    c.problem.V = 4;
    c.problem.reduction = red;
    c.dtype = mc::DType::f32;
    c.logits = {0.5, -1, 2, 0.25, 1, 1, 1, 1, -3, 0, 3, 0.5};
    c.labels = {2, -100, 0};
    c.backward = true;
    c.grad_output =
        red == mc::Reduction::none ? std::vector<double>{0.5, -7, 3} : std::vector<double>{-2};
    const auto back = std::get<mc::CrossEntropyCall>(file_round_trip(c));
    EXPECT_EQ(back.grad_output, c.grad_output);
    const mc::ReferenceImplementation ref;
    const auto got = std::get<mc::LossResult>(mc::run_call(ref, back));
    const auto ones = ref.cross_entropy(c.problem, c.dtype, c.logits, c.labels, {}, true);
    for (std::int64_t i = 0; i < c.problem.N; ++i)
      for (std::int64_t j = 0; j < c.problem.V; ++j) {
        const double g = red == mc::Reduction::none ? c.grad_output[static_cast<std::size_t>(i)]
                                                    : c.grad_output[0];
        EXPECT_FLOAT_EQ(got.dlogits[i * 4 + j], g * ones.dlogits[i * 4 + j]) << i << "," << j;
      }
    const std::string bytes = st::serialize(mc::encode_case(c));
    st::File wrong = st::parse(bytes, "case");
    wrong.tensors["grad_output"] =
        st::float_tensor(std::vector<double>{1, 2}, {2}, st::Dtype::F32);  // neither [3] nor [1]
    const std::string msg = invalid_message([&] { mc::decode_case(wrong, "up.safetensors"); });
    EXPECT_NE(msg.find("up.safetensors"), std::string::npos) << msg;
    EXPECT_NE(msg.find("grad_output"), std::string::npos) << msg;
    st::File forward_only = st::parse(bytes, "case");
    forward_only.metadata["maskcheck.options"] = R"({"backward": false})";
    const std::string msg2 =
        invalid_message([&] { mc::decode_case(forward_only, "fwd.safetensors"); });
    EXPECT_NE(msg2.find("grad_output"), std::string::npos) << msg2;
  }
}

TEST(CaseFile, badCasesAreRefusedWithTheReason) {
  mc::AttentionCall a;
  a.problem.mask.Lq = 2;
  a.problem.mask.Lk = 3;
  a.dtype = mc::DType::f32;
  a.q = {1, 2};
  a.k = a.v = {1, 2, 3};
  const st::File good = mc::encode_case(a);
  auto refuse = [&](const std::string& what, auto&& edit, const std::string& expected) {
    st::File f = good;
    edit(f);
    const std::string msg = invalid_message([&] { mc::decode_case(f, "c.safetensors"); });
    EXPECT_NE(msg.find(expected), std::string::npos) << what << ": " << msg;
    EXPECT_NE(msg.find("c.safetensors"), std::string::npos) << what << ": " << msg;
  };
  refuse(
      "no op", [](st::File& f) { f.metadata.erase("maskcheck.op"); }, "maskcheck.op");
  refuse(
      "unknown op", [](st::File& f) { f.metadata["maskcheck.op"] = "conv"; }, "conv");
  refuse(
      "call of another op", [](st::File& f) { f.metadata["maskcheck.call"] = "mlm"; },
      "not a function of attention");
  refuse(
      "result file", [](st::File& f) { f.metadata["maskcheck.format"] = "maskcheck.result/1"; },
      "result file");
  refuse(
      "bad problem JSON", [](st::File& f) { f.metadata["maskcheck.problem"] = "{"; },
      "maskcheck.problem");
  refuse(
      "deep problem JSON",
      [](st::File& f) {
        f.metadata["maskcheck.problem"] =
            "{\"a\": " + std::string(200000, '[') + std::string(200000, ']') + "}";
      },
      "nest at most");
  refuse(
      "unknown option", [](st::File& f) { f.metadata["maskcheck.options"] = R"({"lse": 1})"; },
      "maskcheck.options.lse");
  refuse(
      "missing tensor", [](st::File& f) { f.tensors.erase("v"); }, "\"v\"");
  refuse(
      "unknown tensor", [](st::File& f) { f.tensors["bias"] = f.tensors["q"]; }, "recorded.<name>");
  refuse(
      "rank",
      [](st::File& f) {
        f.tensors["k"].shape = {3, 1, 1};
      },
      "[B, Hkv, Lk, D]");
  refuse(
      "shape vs problem",
      [](st::File& f) { f.metadata["maskcheck.problem"] = R"({"mask": {"Lk": 4}})"; },
      "[1, 1, 4, 1]");
  refuse(
      "integer q",
      [](st::File& f) {
        f.tensors["q"] =
            st::int_tensor(std::vector<std::int64_t>{1, 2}, {1, 1, 2, 1}, st::Dtype::I64);
      },
      "floating dtype");
  refuse(
      "value not in the dtype",
      [](st::File& f) {
        f.tensors["q"] =
            st::float_tensor(std::vector<double>{0.1, 2}, {1, 1, 2, 1}, st::Dtype::F64);
      },
      "not exactly representable in the case dtype f32");
  refuse(
      "lens disagree",
      [](st::File& f) {
        f.metadata["maskcheck.problem"] = R"({"mask": {"k_lens": [2]}})";
        f.tensors["k_lens"] = st::int_tensor(std::vector<std::int32_t>{3}, {1}, st::Dtype::I32);
      },
      "disagrees");
  // A recorded output travels along.
  st::File with_recorded = good;
  with_recorded.tensors["recorded.out"] = good.tensors.at("q");
  EXPECT_NO_THROW(mc::decode_case(with_recorded, "c"));
  // A valid file whose problem is invalid decodes, and validate_call refuses it.
  st::File invalid = good;
  invalid.metadata["maskcheck.problem"] = R"({"mask": {"k_lens": [4]}})";
  EXPECT_THROW(mc::validate_call(mc::decode_case(invalid, "c")), mc::InvalidArgument);
}

// ---- recording and counterexample files --------------------------------------------------------

TEST(Recording, forwardsAndRecordsEveryCallEvenWhenItThrows) {
  const auto ref = std::make_shared<mc::ReferenceImplementation>();
  mc::RecordingImplementation rec(*ref, 2);
  EXPECT_EQ(rec.name(), "reference");
  mc::AttentionProblem p;
  p.mask.Lq = 1;
  p.mask.Lk = 2;
  const std::vector<double> q{1}, k{1, 2}, v{3, 4};
  const auto got = rec.attention(p, mc::DType::f64, q, k, v, true);
  EXPECT_EQ(got.out, ref->attention(p, mc::DType::f64, q, k, v, true).out);
  ASSERT_EQ(rec.calls().size(), 1u);
  const auto& call = rec.calls()[0];
  EXPECT_EQ(std::get<mc::AttentionCall>(call.inputs).k, k);
  EXPECT_EQ(std::get<mc::AttentionResult>(*call.result).out, got.out);

  mc::LossProblem bad;  // labels out of range: the reference throws
  bad.N = 1;
  bad.V = 2;
  EXPECT_THROW(rec.cross_entropy(bad, mc::DType::f32, std::vector<double>{0, 0},
                                 std::vector<std::int64_t>{5}, {}, false),
               mc::InvalidArgument);
  ASSERT_EQ(rec.calls().size(), 2u);
  EXPECT_FALSE(rec.calls()[1].result.has_value());
  EXPECT_NE(rec.calls()[1].error.find("labels[0]"), std::string::npos) << rec.calls()[1].error;
  EXPECT_EQ(std::get<mc::CrossEntropyCall>(rec.calls()[1].inputs).labels,
            std::vector<std::int64_t>{5});
  (void)rec.keep_from_lengths(std::vector<std::int32_t>{1}, 2, mc::PaddingSide::right);
  EXPECT_EQ(rec.calls().size(), 2u);  // the cap
  EXPECT_EQ(rec.total_calls(), 3u);
  rec.begin_case();
  EXPECT_TRUE(rec.calls().empty());
}

TEST(Recording, failingPropertiesSaveCasesThatReplayToTheRecordedResult) {
  const auto dir = temp_dir("counterexamples");
  const mc::Registry mutants = mc::mutant_registry();
  const auto mutant = mutants.find("mutant:causal-off-by-one");
  ASSERT_NE(mutant, nullptr);
  const mc::Property* prop = mc::find_property("attention.agreesWithReference");
  ASSERT_NE(prop, nullptr);
  mc::VerifyConfig config;
  config.seed = 3;
  config.cases = 100;
  config.counterexample_dir = dir.string();
  // A stale file of the same pair from an earlier run is replaced.
  std::ofstream(dir / mc::counterexample_file_name(mutant->name(), prop->name, 7)) << "old";
  const auto o = mc::run_property(*mutant, *prop, config);
  ASSERT_EQ(o.status, mc::Status::failed);
  ASSERT_EQ(o.counterexample_files.size(), 1u) << o.message;
  EXPECT_FALSE(fs::exists(dir / mc::counterexample_file_name(mutant->name(), prop->name, 7)));
  const std::string path = o.counterexample_files[0];
  EXPECT_EQ(fs::path(path).filename().string(),
            "mutant_causal-off-by-one__attention.agreesWithReference__call0.safetensors");
  const st::File f = st::read_file(path);
  EXPECT_EQ(f.metadata.at("maskcheck.implementation"), "mutant:causal-off-by-one");
  EXPECT_EQ(f.metadata.at("maskcheck.property"), "attention.agreesWithReference");
  EXPECT_EQ(f.metadata.at("maskcheck.reproduced"), "true");
  EXPECT_EQ(f.metadata.at("maskcheck.seed"), std::to_string(o.seed));
  EXPECT_EQ(f.metadata.at("maskcheck.replay"), o.replay);
  EXPECT_NE(f.metadata.at("maskcheck.eval").find("maskcheck eval attention --impl"),
            std::string::npos);
  const auto in = mc::decode_case(f, path);
  mc::validate_call(in);
  // The shrunk case is the one rapidcheck printed.
  const auto& call = std::get<mc::AttentionCall>(in);
  ASSERT_FALSE(o.counterexample.empty());
  EXPECT_NE(o.counterexample[0].second.find("Lq=" + std::to_string(call.problem.mask.Lq) + " "),
            std::string::npos)
      << o.counterexample[0].second;
  // Replaying the mutant gives back what it returned, bit for bit; the reference differs.
  const auto replayed = mc::result_tensors(in, mc::run_call(*mutant, in), "recorded.");
  EXPECT_EQ(replayed.at("recorded.out").bytes, f.tensors.at("recorded.out").bytes);
  const auto want =
      mc::result_tensors(in, mc::run_call(*std::make_shared<mc::ReferenceImplementation>(), in));
  EXPECT_NE(want.at("out").bytes, f.tensors.at("recorded.out").bytes);
}

}  // namespace
