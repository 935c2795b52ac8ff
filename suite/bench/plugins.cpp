#include "plugins.hpp"

#include <algorithm>
#include <cstring>

#include "maskcheck/suite/plugin_host.hpp"
#include "maskcheck/suite/reference_impl.hpp"

namespace maskcheck::bench {

namespace {
std::vector<std::shared_ptr<const Implementation>>& loaded() {
  static std::vector<std::shared_ptr<const Implementation>> v;
  return v;
}
}  // namespace

void load_plugins(const std::vector<std::string>& paths) {
  for (const auto& path : paths) loaded().push_back(plugin::load_plugin(path));
}

const std::vector<std::shared_ptr<const Implementation>>& plugins() {
  return loaded();
}

std::string takes(const Implementation& impl, Op op, DType t) {
  if (std::string why = on_host(impl); !why.empty()) return why;
  const auto dts = impl.dtypes(op);
  if (std::find(dts.begin(), dts.end(), t) == dts.end())
    return impl.name() + " does not take " + std::string(to_string(t)) + " for " +
           std::string(to_string(op));
  return "";
}

Buffer converted(const void* src, DType from, DType to, std::int64_t n) {
  Buffer b(Device::cpu, static_cast<std::size_t>(n) * dtype_bytes(to));
  dispatch_dtype(from, [&](auto from_tag) {
    using F = decltype(from_tag);
    dispatch_dtype(to, [&](auto to_tag) {
      using T = decltype(to_tag);
      const auto* in = static_cast<const char*>(src);
      auto* out = static_cast<char*>(b.get());
      for (std::int64_t i = 0; i < n; ++i) {
        F x;
        std::memcpy(static_cast<void*>(&x), in + i * sizeof(F), sizeof(F));
        const T y = to_storage<T>(to_double(x));
        std::memcpy(out + i * sizeof(T), static_cast<const void*>(&y), sizeof(T));
      }
    });
  });
  return b;
}

std::string on_host(const Implementation& plugin) {
  const plugin::PluginInfo* info = plugin::plugin_info(plugin);
  if (!info || info->device() == "cpu") return "";
  return plugin.name() + " runs on " + info->device() +
         ": bench times CPU plugins (prepared calls take host memory)";
}

const void* PluginInputs::in(const Buffer& b, DType from, DType to, std::int64_t n) {
  if (to == from) return b.get();
  copies_.push_back(converted(b.get(), from, to, n));
  return copies_.back().get();
}

}  // namespace maskcheck::bench
