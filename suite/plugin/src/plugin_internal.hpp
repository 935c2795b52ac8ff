// Shared between the loader and the isolation layer.
#pragma once

#include "maskcheck/suite/plugin_host.hpp"

namespace maskcheck::plugin::detail {

// Implementations backed by a plugin (loaded here, or a stand-in for one run in workers).
class PluginBacked {
 public:
  virtual ~PluginBacked() = default;
  virtual const PluginInfo& info() const = 0;
};

}  // namespace maskcheck::plugin::detail
