// The implementations compiled into this build. Optional parts add themselves here behind the
// macros their CMake targets define, so the registry itself knows none of them.
#include "maskcheck/suite/reference_impl.hpp"
#include "maskcheck/suite/registry.hpp"

namespace maskcheck {

const Registry& builtin_registry() {
  static const Registry registry = [] {
    Registry r;
    r.add(std::make_shared<ReferenceImplementation>());
    return r;
  }();
  return registry;
}

}  // namespace maskcheck
