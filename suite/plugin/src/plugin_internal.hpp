// Shared between the loader and the isolation layer.
#pragma once

#include <utility>

#include "maskcheck/suite/plugin_host.hpp"

namespace maskcheck::plugin::detail {

// What every implementation backed by a plugin answers from its info: the one loaded into this
// process (loader.cpp) and the stand-in for one run in workers (isolation.cpp).
class PluginBase : public Implementation {
 public:
  explicit PluginBase(PluginInfo info) : info_(std::move(info)) {}
  const PluginInfo& info() const { return info_; }
  std::string name() const override { return info_.impl_name(); }
  std::string description() const override { return info_.summary(); }
  bool third_party() const override { return true; }
  bool attention_lse() const override { return info_.lse; }
  ScoreModifierSupport score_modifiers() const override { return info_.modifiers; }
  std::vector<Op> ops() const override { return info_.op_list(); }
  std::vector<DType> dtypes(Op op) const override { return info_.dtypes(op); }
  Storage storage(DType t) const override { return info_.storage_for(t); }

 protected:
  PluginInfo info_;
};

// Called by the worker right after it started (sandbox.cpp): forks. The child returns and runs
// the worker; the parent becomes the sandbox of plugin_host.hpp, watches the child and all it
// starts, and exits with the child's status (or dies of its signal) once everything is reaped.
// Above the memory or process limit it writes "limit <what> <detail>" to `message_fd` and kills
// the whole tree.
void enter_sandbox(std::uint64_t memory_limit, int message_fd);

}  // namespace maskcheck::plugin::detail
