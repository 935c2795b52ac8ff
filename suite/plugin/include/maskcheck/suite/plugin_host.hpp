// The host side of the plugin ABI (maskcheck/plugin.h): loading a plugin library into this
// process as an Implementation named "plugin:<name>", and running its properties in child
// processes so that a plugin that crashes or hangs fails instead of taking the run down.
//
// Isolation: the parent never loads the library. `probe_plugin` runs a worker (this executable,
// `maskcheck plugin-worker`, found through /proc/self/exe) that loads it and reports what it
// declares; `isolated_plugin` turns that into a stand-in Implementation for planning and
// listing; `run_isolated` runs one property of it in a fresh worker and reads back the
// PropertyOutcome. The worker reports before and after every plugin call, so a worker that
// stays silent longer than the timeout is killed (SIGKILL) and the property fails naming the
// call it was in; so does a worker that dies of a signal or exits without a result.
#pragma once

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "maskcheck/suite/registry.hpp"
#include "maskcheck/suite/runner.hpp"

namespace maskcheck::plugin {

// A library that cannot be used as a plugin: missing or unreadable, not a shared object, no
// entry symbol, another ABI version, an invalid table, a crash or hang while loading. An input
// error (maskcheck exits 2).
class LoadError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// What a plugin declares (its maskcheck_plugin table), as plain data.
struct PluginInfo {
  std::string path;  // the library, as loaded
  std::string name;  // the plugin's own name; the implementation is "plugin:<name>"
  std::string version, description;
  std::uint32_t abi_major = 0, abi_minor = 0;
  std::int32_t device_type = 0, device_id = 0;  // DLDeviceType
  bool keep_tensor = false;                     // MASKCHECK_FLAG_KEEP_TENSOR
  bool lse = true;                              // not MASKCHECK_FLAG_NO_LSE
  bool additive_mask = false;                   // MASKCHECK_FLAG_ADDITIVE_MASK (ABI 1.1)
  bool varlen = false;                          // attention_varlen_forward (ABI 1.1)
  std::vector<std::pair<Op, std::vector<DType>>> ops;
  // attention_backward's dtypes (ABI 1.2), some of attention's; empty: the plugin has none.
  std::vector<DType> backward;
  // cross_entropy_upstream_dtypes (ABI 1.2), some of cross_entropy's: the dtypes in which
  // cross_entropy takes an upstream gradient; empty: none.
  std::vector<DType> ce_upstream;
  // score_modifiers (ABI 1.3): the score modifiers attention_forward applies.
  ScoreModifierSupport modifiers;
  // attention_features (ABI 1.5): attention_forward over a paged KV cache, and split-KV chunks.
  bool paged = false, key_chunk = false;
  // Mixed storage (ABI 1.1): the dtypes whose tensors are not all stored in the dtype itself.
  std::vector<std::pair<DType, Storage>> storage;

