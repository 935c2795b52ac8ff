// Size tiers, chunks and shards (issue 12, item 2):
//   - lengths at kernel boundaries, the default run's cheap long cases and the larger tiers'
//     lengths, with the coverage tags that show them;
//   - every tier's work cap and memory budget: the generators keep each case's estimate within
//     the budget, and the measured peak of every property's case stays within the estimate;
//   - N shards together run exactly the unsharded run, and their merged JSON is its JSON (in
//     process and through the command line, with `report` and `compare`);
//   - --size, --shard and --chunk are validated (exit 2 with a message).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <fstream>
#include <new>
#include <set>

#include <nlohmann/json.hpp>

#include "cli_run.hpp"
#include "maskcheck/reports/shards.hpp"
#include "maskcheck/suite/builtin.hpp"
#include "maskcheck/suite/io.hpp"
#include "maskcheck/suite/mutants.hpp"
#include "maskcheck/suite/runner.hpp"

// ---- heap accounting: the live bytes of operator new, and their peak -------------------------
namespace {
std::atomic<std::int64_t> g_live{0}, g_peak{0};
constexpr std::size_t kHeader = 2 * alignof(std::max_align_t);  // keeps malloc's alignment

void count_alloc(std::size_t n) {
  const std::int64_t live = g_live.fetch_add(static_cast<std::int64_t>(n)) + std::int64_t(n);
  std::int64_t peak = g_peak.load();
  while (live > peak && !g_peak.compare_exchange_weak(peak, live)) {
  }
}
void* counted_new(std::size_t n, std::size_t align) {
  const std::size_t head = std::max(kHeader, align);
  void* base = align > alignof(std::max_align_t)
                   ? std::aligned_alloc(align, (n + head + align - 1) / align * align)
                   : std::malloc(n + head);
  if (!base) throw std::bad_alloc();
  char* p = static_cast<char*>(base) + head;
  reinterpret_cast<std::size_t*>(p)[-1] = n;
  reinterpret_cast<std::size_t*>(p)[-2] = head;
  count_alloc(n);
  return p;
}
void counted_delete(void* p) noexcept {
  if (!p) return;
  const std::size_t n = static_cast<std::size_t*>(p)[-1], head = static_cast<std::size_t*>(p)[-2];
  g_live.fetch_sub(static_cast<std::int64_t>(n));
  std::free(static_cast<char*>(p) - head);
}
}  // namespace

