#include "maskcheck/suite/runner.hpp"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <limits>
#include <sstream>

#include <rapidcheck.h>

#include "maskcheck/reference/common.hpp"
#include "maskcheck/suite/about.hpp"
#include "maskcheck/suite/deviations.hpp"
#include "maskcheck/suite/forwarding.hpp"
#include "maskcheck/suite/limits.hpp"
#include "maskcheck/suite/recording.hpp"

namespace maskcheck {

std::string_view to_string(Status s) {
  switch (s) {
    case Status::passed:
      return "passed";
    case Status::failed:
      return "failed";
    case Status::skipped:
      return "skipped";
    case Status::error:
      return "error";
    case Status::deviation:
      return "deviation";
  }
  return "?";
}

Status status_from_string(std::string_view s) {
  for (Status st :
       {Status::passed, Status::failed, Status::skipped, Status::error, Status::deviation})
    if (to_string(st) == s) return st;
  throw_invalid("status", std::string(s),
                "must be one of passed, failed, skipped, error, deviation");
}

namespace {

std::uint64_t name_hash(std::string_view impl, std::string_view property) {
  std::uint64_t h = 1469598103934665603ull;  // FNV-1a over "impl/property"
  auto mix = [&h](std::string_view s) {
    for (unsigned char ch : s) h = (h ^ ch) * 1099511628211ull;
  };
  mix(impl);
  mix("/");
  mix(property);
  return h;
}

std::uint64_t splitmix64(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

}  // namespace

std::uint64_t property_seed(std::uint64_t seed, std::string_view impl, std::string_view property) {
  return splitmix64(seed ^ name_hash(impl, property));  // one SplitMix64 step
}

int chunk_count(int cases) {
  return std::max(1, (cases + kChunkCases - 1) / kChunkCases);
}

int chunk_cases(int cases, int chunk) {
  return std::clamp(cases - chunk * kChunkCases, 0, kChunkCases);
}

std::uint64_t chunk_seed(std::uint64_t property_seed, int chunk) {
  if (chunk == 0) return property_seed;
  return splitmix64(property_seed + 0x9E3779B97F4A7C15ull * static_cast<std::uint64_t>(chunk));
}

int shard_of(std::string_view impl, std::string_view property, int chunk, int count) {
  const std::uint64_t n = static_cast<std::uint64_t>(count);
  return static_cast<int>((name_hash(impl, property) % n + static_cast<std::uint64_t>(chunk)) % n);
}

std::vector<int> selected_chunks(const VerifyConfig& config, std::string_view impl,
                                 std::string_view property) {
  std::vector<int> out;
  for (int j = 0; j < chunk_count(config.cases); ++j) {
    if (config.chunk && *config.chunk != j) continue;
    if (config.shard && shard_of(impl, property, j, config.shard->count) != config.shard->index)
      continue;
    out.push_back(j);
  }
  return out;
}

Shard parse_shard(std::string_view text) {
  const std::string t(text);
  auto bad = [&]() -> Shard {
    throw_invalid("--shard", t.empty() ? "''" : t,
                  "must be K/N with shards numbered 0 to N-1 (0 <= K < N <= 100000), e.g. 0/4");
  };
  const std::size_t slash = t.find('/');
  if (slash == std::string::npos) return bad();
  auto number = [&](std::string_view s) {
    if (s.empty() || s.size() > 6 || s.find_first_not_of("0123456789") != std::string_view::npos)
      bad();
    return std::stoi(std::string(s));
  };
  Shard sh;
  sh.index = number(std::string_view(t).substr(0, slash));
  sh.count = number(std::string_view(t).substr(slash + 1));
  if (sh.count < 1 || sh.count > 100000 || sh.index >= sh.count) return bad();
  return sh;
}

namespace {

// A word for a POSIX shell: as it is when it is plain, else in single quotes.
std::string shell_word(const std::string& s) {
  const bool plain = !s.empty() && s.find_first_not_of(
                                       "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN"
                                       "OPQRSTUVWXYZ0123456789_-+=.,/:@%") == std::string::npos;
  if (plain) return s;
  std::string q = "'";
  for (char ch : s) q += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
  return q + "'";
}

}  // namespace

std::string replay_command(const VerifyConfig& c, std::string_view impl, std::string_view property,
                           std::optional<int> chunk) {
  std::ostringstream os;
  os << "maskcheck verify";
  if (!impl.empty())
    os << " --impl " << impl;
  else if (!c.impls.empty())
    os << " --impl " << c.impls;
  // The plugins the replayed selection needs (one, or all of them for the whole run).
  bool plugins = false;
  for (const auto& p : c.plugins)
    if (impl.empty() || impl == p.impl) {
      os << " --plugin " << shell_word(p.path);
      plugins = true;
    }
  if (plugins && c.plugin_timeout > 0) os << " --plugin-timeout " << c.plugin_timeout;
  if (plugins && c.plugin_memory > 0) os << " --plugin-memory " << c.plugin_memory;
  if (plugins && c.in_process) os << " --in-process";
  if (!c.dtypes.empty()) {
    os << " --dtype ";
    for (std::size_t i = 0; i < c.dtypes.size(); ++i)
      os << (i ? "," : "") << to_string(c.dtypes[i]);
  }
  if (!property.empty()) {
    os << " --property " << property;
  } else {
    if (c.op) os << " --op " << to_string(*c.op);
    if (!c.properties.empty()) {
      os << " --property ";
      for (std::size_t i = 0; i < c.properties.size(); ++i) os << (i ? "," : "") << c.properties[i];
    }
  }
  os << " --seed " << c.seed << " --cases " << c.cases;
  if (c.size != SizeTier::small) os << " --size " << to_string(c.size);
  // A property's replay runs all its chunks, or the one it names; only the whole run's command
  // keeps the shard. Chunk 0 of a one-chunk run is the run itself: no --chunk then.
  if (!chunk && property.empty()) chunk = c.chunk;
  if (chunk && (c.chunk || chunk_count(c.cases) > 1)) os << " --chunk " << *chunk;
  if (c.shard && property.empty()) os << " --shard " << c.shard->index << "/" << c.shard->count;
  if (c.max_size != 100) os << " --max-size " << c.max_size;
  if (!c.shrink) os << " --no-shrink";
  if (c.strict) os << " --strict";
  return os.str();
}

namespace {

// rapidcheck's default listener prints its own reproduce string at exit; the suite reports its
// own replay command instead, so properties run with a listener that stays quiet.
class QuietListener : public rc::detail::TestListener {
 public:
  void onTestCaseFinished(const rc::detail::CaseDescription&) override {}
  void onShrinkTried(const rc::detail::CaseDescription&, bool) override {}
  void onTestFinished(const rc::detail::TestMetadata&, const rc::detail::TestResult&) override {}
};

// rapidcheck announces a random seed of its own ("Using configuration: seed=...") when its global
// configuration first loads. maskcheck draws and prints its own seeds, so load it once silently.
void load_rapidcheck_configuration_quietly() {
  static const bool loaded = [] {
    std::ostringstream sink;
    std::streambuf* saved = std::cerr.rdbuf(sink.rdbuf());
    (void)rc::detail::configuration();
    std::cerr.rdbuf(saved);
    return true;
  }();
  (void)loaded;
}

// Properties derive problems from the drawn case (another window, the sequence alone with extra
// padding, ...). A derived problem the implementation cannot take ends the case as skipped, with
// the implementation's reason, exactly like an unsupported draw: the guard asks supports() before
// every call, so that no property has to.
class SupportGuard : public ForwardingImplementation {
 public:
  using ForwardingImplementation::ForwardingImplementation;
  std::vector<double> build_mask(const MaskSpec& spec, MaskEncoding e, DType t) const override {
    require(supports_masks(spec, e, t));
    return ForwardingImplementation::build_mask(spec, e, t);
  }
  std::vector<double> softmax(const SoftmaxProblem& p, DType t,
                              std::span<const double> x) const override {
    require(supports_softmax(p, t));
    return ForwardingImplementation::softmax(p, t, x);
  }
  AttentionResult attention(const AttentionProblem& p, DType t, std::span<const double> q,
                            std::span<const double> k, std::span<const double> v,
                            bool want_lse) const override {
    require(supports_attention(p, t, want_lse));
    return ForwardingImplementation::attention(p, t, q, k, v, want_lse);
  }
  AttentionGradients attention_backward(const AttentionProblem& p, DType t,
                                        std::span<const double> q, std::span<const double> k,
                                        std::span<const double> v,
                                        std::span<const double> dout) const override {
    require(supports_attention_backward(p, t));
    return ForwardingImplementation::attention_backward(p, t, q, k, v, dout);
  }
  AttentionResult attention_varlen(const VarlenAttentionProblem& p, DType t,
                                   std::span<const double> q, std::span<const double> k,
                                   std::span<const double> v, bool want_lse) const override {
    require(supports_attention_varlen(p, t, want_lse));
    return ForwardingImplementation::attention_varlen(p, t, q, k, v, want_lse);
  }
  AttentionResult attention_chunk(const AttentionProblem& p, DType t, std::span<const double> q,
                                  std::span<const double> k, std::span<const double> v,
                                  std::int64_t key_begin, std::int64_t key_end) const override {
    require(supports_attention_chunk(p, t));
    return ForwardingImplementation::attention_chunk(p, t, q, k, v, key_begin, key_end);
  }
  AttentionResult attention_paged(const AttentionProblem& p, const PagedKv& kv, DType t,
                                  std::span<const double> q, std::span<const double> k_cache,
                                  std::span<const double> v_cache, bool want_lse) const override {
    require(supports_attention_paged(p, kv, t, want_lse));
    return ForwardingImplementation::attention_paged(p, kv, t, q, k_cache, v_cache, want_lse);
  }
  LossResult cross_entropy(const LossProblem& p, DType t, std::span<const double> logits,
                           std::span<const std::int64_t> labels, std::span<const double> weights,
                           bool backward) const override {
    require(supports_cross_entropy(p, t));
    return ForwardingImplementation::cross_entropy(p, t, logits, labels, weights, backward);
  }
  std::vector<std::int64_t> lm_labels(const LmLabelsProblem& p, std::span<const std::int64_t> ids,
                                      std::span<const std::uint8_t> keep,
                                      std::span<const std::int32_t> prompt_lens) const override {
    require(supports_lm_labels(p));
    return ForwardingImplementation::lm_labels(p, ids, keep, prompt_lens);
  }
  MlmResult mlm(const MlmProblem& p, std::span<const std::int64_t> ids,
                std::span<const std::uint8_t> keep, std::span<const std::uint8_t> special,
                std::span<const std::uint8_t> continuation) const override {
    require(supports_mlm(p));
    return ForwardingImplementation::mlm(p, ids, keep, special, continuation);
  }

