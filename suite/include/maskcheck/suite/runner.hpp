// Runs the property catalogue against implementations through rapidcheck and collects results:
// status, case and skip counts, coverage, the shrunk counterexample of a failure, the largest
// errors seen, and the command that replays the run.
//
// Chunks and shards. Each (implementation, property) runs its cases as chunks of at most
// kChunkCases, each a rapidcheck run of its own: chunk 0 with property_seed(seed, impl, property)
// (so a run of up to 100 cases is exactly the one rapidcheck run it always was, and its seeds and
// replay commands stay valid), chunk j > 0 with chunk_seed(that seed, j). The unsharded run is
// every chunk, in order; `--shard K/N` runs the chunks that shard_of assigns to K, so that N
// shards together run exactly the chunks of the unsharded run, with the same seeds, and their
// results merge into the unsharded run's matrix (reports/shards.hpp). `--chunk J` runs chunk J
// alone: a failure's replay command names the chunk it failed in.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "maskcheck/suite/properties.hpp"
#include "maskcheck/suite/registry.hpp"
#include "maskcheck/suite/tolerance.hpp"

namespace maskcheck {

// deviation: every case passed, and some showed a named deviation (deviations.hpp); only a
// strict run turns deviations into failures.
enum class Status { passed, failed, skipped, error, deviation };
std::string_view to_string(Status s);
Status status_from_string(std::string_view s);  // throws InvalidArgument

// A plugin library in the run (maskcheck verify --plugin), named for replay commands.
struct PluginRef {
  std::string impl;  // "plugin:<name>"
  std::string path;  // the library
};

// --shard K/N: shard K (0 <= K < N) of N.
struct Shard {
  int index = 0;
  int count = 1;
};
// "K/N" with 0 <= K < N <= 100000; throws InvalidArgument naming --shard otherwise.
Shard parse_shard(std::string_view text);

struct VerifyConfig {
  std::uint64_t seed = 0;
  int cases = 100;
  SizeTier size = SizeTier::small;  // --size: lengths, work and memory of the cases
  std::optional<Shard> shard;       // --shard K/N: only the chunks of shard K
  std::optional<int> chunk;         // --chunk J: only chunk J of each property
  int max_size = 100;
  bool shrink = true;
  std::string impls;                    // comma-separated, empty: all
  std::optional<Op> op;                 // only this operation
  std::vector<DType> dtypes;            // --dtype: only cases of these dtypes (empty: all)
  std::vector<std::string> properties;  // only these properties (empty: all)
  bool strict = false;                  // named deviations fail (deviations.hpp)
  std::string counterexample_dir;       // save failing cases here (recording.hpp); empty: don't
  std::vector<PluginRef> plugins;       // plugin libraries of the run (replayed with --plugin)
  double plugin_timeout = 0;            // --plugin-timeout in seconds; 0: the default
  std::uint64_t plugin_memory = 0;      // --plugin-memory in bytes; 0: the default
  bool in_process = false;              // --in-process: plugins run in this process
};

struct PropertyOutcome {
  std::string implementation;
  std::string property;
  Op op = Op::masks;
  Status status = Status::passed;
  int cases = 0;          // cases checked (not skipped)
  int skipped_cases = 0;  // cases the implementation did not support
  std::map<std::string, int> skip_reasons;
  std::map<std::string, int> coverage;
  std::map<std::string, int> deviations;  // named deviation -> cases that showed it
  std::string message;                    // failure or error description
  std::vector<std::pair<std::string, std::string>> counterexample;  // (type, value)
  std::uint64_t seed = 0;  // the property's own rapidcheck seed
  double seconds = 0;
  std::vector<ErrorRecord> max_errors;
  std::string replay;                             // command line reproducing this property alone
  std::vector<std::string> counterexample_files;  // .safetensors files of the failing case
  std::vector<int> chunks;                        // the chunks run, ascending
  std::vector<int> failed_chunks;  // chunks that failed or errored; message, counterexample
                                   // and replay are those of the first
  int plan_index = -1;             // with --shard: the position in the unsharded plan
};

inline constexpr int kChunkCases = 100;
int chunk_count(int cases);             // ceil(cases / kChunkCases), at least 1
int chunk_cases(int cases, int chunk);  // cases of chunk `chunk` (the last may be short)
std::uint64_t chunk_seed(std::uint64_t property_seed, int chunk);  // chunk 0: property_seed
// The shard, of `count`, that runs chunk `chunk` of (impl, property): a property's chunks go
// round-robin over the shards from a start given by a hash of its name, so that the assignment
// does not depend on which implementations and properties the run selects.
int shard_of(std::string_view impl, std::string_view property, int chunk, int count);
// The chunks of (impl, property) that `config` runs: all, --chunk's, or --shard's.
std::vector<int> selected_chunks(const VerifyConfig& config, std::string_view impl,
                                 std::string_view property);

// The rapidcheck seed of one (implementation, property) pair, derived from the run's seed so
// that filtering the run does not change it.
std::uint64_t property_seed(std::uint64_t seed, std::string_view impl, std::string_view property);

// The command line that reproduces `config` (with an optional single impl / property). The
// whole run's command keeps --shard; a property's replays all its chunks, or `chunk` alone.
std::string replay_command(const VerifyConfig& config, std::string_view impl = {},
                           std::string_view property = {}, std::optional<int> chunk = {});

PropertyOutcome run_property(const Implementation& impl, const Property& prop,
                             const VerifyConfig& config);

struct VerifyPlan {
  std::vector<std::pair<std::shared_ptr<const Implementation>, const Property*>> items;
  // After restrict_to_shard: each item's position in the unsharded plan.
  std::vector<int> positions;
};
// Resolves the selection (throws InvalidArgument on unknown names).
VerifyPlan plan_verify(const Registry& registry, const VerifyConfig& config);
// Keeps the items that have a chunk in config.shard (all without one) and records where they
// stood in the whole plan.
void restrict_to_shard(VerifyPlan& plan, const VerifyConfig& config);

using ProgressFn =
    std::function<void(std::size_t index, std::size_t total, const PropertyOutcome&)>;
// Runs one item of a plan. The default is run_property in this process; `verify --plugin` runs
// a plugin's properties in child processes instead.
using PropertyRunner =
    std::function<PropertyOutcome(const Implementation&, const Property&, const VerifyConfig&)>;
std::vector<PropertyOutcome> run_verify(const VerifyPlan& plan, const VerifyConfig& config,
                                        const ProgressFn& progress = {},
                                        const PropertyRunner& runner = {});

// Results as JSON (schema "maskcheck.verify/1"), with machine and build information.
nlohmann::json verify_json(const VerifyConfig& config, const std::vector<PropertyOutcome>& results,
                           double seconds);
// One row of its "results", and back (non-finite errors, written as null, read as +inf).
// Throws nlohmann::json::exception or InvalidArgument on a malformed row.
nlohmann::json outcome_json(const PropertyOutcome& o);
PropertyOutcome outcome_from_json(const nlohmann::json& row);

// Environment knobs shared by the CLI and the test executables.
//   MASKCHECK_CASES  case count per property (and a cap on it)
//   MASKCHECK_CI=1   CI budget: caps case counts at kCiCases and benchmarks at CI sizes
//   MASKCHECK_SEED   the run's seed (default: random, printed first)
inline constexpr int kCiCases = 30;
int cases_from_env(int fallback);
std::optional<std::uint64_t> seed_from_env();
bool ci_budget();

}  // namespace maskcheck