  std::string impl_name() const { return "plugin:" + name; }
  std::vector<Op> op_list() const;
  std::vector<DType> dtypes(Op op) const;  // empty when the op is not provided
  Storage storage_for(DType t) const;      // every tensor in t (the additive mask in f32) unless
                                           // the plugin declared otherwise
  std::string device() const;              // "cpu", "cuda:0", ...
  std::string summary() const;             // description, version, ABI, device, library
  nlohmann::json to_json() const;
  static PluginInfo from_json(const nlohmann::json& j);
  // Why the plugin has no attention backward (an ABI before 1.2, or none declared), or "".
  std::string no_backward() const;
  // Why the plugin's cross_entropy takes no upstream gradient in dtype t, or "".
  std::string no_ce_upstream(DType t) const;
  // Why attention_forward takes no paged KV cache (paged) or no split-KV chunk, or "".
  std::string no_attention_feature(bool paged_kv) const;
};

// Default of --plugin-timeout: the longest a worker may stay silent (one plugin call, or the
// work between two calls), in seconds.
inline constexpr double kDefaultTimeout = 60;

// Reported around every call into a plugin (the worker forwards these to its parent).
struct CallObserver {
  virtual ~CallObserver() = default;
  // function: "attention_forward", ...; problem: a one-line description of the call.
  virtual void before_call(const std::string& function, bool query, const std::string& problem) = 0;
  virtual void after_call() = 0;
};

// Loads the plugin into this process (dlopen; it stays loaded while the implementation lives).
// Throws LoadError. `observer`, when given, must outlive the implementation.
std::shared_ptr<const Implementation> load_plugin(const std::string& path,
                                                  CallObserver* observer = nullptr);
// The info of an implementation made by load_plugin or isolated_plugin, else nullptr.
const PluginInfo* plugin_info(const Implementation& impl);

// One operation of a plugin loaded into this process (load_plugin), prepared once on memory the
// caller owns, for `maskcheck bench --plugin`: host memory (CPU plugins only), every tensor in the
// dtype the plugin stores it in for the case's dtype (impl.storage(t); the caller converts its
// inputs), the mask descriptor (and the keep or additive tensor the plugin asked for) built once.
// run() calls the plugin's function and nothing else: no copies, no guard bytes, no checks (the
// benchmark checks the result once against the reference before it times it).
class PreparedCall {
 public:
  virtual ~PreparedCall() = default;
  virtual void run() = 0;  // throws std::runtime_error when the plugin does not return OK
};
// Each throws Unsupported with the plugin's reason when its query declines the problem, and
// std::invalid_argument for an implementation that is not a CPU plugin loaded here.
//   softmax: x, y [B, H, Lq, Lk]
std::unique_ptr<PreparedCall> prepare_softmax(const Implementation& plugin, const SoftmaxProblem& p,
                                              DType t, const void* x, void* y);
//   attention: q, out [B, H, Lq, D], k, v [B, Hkv, Lk, D]; no log-sum-exp
std::unique_ptr<PreparedCall> prepare_attention(const Implementation& plugin,
                                                const AttentionProblem& p, DType t, const void* q,
                                                const void* k, const void* v, void* out);
//   attention backward (ABI 1.2): q, dout, dq [B, H, Lq, D], k, v, dk, dv [B, Hkv, Lk, D]; dout in
//   the storage of out, each gradient in its operand's
std::unique_ptr<PreparedCall> prepare_attention_backward(const Implementation& plugin,
                                                         const AttentionProblem& p, DType t,
                                                         const void* q, const void* k,
                                                         const void* v, const void* dout, void* dq,
                                                         void* dk, void* dv);
//   cross-entropy forward + backward: logits, dlogits [N, V], labels [N], losses [N] (float32,
//   float64 for f64); the reduced loss goes to *loss after each run
std::unique_ptr<PreparedCall> prepare_cross_entropy(const Implementation& plugin,
                                                    const LossProblem& p, DType t,
                                                    const void* logits, const std::int64_t* labels,
                                                    void* losses, void* dlogits, double* loss);

// Loads the plugin in a worker process and returns what it declares. Throws LoadError.
// memory_limit: bytes the worker's processes may hold resident (0: default_worker_memory()).
PluginInfo probe_plugin(const std::string& path, double timeout_s, std::uint64_t memory_limit = 0);
// A stand-in for a probed plugin: it answers name, description, ops and dtypes; its operations
// are never called in this process (run_isolated runs them in a worker).
std::shared_ptr<const Implementation> isolated_plugin(PluginInfo info);
// A PropertyRunner: run_property, except that the properties of a probed plugin run in a worker
// process each (see the header comment), with config.plugin_timeout.
PropertyOutcome run_property_isolated(const Implementation& impl, const Property& prop,
                                      const VerifyConfig& config);

// The worker: `maskcheck plugin-worker` (a hidden subcommand). With `property` empty it
// reports the plugin's info, otherwise the outcome of that property. Its messages go to
// `result_fd`; with -1 only the result goes to standard output (for running it by hand, e.g.
// under a debugger). Ends the process without running static destructors.
// Every worker runs under a sandbox process (the first process of the worker's process group,
// a child subreaper): it watches the resident memory and the number of the processes the plugin
// runs in (the worker and everything it started, also what escaped with setsid), kills them all
// above memory_limit or kMaxWorkerProcesses (telling the parent why), and when the worker ends,
// is killed or times out, kills and reaps whatever the plugin left running. No orphans.
inline constexpr int kMaxWorkerProcesses = 256;
// Half the machine's memory, at most 16 GiB.
std::uint64_t default_worker_memory();

struct WorkerOptions {
  std::string plugin;
  std::string property;
  std::uint64_t seed = 0;
  int cases = 100;
  int max_size = 100;
  std::string size = "small";  // --size, --shard, --chunk of the run (empty: none)
  std::string shard;
  int chunk = -1;
  bool shrink = true;
  bool strict = false;             // named deviations fail (deviations.hpp)
  std::vector<DType> dtypes;       // --dtype: only cases of these dtypes
  std::string counterexample_dir;  // save failing cases here (recording.hpp); empty: don't
  // Every plugin call in a forked process of its own: the rerun of a property whose worker died,
  // so that the crash fails its case and is shrunk (see the file comment of isolation.cpp).
  bool isolate_calls = false;
  int result_fd = -1;
  std::uint64_t sandbox_memory = 0;  // > 0: run under the sandbox with this memory limit
};
[[noreturn]] void worker_main(const WorkerOptions& options);

}  // namespace maskcheck::plugin