 private:
  static void require(const Support& s) {
    if (supported(s)) return;
    RC_SUCCEED("skipped: " + s.reason);
  }
};

std::string strip_quotes(std::string s) {
  if (s.size() >= 2 && s.front() == '"' && s.back() == '"') return s.substr(1, s.size() - 2);
  return s;
}

}  // namespace

namespace {

// One chunk of a property: a rapidcheck run of its own, with the chunk's seed and case count.
// Its outcome has no name, seed or timing (run_property keeps those); a failure's replay command
// and counterexample files (saved when `save`) name the chunk.
PropertyOutcome run_chunk(const Implementation& impl, const Property& prop,
                          const VerifyConfig& config, const CaseLimits& limits, std::uint64_t seed,
                          int chunk, bool save) {
  PropertyOutcome o;
  o.implementation = impl.name();
  o.property = prop.name;
  o.op = prop.op;
  o.seed = seed;
  o.replay = replay_command(config, o.implementation, o.property, chunk);

  rc::detail::TestParams params;
  params.seed = chunk_seed(seed, chunk);
  params.maxSuccess = chunk_cases(config.cases, chunk);
  params.maxSize = config.max_size;
  params.maxDiscardRatio = 10;
  params.disableShrinking = !config.shrink;
  rc::detail::TestMetadata meta;
  meta.id = o.implementation + "/" + o.property;
  meta.description = prop.summary;

  QuietListener listener;
  // The implementation under test is seen through the deviation policy: named deviations are
  // tagged on the case (or fail it, in strict mode) and every other difference stays a failure.
  const DeviationFilter filtered(impl, config.strict);
  const SupportGuard guarded(filtered);
  const auto result = rc::detail::checkTestable(
      [&] {
        reset_deviation_ledger();
        prop.check(guarded, limits);
        for (const auto& seen : deviation_ledger()) RC_TAG("deviation: " + seen.first);
      },
      meta, params, listener);

  if (result.template is<rc::detail::SuccessResult>()) {
    const auto& s = result.template get<rc::detail::SuccessResult>();
    for (const auto& [tags, count] : s.distribution) {
      bool skipped = false;
      for (const auto& raw : tags) {
        const std::string tag = strip_quotes(raw);
        if (tag.rfind("skipped: ", 0) == 0) {
          o.skip_reasons[tag.substr(9)] += count;
          skipped = true;
        } else if (tag.rfind("deviation: ", 0) == 0) {
          o.deviations[tag.substr(11)] += count;
        } else {
          o.coverage[tag] += count;
        }
      }
      if (skipped) o.skipped_cases += count;
    }
    o.cases = s.numSuccess - o.skipped_cases;
    o.status = o.cases == 0           ? Status::skipped
               : o.deviations.empty() ? Status::passed
                                      : Status::deviation;
  } else if (result.template is<rc::detail::FailureResult>()) {
    const auto& f = result.template get<rc::detail::FailureResult>();
    o.status = Status::failed;
    o.cases = f.numSuccess;
    o.message = f.description;
    o.counterexample = f.counterExample;
    if (save && !config.counterexample_dir.empty()) {
      // Exactly the shrunk case again, through a recorder, to save what the implementation got.
      // The recorder sits under the same deviation policy and support guard as the run, so the
      // case fails again exactly as it did, and it records the implementation's own outputs.
      // The error ledger is the run's: the re-run adds nothing to it.
      const auto ledger = error_ledger();
      RecordingImplementation recorder(impl);
      const DeviationFilter recorded_filtered(recorder, config.strict);
      const SupportGuard recorded_guarded(recorded_filtered);
      const auto again = rc::detail::checkTestable(
          [&] {
            recorder.begin_case();
            prop.check(recorded_guarded, limits);
          },
          meta, params, listener,
          std::unordered_map<std::string, rc::detail::Reproduce>{{meta.id, f.reproduce}});
      restore_error_ledger(ledger);
      std::string plugin;
      for (const auto& p : config.plugins)
        if (p.impl == o.implementation) plugin = p.path;
      save_counterexample(config.counterexample_dir, recorder,
                          again.template is<rc::detail::FailureResult>(), o, plugin);
    }
  } else if (result.template is<rc::detail::GaveUpResult>()) {
    const auto& g = result.template get<rc::detail::GaveUpResult>();
    o.status = Status::error;
    o.cases = g.numSuccess;
    o.message = "gave up: " + g.description;
  } else {
    o.status = Status::error;
    o.message = "rapidcheck error: " + result.template get<rc::detail::Error>().description;
  }
  return o;
}

// Adds a chunk's outcome to the property's.
void add_chunk(PropertyOutcome& o, const PropertyOutcome& part, int chunk) {
  o.cases += part.cases;
  o.skipped_cases += part.skipped_cases;
  for (const auto& [k, n] : part.skip_reasons) o.skip_reasons[k] += n;
  for (const auto& [k, n] : part.coverage) o.coverage[k] += n;
  for (const auto& [k, n] : part.deviations) o.deviations[k] += n;
  const bool bad = part.status == Status::failed || part.status == Status::error;
  if (bad && o.failed_chunks.empty()) {  // the first failing chunk is shown in full
    o.message = part.message;
    o.counterexample = part.counterexample;
    o.replay = part.replay;
    o.counterexample_files = part.counterexample_files;
  }
  if (bad) o.failed_chunks.push_back(chunk);
  // Worst wins: failed, error, then by the cases (none checked: skipped), then deviation.
  if (part.status == Status::failed || o.status == Status::failed)
    o.status = Status::failed;
  else if (part.status == Status::error || o.status == Status::error)
    o.status = Status::error;
  else
    o.status = o.cases == 0           ? Status::skipped
               : o.deviations.empty() ? Status::passed
                                      : Status::deviation;
}

}  // namespace

PropertyOutcome run_property(const Implementation& impl, const Property& prop,
                             const VerifyConfig& config) {
  PropertyOutcome o;
  o.implementation = impl.name();
  o.property = prop.name;
  o.op = prop.op;
  o.seed = property_seed(config.seed, o.implementation, o.property);
  o.replay = replay_command(config, o.implementation, o.property, config.chunk);
  o.chunks = selected_chunks(config, o.implementation, o.property);
  const auto start = std::chrono::steady_clock::now();

  if (!impl.provides(prop.op)) {
    o.status = Status::skipped;
    o.skip_reasons[impl.name() + " does not provide " + std::string(to_string(prop.op))] = 0;
    return o;
  }

  CaseLimits limits = tier_limits(config.size);
  limits.dtypes = impl.dtypes(prop.op);
  limits.attention_lse = impl.attention_lse();
  limits.score_modifiers = impl.score_modifiers();
  if (limits.dtypes.empty()) {
    o.status = Status::skipped;
    o.skip_reasons["no dtype supported for " + std::string(to_string(prop.op))] = 0;
    return o;
  }
  if (!config.dtypes.empty()) {
    std::erase_if(limits.dtypes, [&](DType t) {
      return std::find(config.dtypes.begin(), config.dtypes.end(), t) == config.dtypes.end();
    });
    if (limits.dtypes.empty()) {
      std::string asked;
      for (DType t : config.dtypes) asked += (asked.empty() ? "" : ",") + std::string(to_string(t));
      o.status = Status::skipped;
      o.skip_reasons[impl.name() + " takes none of --dtype " + asked + " for " +
                     std::string(to_string(prop.op))] = 0;
      return o;
    }
  }
  for (DType t : limits.dtypes)
    if (const Storage st = impl.storage(t); !st.uniform(prop.op, t))
      limits.storage.emplace_back(t, st);

  reset_error_ledger();
  load_rapidcheck_configuration_quietly();
  o.status = Status::skipped;
  for (int chunk : o.chunks)  // the first failing chunk of the run saves its counterexample
    add_chunk(o, run_chunk(impl, prop, config, limits, o.seed, chunk, o.failed_chunks.empty()),
              chunk);
  o.max_errors = error_ledger();
  o.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return o;
}

VerifyPlan plan_verify(const Registry& registry, const VerifyConfig& config) {
  VerifyPlan plan;
  const auto impls = registry.select(config.impls);
  std::vector<const Property*> props;
  if (config.properties.empty()) {
    for (const auto& p : property_catalogue()) props.push_back(&p);
  } else {
    for (const auto& name : config.properties) {
      const Property* p = find_property(name);
      if (!p) throw_invalid("--property", name, "unknown property (see maskcheck list)");
      props.push_back(p);
    }
  }
  for (const auto& impl : impls)
    for (const Property* p : props)
      if ((!config.op || p->op == *config.op) && impl->provides(p->op))
        plan.items.emplace_back(impl, p);
  return plan;
}

void restrict_to_shard(VerifyPlan& plan, const VerifyConfig& config) {
  VerifyPlan mine;
  for (std::size_t i = 0; i < plan.items.size(); ++i) {
    const auto& [impl, prop] = plan.items[i];
    if (selected_chunks(config, impl->name(), prop->name).empty()) continue;
    mine.items.push_back(plan.items[i]);
    mine.positions.push_back(plan.positions.empty() ? static_cast<int>(i) : plan.positions[i]);
  }
  plan = std::move(mine);
}

std::vector<PropertyOutcome> run_verify(const VerifyPlan& plan, const VerifyConfig& config,
                                        const ProgressFn& progress, const PropertyRunner& runner) {
  std::vector<PropertyOutcome> results;
  for (std::size_t i = 0; i < plan.items.size(); ++i) {
    const auto& [impl, prop] = plan.items[i];
    results.push_back(runner ? runner(*impl, *prop, config) : run_property(*impl, *prop, config));
    if (config.shard && i < plan.positions.size()) results.back().plan_index = plan.positions[i];
    if (progress) progress(i, plan.items.size(), results.back());
  }
  return results;
}

nlohmann::json verify_json(const VerifyConfig& config, const std::vector<PropertyOutcome>& results,
                           double seconds) {
  using nlohmann::json;
  json j;
  j["schema"] = "maskcheck.verify/1";
  j["seed"] = config.seed;
  j["cases"] = config.cases;
  j["size"] = std::string(to_string(config.size));
  j["chunk_cases"] = kChunkCases;
  if (config.chunk) j["chunk"] = *config.chunk;
  if (config.shard) {
    VerifyConfig whole = config;
    whole.shard.reset();
    j["shard"] = {{"index", config.shard->index},
                  {"count", config.shard->count},
                  {"run", replay_command(whole)}};
  }
  j["max_size"] = config.max_size;
  j["shrink"] = config.shrink;
  j["strict"] = config.strict;
  j["replay"] = replay_command(config);
  j["duration_s"] = seconds;
  j["about"] = about_json();
  json summary = {{"passed", 0}, {"failed", 0}, {"skipped", 0}, {"error", 0}, {"deviation", 0}};
  json rows = json::array();
  for (const auto& o : results) {
    summary[std::string(to_string(o.status))] =
        summary[std::string(to_string(o.status))].get<int>() + 1;
    rows.push_back(outcome_json(o));
  }
  j["summary"] = summary;
  j["results"] = rows;
  return j;
}

nlohmann::json outcome_json(const PropertyOutcome& o) {
  using nlohmann::json;
  json r;
  r["implementation"] = o.implementation;
  r["property"] = o.property;
  r["op"] = std::string(to_string(o.op));
  r["status"] = std::string(to_string(o.status));
  r["cases"] = o.cases;
  r["skipped_cases"] = o.skipped_cases;
  r["skip_reasons"] = o.skip_reasons;
  r["coverage"] = o.coverage;
  if (!o.deviations.empty()) r["deviations"] = o.deviations;
  r["seed"] = o.seed;
  r["seconds"] = o.seconds;
  r["replay"] = o.replay;
  json errs = json::array();
  for (const auto& e : o.max_errors)
    errs.push_back({{"tensor", e.what},
                    {"max_abs_err", e.max_abs_err},
                    {"max_rel_err", e.max_rel_err},
                    {"max_ratio_to_bound", e.max_ratio_to_bound}});
  r["max_errors"] = errs;
  if (!o.message.empty()) r["message"] = o.message;
  if (!o.counterexample.empty()) {
    json ce = json::array();
    for (const auto& [type, value] : o.counterexample)
      ce.push_back({{"type", type}, {"value", value}});
    r["counterexample"] = ce;
  }
  if (!o.counterexample_files.empty()) r["counterexample_files"] = o.counterexample_files;
  r["chunks"] = o.chunks;
  if (!o.failed_chunks.empty()) r["failed_chunks"] = o.failed_chunks;
  if (o.plan_index >= 0) r["plan_index"] = o.plan_index;
  return r;
}

PropertyOutcome outcome_from_json(const nlohmann::json& r) {
  // JSON has no infinity: nlohmann writes non-finite numbers as null, and the error maxima that
  // can be non-finite only overflow upward.
  auto error = [](const nlohmann::json& v) {
    return v.is_null() ? std::numeric_limits<double>::infinity() : v.get<double>();
  };
  PropertyOutcome o;
  o.implementation = r.at("implementation").get<std::string>();
  o.property = r.at("property").get<std::string>();
  o.op = op_from_string(r.at("op").get<std::string>());
  o.status = status_from_string(r.at("status").get<std::string>());
  o.cases = r.at("cases").get<int>();
  o.skipped_cases = r.at("skipped_cases").get<int>();
  o.skip_reasons = r.at("skip_reasons").get<std::map<std::string, int>>();
  o.coverage = r.at("coverage").get<std::map<std::string, int>>();
  o.deviations = r.value("deviations", std::map<std::string, int>());
  o.seed = r.at("seed").get<std::uint64_t>();
  o.seconds = r.at("seconds").get<double>();
  o.replay = r.at("replay").get<std::string>();
  for (const auto& e : r.at("max_errors"))
    o.max_errors.push_back({e.at("tensor").get<std::string>(), error(e.at("max_abs_err")),
                            error(e.at("max_rel_err")), error(e.at("max_ratio_to_bound"))});
  o.message = r.value("message", std::string());
  if (r.contains("counterexample"))
    for (const auto& ce : r.at("counterexample"))
      o.counterexample.emplace_back(ce.at("type").get<std::string>(),
                                    ce.at("value").get<std::string>());
  o.counterexample_files = r.value("counterexample_files", std::vector<std::string>());
  o.chunks = r.value("chunks", std::vector<int>());
  o.failed_chunks = r.value("failed_chunks", std::vector<int>());
  o.plan_index = r.value("plan_index", -1);
  return o;
}

int cases_from_env(int fallback) {
  int cases = fallback;
  if (const char* s = std::getenv("MASKCHECK_CASES"); s && *s) {
    char* end = nullptr;
    const long v = std::strtol(s, &end, 10);
    if (*end != '\0' || v < 1 || v > 1000000)
      throw_invalid("MASKCHECK_CASES", s, "must be an integer in [1, 1000000]");
    cases = static_cast<int>(v);
  }
  if (ci_budget()) cases = std::min(cases, kCiCases);
  return cases;
}

std::optional<std::uint64_t> seed_from_env() {
  const char* s = std::getenv("MASKCHECK_SEED");
  if (!s || !*s) return std::nullopt;
  return parse_seed(s, "MASKCHECK_SEED");
}

bool ci_budget() {
  const char* s = std::getenv("MASKCHECK_CI");
  return s && *s && std::string_view(s) != "0";
}

}  // namespace maskcheck
