// Third-party implementations timed beside maskcheck's kernels: plugins (maskcheck bench
// --plugin LIB.so, loaded into maskcheck_bench before registration) and the helpers their targets
// share. A plugin row is `<case>/plugin:<name>`: the same case, inputs, check and counters as the
// maskcheck and LibTorch rows of that case (harness.hpp), the plugin's function called on the
// case's buffers through a call prepared once (plugin_host.hpp's PreparedCall), nothing else timed.
// Plugins run in this process: verify a plugin before you time it (a crash ends the run).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "harness.hpp"
#include "maskcheck/suite/registry.hpp"

namespace maskcheck::bench {

// Loads every library (maskcheck/suite/plugin_host.hpp's load_plugin); throws its LoadError.
void load_plugins(const std::vector<std::string>& paths);
// The plugins loaded, in the order given.
const std::vector<std::shared_ptr<const Implementation>>& plugins();
// "" when the plugin `impl` runs on the CPU (on_host) and provides `op` in dtype t, else why its
// rows are not registered.
std::string takes(const Implementation& impl, Op op, DType t);

// n elements of dtype `from` in `src` (host memory) as dtype `to`, in a new buffer: a third party's
// inputs in the dtype it stores them in (mixed storage), converted once before timing.
Buffer converted(const void* src, DType from, DType to, std::int64_t n);

// "" when `plugin` runs on the CPU, else why its rows are not registered (its rows are CPU rows:
// prepared calls take host memory).
std::string on_host(const Implementation& plugin);

// A plugin row's inputs in the dtypes the plugin stores them in: in(b, from, to, n) is the case's
// buffer b of n elements of dtype `from` itself when to == from, else a copy converted once and
// held here (keep this alive as long as the row's prepared call).
class PluginInputs {
 public:
  const void* in(const Buffer& b, DType from, DType to, std::int64_t n);

 private:
  std::vector<Buffer> copies_;
};

}  // namespace maskcheck::bench