void* operator new(std::size_t n) {
  return counted_new(n, 0);
}
void* operator new[](std::size_t n) {
  return counted_new(n, 0);
}
void* operator new(std::size_t n, std::align_val_t a) {
  return counted_new(n, static_cast<std::size_t>(a));
}
void* operator new[](std::size_t n, std::align_val_t a) {
  return counted_new(n, static_cast<std::size_t>(a));
}
void operator delete(void* p) noexcept {
  counted_delete(p);
}
void operator delete[](void* p) noexcept {
  counted_delete(p);
}
void operator delete(void* p, std::size_t) noexcept {
  counted_delete(p);
}
void operator delete[](void* p, std::size_t) noexcept {
  counted_delete(p);
}
void operator delete(void* p, std::align_val_t) noexcept {
  counted_delete(p);
}
void operator delete[](void* p, std::align_val_t) noexcept {
  counted_delete(p);
}
void operator delete(void* p, std::size_t, std::align_val_t) noexcept {
  counted_delete(p);
}
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept {
  counted_delete(p);
}
// The nothrow forms too (std::stable_sort's temporary buffer uses them): every allocation that
// the replaced deletes free must carry the counted header.
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  try {
    return counted_new(n, 0);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
  try {
    return counted_new(n, 0);
  } catch (...) {
    return nullptr;
  }
}
void* operator new(std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  try {
    return counted_new(n, static_cast<std::size_t>(a));
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  try {
    return counted_new(n, static_cast<std::size_t>(a));
  } catch (...) {
    return nullptr;
  }
}
void operator delete(void* p, const std::nothrow_t&) noexcept {
  counted_delete(p);
}
void operator delete[](void* p, const std::nothrow_t&) noexcept {
  counted_delete(p);
}
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept {
  counted_delete(p);
}
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept {
  counted_delete(p);
}

namespace mc = maskcheck;
using maskcheck::testing::maskcheck_cli;
using maskcheck::testing::temp_path;
using nlohmann::json;

namespace {

template <class T>
T sample(const rc::Gen<T>& gen, std::uint64_t seed, int size = 100) {
  return gen(rc::Random(seed), size).value();
}

// ---- lengths -----------------------------------------------------------------------------------

TEST(Lengths, regularLengthsSitAtTileBoundaries) {
  std::set<std::int64_t> seen;
  for (std::uint64_t s = 0; s < 4000; ++s) seen.insert(sample(mc::gen_length(260), s));
  EXPECT_LE(*seen.rbegin(), 260);
  // Multiples of 16, 32, ..., 256 and one off either side, among them ones no tile size below
  // names (48, 80, 208: multiples of 16 only).
  for (std::int64_t v : {0,  1,  2,  15,  16,  17,  47,  48,  49,  63,  64,  65,
                         79, 80, 81, 127, 128, 129, 207, 208, 209, 255, 256, 257})
    EXPECT_TRUE(seen.count(v)) << v;
}

TEST(Lengths, longLengthsSitAtSplitKvAndBlockBoundaries) {
  std::set<std::int64_t> seen;
  for (std::uint64_t s = 0; s < 4000; ++s) seen.insert(sample(mc::gen_long_length(261, 8192), s));
  EXPECT_GE(*seen.begin(), 261);
  EXPECT_LE(*seen.rbegin(), 8192);
  for (std::int64_t v : {511, 512, 513, 1024, 2047, 4095, 4096, 4097, 8191, 8192, 768, 769, 1279})
    EXPECT_TRUE(seen.count(v)) << v;
}

// The default tier: regular cases as before (lengths up to 260) and 1 in 8 long: decode-shaped
// attention over up to 8k keys, softmax and cross-entropy rows up to 32k.
TEST(Tiers, defaultDrawsCheapLongCases) {
  const mc::CaseLimits small = mc::tier_limits(mc::SizeTier::small);
  std::int64_t max_lk = 0, max_row = 0, max_v = 0, decode = 0, n = 2000;
  for (std::uint64_t s = 0; s < std::uint64_t(n); ++s) {
    const auto a = sample(mc::gen_attention_case(small), s).problem;
    max_lk = std::max(max_lk, a.mask.Lk);
    if (a.mask.Lk > 260) {
      ++decode;
      EXPECT_LE(a.mask.Lq, 4);
      EXPECT_LE(a.H, 4);
      EXPECT_LE(a.D, 64);
    } else {
      EXPECT_LE(a.mask.Lq, 260);
    }
    EXPECT_LE(a.mask.B * a.H * std::max<std::int64_t>(a.mask.Lq, 1) *
                  std::max<std::int64_t>(a.mask.Lk, 1) * a.D,
              small.max_work);
    max_row = std::max(max_row, sample(mc::gen_softmax_case(small), s).problem.mask.Lk);
    max_v = std::max(max_v, sample(mc::gen_loss_case(small), s).problem.V);
  }
  EXPECT_EQ(max_lk, 8192);
  EXPECT_EQ(max_row, 32768);
  EXPECT_EQ(max_v, 32768);
  EXPECT_NEAR(double(decode) / double(n), 1.0 / small.long_share, 0.03);
}

TEST(Tiers, mediumReachesFourKAndLargeRowsOfSixteenToThirtyTwoK) {
  const mc::CaseLimits medium = mc::tier_limits(mc::SizeTier::medium);
  const mc::CaseLimits large = mc::tier_limits(mc::SizeTier::large);
  std::int64_t mq = 0, mk = 0, lk = 0, l16 = 0;
  for (std::uint64_t s = 0; s < 600; ++s) {
    const auto m = sample(mc::gen_attention_case(medium), s).problem.mask;
    if (m.Lk <= medium.max_len) {
      mq = std::max(mq, m.Lq);
      mk = std::max(mk, m.Lk);
    }
    const auto l = sample(mc::gen_softmax_case(large), s).problem.mask;
    lk = std::max(lk, l.Lk);
    l16 += l.Lk >= 16384;
  }
  EXPECT_GE(mq, 2048);
  EXPECT_EQ(mk, 4096);
  EXPECT_GE(lk, 32768);
  EXPECT_GE(l16, 100);  // rows of 16k and more are common in the large tier
}

TEST(Tiers, namesAndDescriptions) {
  for (auto t : {mc::SizeTier::small, mc::SizeTier::medium, mc::SizeTier::large}) {
    EXPECT_EQ(mc::size_tier_from_string(mc::to_string(t)), t);
    EXPECT_NE(mc::describe_tier(t).find("memory <="), std::string::npos);
  }
  EXPECT_THROW(mc::size_tier_from_string("huge"), mc::InvalidArgument);
  EXPECT_EQ(mc::tier_limits(mc::SizeTier::small).max_bytes, std::uint64_t{256} << 20);
  EXPECT_EQ(mc::tier_limits(mc::SizeTier::medium).max_bytes, std::uint64_t{1} << 30);
  EXPECT_EQ(mc::tier_limits(mc::SizeTier::large).max_bytes, std::uint64_t{4} << 30);
}

// ---- budgets -----------------------------------------------------------------------------------

// Every case a tier draws, at every size, is within its work cap and memory budget (drawn, not
// run: the descriptions are cheap even for the large tier).
TEST(Budgets, everyTiersCasesStayWithinItsWorkAndMemory) {
  for (auto t : {mc::SizeTier::small, mc::SizeTier::medium, mc::SizeTier::large}) {
    const mc::CaseLimits l = mc::tier_limits(t);
    std::uint64_t most = 0;
    for (std::uint64_t s = 0; s < 400; ++s) {
      const int size = static_cast<int>(s % 101);
      const auto a = sample(mc::gen_attention_case(l), s, size).problem;
      const auto x = sample(mc::gen_softmax_case(l), s, size).problem;
      const auto m = sample(mc::gen_mask_case(l), s, size).spec;
      const auto e = sample(mc::gen_loss_case(l), s, size).problem;
      const std::uint64_t bytes[] = {
          mc::attention_case_bytes(a.mask.B, a.H, a.Hkv, a.mask.Lq, a.mask.Lk, a.D),
          mc::softmax_case_bytes(x.mask.B, x.H, x.mask.Lq, x.mask.Lk),
          mc::mask_case_bytes(m.B, m.Lq, m.Lk), mc::loss_case_bytes(e.N, e.V)};
      for (std::uint64_t b : bytes) {
        EXPECT_LE(b, l.max_bytes) << mc::to_string(t) << " seed " << s;
        most = std::max(most, b);
      }
      EXPECT_LE(a.mask.B * a.H * std::max<std::int64_t>(a.mask.Lq, 1) *
                    std::max<std::int64_t>(a.mask.Lk, 1) * a.D,
                l.max_work);
      EXPECT_LE(x.mask.B * x.H * std::max<std::int64_t>(x.mask.Lq, 1) *
                    std::max<std::int64_t>(x.mask.Lk, 1),
                l.max_work / 4);
    }
    // The larger tiers do use their budget: the caps are what bounds them.
    if (t != mc::SizeTier::small) {
      EXPECT_GE(most, l.max_bytes / 8) << mc::to_string(t);
    }
  }
}

// The estimates bound what a property really holds: every property of the reference and the CPU
// kernels, on cases cut to a small budget from long lengths, peaks (heap bytes allocated during
// the case and live at once) within the budget.
TEST(Budgets, everyPropertysMeasuredPeakStaysWithinTheBudget) {
  mc::CaseLimits l = mc::tier_limits(mc::SizeTier::medium);
  l.max_work = std::int64_t{1} << 22;  // cheap enough for the reference, long enough to cut
  l.max_bytes = std::uint64_t{6} << 20;
  for (const char* impl : {"reference", "cpu"})
    for (const auto& prop : mc::property_catalogue()) {
      if (prop.op == mc::Op::lm_labels || prop.op == mc::Op::mlm) continue;  // no tiers there
      const auto ref = mc::builtin_registry().find(impl);
      ASSERT_TRUE(ref);
      std::int64_t worst = 0;
      rc::detail::TestParams params;
      params.seed = 20261123;
      params.maxSuccess = mc::ci_budget() ? 12 : 25;
      params.maxSize = 100;
      params.disableShrinking = true;
      rc::detail::TestMetadata meta;
      meta.id = prop.name;
      struct Quiet : rc::detail::TestListener {
        void onTestCaseFinished(const rc::detail::CaseDescription&) override {}
        void onShrinkTried(const rc::detail::CaseDescription&, bool) override {}
        void onTestFinished(const rc::detail::TestMetadata&,
                            const rc::detail::TestResult&) override {}
      } quiet;
      const auto result = rc::detail::checkTestable(
          [&] {
            const std::int64_t before = g_live.load();
            g_peak.store(before);
            prop.check(*ref, l);
            worst = std::max(worst, g_peak.load() - before);
          },
          meta, params, quiet);
      EXPECT_TRUE(result.template is<rc::detail::SuccessResult>()) << impl << " " << prop.name;
      EXPECT_LE(worst, static_cast<std::int64_t>(l.max_bytes))
          << impl << " " << prop.name << " peaked at " << worst << " bytes";
      RecordProperty(std::string(impl) + " " + prop.name, std::to_string(worst));
    }
}

// ---- the default run reaches the kernels' length thresholds -----------------------------------

TEST(Coverage, defaultRunReachesLongKeysAndTiledQueries) {
  mc::VerifyConfig config;
  config.seed = 20261123;
  config.cases = mc::kCiCases;  // even the CI budget reaches them
  const auto ref = mc::builtin_registry().find("reference");
  std::map<std::string, int> coverage;
  for (const auto& prop : mc::property_catalogue()) {
    if (prop.op != mc::Op::attention && prop.op != mc::Op::softmax) continue;
    const auto o = mc::run_property(*ref, prop, config);
    ASSERT_NE(o.status, mc::Status::failed) << prop.name << ": " << o.message;
    for (const auto& [tag, n] : o.coverage) coverage[tag] += n;
  }
  for (const char* tag : {"Lk>=512", "Lk>=4096", "Lk>=16384", "Lq>=64", "Lq>=128"})
    EXPECT_GT(coverage[tag], 0) << tag;
}

// ---- chunks and shards -------------------------------------------------------------------------

TEST(Chunks, aDefaultRunIsOneChunkWithTheSeedsAndReplayItAlwaysHad) {
  EXPECT_EQ(mc::chunk_count(100), 1);
  EXPECT_EQ(mc::chunk_count(30), 1);
  EXPECT_EQ(mc::chunk_count(101), 2);
  EXPECT_EQ(mc::chunk_cases(250, 2), 50);
  EXPECT_EQ(mc::chunk_seed(12345, 0), 12345u);
  EXPECT_NE(mc::chunk_seed(12345, 1), 12345u);
  mc::VerifyConfig config;
  config.seed = 7;
  EXPECT_EQ(mc::selected_chunks(config, "reference", "masks.x"), std::vector<int>{0});
  EXPECT_EQ(mc::replay_command(config, "reference", "masks.x", 0),
            "maskcheck verify --impl reference --property masks.x --seed 7 --cases 100");
  config.cases = 300;
  EXPECT_EQ(mc::replay_command(config, "reference", "masks.x", 2),
            "maskcheck verify --impl reference --property masks.x --seed 7 --cases 300 --chunk 2");
  config.size = mc::SizeTier::medium;
  config.shard = mc::Shard{1, 4};
  EXPECT_EQ(mc::replay_command(config),
            "maskcheck verify --seed 7 --cases 300 --size medium --shard 1/4");
}

TEST(Shards, everyChunkBelongsToExactlyOneShard) {
  mc::VerifyConfig config;
  config.cases = 1000;
  for (int n : {1, 2, 3, 7}) {
    std::vector<int> all;
    for (int k = 0; k < n; ++k) {
      config.shard = mc::Shard{k, n};
      for (int j : mc::selected_chunks(config, "cpu", "attention.agreesWithReference"))
        all.push_back(j);
    }
    std::sort(all.begin(), all.end());
    std::vector<int> want(10);
    for (int j = 0; j < 10; ++j) want[j] = j;
    EXPECT_EQ(all, want) << n << " shards";
  }
  EXPECT_EQ(mc::parse_shard("3/4").index, 3);
  for (const char* bad : {"4/4", "1", "-1/4", "1/0", "a/b", "1/4x", "", "/4"})
    EXPECT_THROW(mc::parse_shard(bad), mc::InvalidArgument) << bad;
}

// The rows that can differ between two runs of the same cases: the time taken, and the run's
// own machine, date and duration.
json comparable(json doc) {
  for (const char* key : {"about", "duration_s"}) doc.erase(key);
  for (auto& r : doc.at("results")) r.erase("seconds");
  return doc;
}

TEST(Shards, nShardsTogetherEqualTheUnshardedRun) {
  mc::Registry registry = mc::builtin_registry();
  registry.add(mc::mutant_registry().find("mutant:causal-off-by-one"));  // failures to merge
  mc::VerifyConfig config;
  config.seed = 20261123;
  config.cases = 220;    // three chunks: 100, 100, 20
  config.max_size = 30;  // smaller cases: the merge is under test here, not the kernels
  config.impls = "reference,cpu,mutant:causal-off-by-one";
  config.properties = {"masks.agreesWithReference", "softmax.agreesWithReference",
                       "attention.agreesWithReference", "cross_entropy.agreesWithReference"};
  const mc::VerifyPlan plan = mc::plan_verify(registry, config);
  const json whole = mc::verify_json(config, mc::run_verify(plan, config), 1.0);
  for (int n : {2, 3}) {
    std::vector<json> shards;
    std::vector<std::string> names;
    for (int k = 0; k < n; ++k) {
      mc::VerifyConfig c = config;
      c.shard = mc::Shard{k, n};
      mc::VerifyPlan mine = plan;
      mc::restrict_to_shard(mine, c);
      shards.push_back(mc::verify_json(c, mc::run_verify(mine, c), 1.0));
      names.push_back("shard" + std::to_string(k));
    }
    const json merged = mc::reports::merge_verify_shards(shards, names);
    EXPECT_EQ(merged.at("shards").at("missing").size(), 0u);
    json a = comparable(whole), b = comparable(merged);
    b.erase("shards");
    EXPECT_EQ(a, b) << n << " shards; unsharded:\n"
                    << a.dump(1).substr(0, 4000) << "\nmerged:\n"
                    << b.dump(1).substr(0, 4000);
  }
  // The mutant failed in every chunk; the row shows the first, replayable alone.
  for (const auto& r : whole.at("results"))
    if (r.at("implementation") == "mutant:causal-off-by-one" &&
        r.at("property") == "attention.agreesWithReference") {
      EXPECT_EQ(r.at("status"), "failed");
      EXPECT_EQ(r.at("failed_chunks").at(0), 0);
      EXPECT_NE(r.at("replay").get<std::string>().find("--cases 220 --chunk 0 --max-size 30"),
                std::string::npos);
    }
}

TEST(Shards, mergeRefusesDuplicatesAndShardsOfOtherRuns) {
  json a = {{"schema", "maskcheck.verify/1"},
            {"seed", 1},
            {"shard", {{"index", 0}, {"count", 2}, {"run", "maskcheck verify --seed 1"}}},
            {"results", json::array()}};
  EXPECT_THROW(mc::reports::merge_verify_shards({a, a}, {"a.json", "b.json"}), std::runtime_error);
  json b = a;
  b["shard"]["count"] = 3;
  b["shard"]["index"] = 1;
  EXPECT_THROW(mc::reports::merge_verify_shards({a, b}, {"a.json", "b.json"}), std::runtime_error);
  const json merged = mc::reports::merge_verify_shards({a}, {"a.json"});
  EXPECT_EQ(merged.at("shards").at("missing"), json::array({1}));
  EXPECT_NE(mc::reports::shards_note(merged).find("shard 1 missing"), std::string::npos);
}

// ---- the command line --------------------------------------------------------------------------

json read_json(const std::string& path) {
  return mc::read_json_file(path);
}

TEST(Cli, shardsMergeIntoTheUnshardedReportAndCompare) {
  const std::string dir = temp_path("shards");
  std::filesystem::create_directories(dir + "/sharded");
  const std::string common =
      "verify --impl reference --op masks --cases 130 --seed 5 --no-counterexamples";
  auto r = maskcheck_cli(common + " --json " + dir + "/verify.json");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("size small"), std::string::npos) << r.out;
  for (int k = 0; k < 3; ++k) {
    const std::string file = dir + "/sharded/verify-shard-" + std::to_string(k) + ".json";
    r = maskcheck_cli(common + " --shard " + std::to_string(k) + "/3 --json " + file);
    ASSERT_EQ(r.code, 0) << r.out;
    EXPECT_NE(r.out.find("replay: maskcheck verify --impl reference --op masks --seed 5 "
                         "--cases 130 --shard " +
                         std::to_string(k) + "/3"),
              std::string::npos)
        << r.out;
  }
  std::vector<json> shards;
  std::vector<std::string> names;
  for (int k = 0; k < 3; ++k) {
    names.push_back(dir + "/sharded/verify-shard-" + std::to_string(k) + ".json");
    shards.push_back(read_json(names.back()));
    EXPECT_EQ(shards.back().at("shard").at("index"), k);
  }
  json merged = mc::reports::merge_verify_shards(shards, names);
  merged.erase("shards");
  EXPECT_EQ(comparable(read_json(dir + "/verify.json")), comparable(merged));

  // report: the shards make one matrix, the unsharded run's.
  r = maskcheck_cli("report " + names[0] + " " + names[1] + " " + names[2] + " --out " + dir +
                    "/r-sharded");
  ASSERT_EQ(r.code, 0) << r.out;
  r = maskcheck_cli("report " + dir + "/verify.json --out " + dir + "/r-whole");
  ASSERT_EQ(r.code, 0) << r.out;
  auto matrix = [](const std::string& md_path) {
    std::ifstream in(md_path);
    std::string line, rows;
    while (std::getline(in, line))
      if (line.rfind("| masks.", 0) == 0) rows += line + "\n";
    return rows;
  };
  EXPECT_FALSE(matrix(dir + "/r-whole/report.md").empty());
  EXPECT_EQ(matrix(dir + "/r-sharded/report.md"), matrix(dir + "/r-whole/report.md"));
  std::ifstream md(dir + "/r-sharded/report.md");
  const std::string text{std::istreambuf_iterator<char>(md), {}};
  EXPECT_NE(text.find("merged from shards 0, 1, 2 of 3"), std::string::npos);
  // A missing shard is said, not hidden.
  r = maskcheck_cli("report " + names[0] + " " + names[2] + " --out " + dir + "/r-missing");
  ASSERT_EQ(r.code, 0) << r.out;
  std::ifstream missing(dir + "/r-missing/report.md");
  EXPECT_NE(std::string(std::istreambuf_iterator<char>(missing), {}).find("shard 1 missing"),
            std::string::npos);
  // The same shard twice is an input error.
  r = maskcheck_cli("report " + names[0] + " " + names[0] + " --out " + dir + "/r-twice");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("are both shard 0/3"), std::string::npos) << r.out;
  // compare reads a directory of shards as the run they make.
  r = maskcheck_cli("compare " + dir + "/verify.json " + dir + "/sharded");
  EXPECT_EQ(r.code, 0) << r.out;
}

