// maskcheck eval: one call of one implementation on the tensors of a case file.
#include "commands.hpp"

#include <filesystem>
#include <iostream>

#include <fmt/core.h>

#include "maskcheck/reference/common.hpp"
#include "maskcheck/suite/about.hpp"
#include "maskcheck/suite/builtin.hpp"
#include "maskcheck/suite/call.hpp"
#include "maskcheck/suite/io.hpp"
#include "maskcheck/suite/mutants.hpp"
#include "maskcheck/suite/plugin_host.hpp"

namespace mc = maskcheck;

namespace maskcheck::cli {
namespace {

// Built-in implementations and the mutants (mutant:<id>).
std::shared_ptr<const mc::Implementation> find_implementation(const std::string& name) {
  if (auto impl = mc::builtin_registry().find(name)) return impl;
  const mc::Registry mutants = mc::mutant_registry();
  if (auto impl = mutants.find(name)) return impl;
  if (name.rfind("plugin:", 0) == 0)
    throw mc::InvalidArgument("--impl", name, "a plugin: name its library with --plugin LIB.so");
  std::string known;
  for (const auto& i : mc::builtin_registry().all())
    known += (known.empty() ? "" : ", ") + i->name();
  throw mc::InvalidArgument(
      "--impl", name,
      "unknown implementation; known: " + known + " and the mutants of maskcheck list --mutants");
}

// "F32[1, 2]" and, for small tensors, the values.
std::string preview(const mc::safetensors::Tensor& t) {
  std::string s = t.describe();
  if (t.numel() > 16) return s;
  std::vector<std::string> values;
  if (mc::safetensors::is_floating(t.dtype)) {
    for (double x : mc::safetensors::to_doubles(t, "")) values.push_back(fmt::format("{:.6g}", x));
  } else {
    for (std::int64_t x : mc::safetensors::to_int64(t, "")) values.push_back(std::to_string(x));
  }
  if (t.shape.empty()) return s + " = " + values.front();
  std::string joined;
  for (const auto& v : values) joined += (joined.empty() ? "" : ", ") + v;
  return s + " = [" + joined + "]";
}

// Why the implementation cannot be handed the case's floating inputs as they are: a tensor whose
// values are not exact in the dtype the implementation stores it in for the case's dtype (mixed
// storage, registry.hpp), or "".
std::string storage_mismatch(const mc::Implementation& impl, const mc::CallInputs& in) {
  auto check = [](const char* name, const std::vector<double>& v, mc::DType d) -> std::string {
    if (mc::safetensors::exactly_representable(v, d)) return "";
    return std::string(name) + " holds values that are not exact in " +
           std::string(mc::to_string(d)) + ", the dtype it stores " + name + " in";
  };
  auto first = [](std::initializer_list<std::string> reasons) {
    for (const auto& r : reasons)
      if (!r.empty()) return r;
    return std::string();
  };
  return std::visit(
      mc::overloaded{
          [&](const mc::SoftmaxCall& c) { return check("x", c.x, impl.storage(c.dtype).x); },
          [&](const mc::AttentionCall& c) {
            const mc::Storage st = impl.storage(c.dtype);
            return first({check("q", c.q, st.q), check("k", c.k, st.k), check("v", c.v, st.v)});
          },
          [&](const mc::VarlenAttentionCall& c) {
            const mc::Storage st = impl.storage(c.dtype);
            return first({check("q", c.q, st.q), check("k", c.k, st.k), check("v", c.v, st.v)});
          },
          [&](const mc::ChunkAttentionCall& c) {
            const mc::Storage st = impl.storage(c.dtype);
            return first({check("q", c.q, st.q), check("k", c.k, st.k), check("v", c.v, st.v)});
          },
          [&](const mc::PagedAttentionCall& c) {
            const mc::Storage st = impl.storage(c.dtype);
            return first({check("q", c.q, st.q), check("k_cache", c.k_cache, st.k),
                          check("v_cache", c.v_cache, st.v)});
          },
          [&](const mc::AttentionBackwardCall& c) {
            const mc::Storage st = impl.storage(c.dtype);
            return first({check("q", c.q, st.q), check("k", c.k, st.k), check("v", c.v, st.v),
                          check("dout", c.dout, st.out)});
          },
          [&](const mc::CrossEntropyCall& c) {
            return check("logits", c.logits, impl.storage(c.dtype).logits);
          },
          [](const auto&) { return std::string(); }},
      in);
}

// An attention case that leaves want_lse unsaid asks for no log-sum-exp from an implementation
// that has none (a plugin with MASKCHECK_FLAG_NO_LSE), instead of being declined for it.
void default_want_lse(const mc::Implementation& impl, const mc::safetensors::File& file,
                      mc::CallInputs& in) {
  if (impl.attention_lse()) return;
  if (const auto it = file.metadata.find(mc::kMetaOptions); it != file.metadata.end()) {
    const auto options = nlohmann::json::parse(it->second, nullptr, false);
    if (options.is_object() && options.contains("want_lse")) return;
  }
  if (auto* a = std::get_if<mc::AttentionCall>(&in)) a->want_lse = false;
  if (auto* a = std::get_if<mc::VarlenAttentionCall>(&in)) a->want_lse = false;
  if (auto* a = std::get_if<mc::PagedAttentionCall>(&in)) a->want_lse = false;
}

// The implementation's storage for a case that named none: its results are written in it.
void adopt_storage(const mc::Implementation& impl, mc::CallInputs& in) {
  auto adopt = [&](auto& c, mc::Op op) {
    if (c.storage) return;
    if (const mc::Storage st = impl.storage(c.dtype); !st.uniform(op, c.dtype)) c.storage = st;
  };
  std::visit(mc::overloaded{[&](mc::SoftmaxCall& c) { adopt(c, mc::Op::softmax); },
                            [&](mc::AttentionCall& c) { adopt(c, mc::Op::attention); },
                            [&](mc::VarlenAttentionCall& c) { adopt(c, mc::Op::attention); },
                            [&](mc::PagedAttentionCall& c) { adopt(c, mc::Op::attention); },
                            [&](mc::ChunkAttentionCall& c) { adopt(c, mc::Op::attention); },
                            [&](mc::AttentionBackwardCall& c) { adopt(c, mc::Op::attention); },
                            [&](mc::CrossEntropyCall& c) { adopt(c, mc::Op::cross_entropy); },
                            [](auto&) {}},
             in);
}

}  // namespace

int cmd_eval(const EvalOptions& o) {
  const mc::Op op = mc::op_from_string(o.op);
  if (!o.out.empty()) mc::check_output_path(o.out, "--out", o.in);
  // The memory a case needs is known before it runs: the file (its bytes, then its tensors), the
  // tensors as doubles, then the call (limits.hpp). Above the budget: exit 2 with the figure.
  const double max_memory = static_cast<double>(o.budget.max_memory);
  if (std::error_code ec;
      std::filesystem::is_regular_file(o.in, ec) &&
      2.0 * static_cast<double>(std::filesystem::file_size(o.in, ec)) > max_memory)
    throw mc::InvalidArgument(
        o.in,
        "a file of " + mc::format_bytes(static_cast<double>(std::filesystem::file_size(o.in, ec))),
        "reading it needs twice its size, above the budget --max-memory " +
            mc::format_bytes(max_memory) + "; raise it to run the case");
  // A plugin runs in this process here: one call, nothing else to protect.
  const auto impl = o.plugin.empty() ? find_implementation(o.impl)
                                     : mc::plugin::load_plugin(std::filesystem::absolute(o.plugin));
  if (!o.plugin.empty() && o.impl_given && o.impl != impl->name())
    throw mc::InvalidArgument("--impl", o.impl, "the library of --plugin is " + impl->name());
  const auto file = mc::safetensors::read_file(o.in, o.budget.max_memory / 2);
  double held = 0;  // the file's tensors, kept for the metadata of the result
  for (const auto& [name, t] : file.tensors) held += static_cast<double>(t.bytes.size());
  mc::check_budget({held + mc::decoded_bytes(file), 0}, o.budget, o.in);
  if (const auto it = file.metadata.find(mc::kMetaOp);
      it != file.metadata.end() && it->second != mc::to_string(op)) {
    std::cerr << "maskcheck: " << o.in << " holds a " << it->second << " case, not " << o.op
              << " (maskcheck eval " << it->second << " runs it)\n";
    return kExitUsage;
  }
  mc::CallInputs in = mc::decode_case(file, o.in);
  default_want_lse(*impl, file, in);
  try {
    mc::validate_call(in);
  } catch (const mc::InvalidArgument& e) {
    std::cerr << "maskcheck: " << o.in << " is not a valid " << mc::to_string(mc::call_of(in))
              << " case: " << e.what() << "\n";
    return kExitUsage;
  }
  mc::CallCost cost = mc::cost_of(in);
  cost.bytes += held;
  mc::check_budget(cost, o.budget, o.in);
  if (const std::string why = storage_mismatch(*impl, in); !why.empty()) {
    std::cerr << "maskcheck: " << impl->name() << " cannot take " << o.in << " as it is: " << why
              << "\n";
    return kExitUsage;
  }
  adopt_storage(*impl, in);
  if (const mc::Support s = mc::supports_call(*impl, in); !s) {
    std::cerr << "maskcheck: " << impl->name() << " does not support this case: " << s.reason
              << "\n";
    return kExitUsage;
  }
  mc::CallResult r;
  try {
    r = mc::run_call(*impl, in);
  } catch (const std::exception& e) {
    std::cerr << "maskcheck: " << impl->name() << " failed on " << o.in << ": " << e.what() << "\n";
    return kExitFailed;
  }
  std::vector<std::string> notes;
  mc::safetensors::File result;
  result.tensors = mc::result_tensors(in, r, "", &notes);
  const auto meta = mc::encode_case(in).metadata;  // the case as this run read it
  for (const auto& key : {mc::kMetaOp, mc::kMetaCall, mc::kMetaDtype, mc::kMetaProblem,
                          mc::kMetaOptions, mc::kMetaStorage}) {
    if (const auto it = meta.find(key); it != meta.end()) result.metadata[key] = it->second;
  }
  result.metadata[mc::kMetaFormat] = std::string(mc::kResultFormat);
  result.metadata["maskcheck.implementation"] = impl->name();
  result.metadata["maskcheck.input"] = o.in;
  result.metadata["maskcheck.version"] = mc::about_json()["maskcheck"].get<std::string>();
  result.metadata["maskcheck.commit"] = mc::git_commit();
  for (const auto& n : notes) std::cerr << "maskcheck: note: " << n << "\n";
  if (!o.out.empty()) mc::safetensors::write_file(o.out, result);
  if (!o.quiet) {
    const std::string call(mc::to_string(mc::call_of(in)));
    std::cout << "maskcheck eval " << o.op << (call != o.op ? " (" + call + ")" : "") << " --impl "
              << impl->name() << (o.plugin.empty() ? "" : " --plugin " + o.plugin) << " --in "
              << o.in << "\n  problem: " << result.metadata[mc::kMetaProblem] << "\n";
    if (const auto it = result.metadata.find(mc::kMetaDtype); it != result.metadata.end())
      std::cout << "  dtype: " << it->second << "\n";
    for (const auto& [name, t] : result.tensors)
      std::cout << "  " << name << ": " << preview(t) << "\n";
    if (!o.out.empty()) std::cout << "wrote " << o.out << "\n";
  }
  return 0;
}

}  // namespace maskcheck::cli