TEST(Cli, sizeShardAndChunkAreValidated) {
  const struct {
    std::string args, message;
  } bad[] = {
      {"verify --impl reference --op masks --size huge", "must be small, medium or large"},
      {"verify --impl reference --op masks --size ''", "must be small, medium or large"},
      {"verify --impl reference --op masks --shard 4/4", "must be K/N"},
      {"verify --impl reference --op masks --shard 1", "must be K/N"},
      {"verify --impl reference --op masks --shard 1/x", "must be K/N"},
      {"verify --impl reference --op masks --cases 100 --chunk 1", "below the number of chunks"},
      {"verify --impl reference --op masks --chunk 0 --shard 0/2", "excludes"},
  };
  for (const auto& b : bad) {
    const auto r = maskcheck_cli(b.args);
    EXPECT_EQ(r.code, 2) << b.args << "\n" << r.out;
    EXPECT_NE(r.out.find(b.message), std::string::npos) << b.args << "\n" << r.out;
  }
  const auto help = maskcheck_cli("verify --help");
  for (const char* tier :
       {"small: Lq, Lk up to 260", "medium: Lq, Lk up to 4k", "large: Lq, Lk up to 32k",
        "memory <= 256 MiB", "memory <= 1 GiB", "memory <= 4 GiB"})
    EXPECT_NE(help.out.find(tier), std::string::npos) << tier << "\n" << help.out;
}

// A failure in a later chunk replays with --chunk, and the replay fails alone.
TEST(Cli, aFailuresReplayRunsItsChunk) {
  const std::string args =
      "verify --impl mutant:causal-off-by-one --property attention.agreesWithReference "
      "--seed 3 --cases 150 --no-counterexamples";
  auto r = maskcheck_cli(args + " --chunk 1");
  EXPECT_EQ(r.code, 1) << r.out;
  const auto at = r.out.find("  replay: ");
  ASSERT_NE(at, std::string::npos) << r.out;
  const std::string replay = r.out.substr(at + 10, r.out.find('\n', at) - at - 10);
  EXPECT_NE(replay.find("--cases 150 --chunk 1"), std::string::npos) << replay;
  r = maskcheck_cli(replay.substr(std::string("maskcheck ").size()) + " --no-counterexamples");
  EXPECT_EQ(r.code, 1) << r.out;
}

}  // namespace
