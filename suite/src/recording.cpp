#include "maskcheck/suite/recording.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "maskcheck/suite/about.hpp"

namespace maskcheck {

void RecordingImplementation::begin_case() {
  calls_.clear();
  total_ = 0;
}

template <class R, class Run>
R RecordingImplementation::record(CallInputs in, Run&& run) const {
  ++total_;
  std::optional<std::size_t> slot;
  if (calls_.size() < max_calls_) {
    calls_.push_back({std::move(in), std::nullopt, {}, {}, {}});
    slot = calls_.size() - 1;
  }
  try {
    R r = run();
    if (slot) calls_[*slot].result = CallResult(r);
    return r;
  } catch (const CrashedCall& e) {
    if (slot) {
      calls_[*slot].error = e.what();
      calls_[*slot].signal = e.signal;
      calls_[*slot].output = e.output;
    }
    throw;
  } catch (const std::exception& e) {
    if (slot) calls_[*slot].error = e.what();
    throw;
  } catch (...) {
    if (slot) calls_[*slot].error = "an exception that is not a std::exception";
    throw;
  }
}

namespace {

std::vector<double> copy(std::span<const double> x) {
  return {x.begin(), x.end()};
}
template <class T>
std::vector<T> copy(std::span<const T> x) {
  return {x.begin(), x.end()};
}

// The storage a call's tensors had: the implementation's, when it stores some wider than t.
std::optional<Storage> stored(const Implementation& impl, Op op, DType t) {
  const Storage s = impl.storage(t);
  return s.uniform(op, t) ? std::nullopt : std::optional<Storage>(s);
}

}  // namespace

std::vector<double> RecordingImplementation::build_mask(const MaskSpec& spec, MaskEncoding e,
                                                        DType t) const {
  return record<std::vector<double>>(BuildMaskCall{spec, e, t},
                                     [&] { return inner().build_mask(spec, e, t); });
}
std::vector<double> RecordingImplementation::convert_mask(std::span<const double> values,
                                                          MaskEncoding from, MaskEncoding to,
                                                          DType t) const {
  return record<std::vector<double>>(
      ConvertMaskCall{copy(values), {static_cast<std::int64_t>(values.size())}, from, to, t},
      [&] { return inner().convert_mask(values, from, to, t); });
}
std::vector<std::uint8_t> RecordingImplementation::keep_from_lengths(
    std::span<const std::int32_t> lengths, std::int64_t L, PaddingSide side) const {
  return record<std::vector<std::uint8_t>>(KeepFromLengthsCall{{copy(lengths), L, side}}, [&] {
    return inner().keep_from_lengths(lengths, L, side);
  });
}
std::vector<std::int64_t> RecordingImplementation::last_valid_index(
    std::span<const std::int32_t> lengths, std::int64_t L, PaddingSide side) const {
  return record<std::vector<std::int64_t>>(LastValidIndexCall{{copy(lengths), L, side}}, [&] {
    return inner().last_valid_index(lengths, L, side);
  });
}

std::vector<double> RecordingImplementation::softmax(const SoftmaxProblem& p, DType t,
                                                     std::span<const double> x) const {
  return record<std::vector<double>>(SoftmaxCall{p, t, copy(x), stored(inner(), Op::softmax, t)},
                                     [&] { return inner().softmax(p, t, x); });
}

AttentionResult RecordingImplementation::attention(const AttentionProblem& p, DType t,
                                                   std::span<const double> q,
                                                   std::span<const double> k,
                                                   std::span<const double> v, bool want_lse) const {
  return record<AttentionResult>(
      AttentionCall{p, t, copy(q), copy(k), copy(v), want_lse, stored(inner(), Op::attention, t)},
      [&] { return inner().attention(p, t, q, k, v, want_lse); });
}
AttentionResult RecordingImplementation::attention_paged(
    const AttentionProblem& p, const PagedKv& kv, DType t, std::span<const double> q,
    std::span<const double> k_cache, std::span<const double> v_cache, bool want_lse) const {
  return record<AttentionResult>(
      PagedAttentionCall{p, kv, t, copy(q), copy(k_cache), copy(v_cache), want_lse,
                         stored(inner(), Op::attention, t)},
      [&] { return inner().attention_paged(p, kv, t, q, k_cache, v_cache, want_lse); });
}
AttentionResult RecordingImplementation::attention_chunk(
    const AttentionProblem& p, DType t, std::span<const double> q, std::span<const double> k,
    std::span<const double> v, std::int64_t key_begin, std::int64_t key_end) const {
  return record<AttentionResult>(
      ChunkAttentionCall{p, t, copy(q), copy(k), copy(v), key_begin, key_end,
                         stored(inner(), Op::attention, t)},
      [&] { return inner().attention_chunk(p, t, q, k, v, key_begin, key_end); });
}
AttentionResult RecordingImplementation::attention_varlen(const VarlenAttentionProblem& p, DType t,
                                                          std::span<const double> q,
                                                          std::span<const double> k,
                                                          std::span<const double> v,
                                                          bool want_lse) const {
  return record<AttentionResult>(VarlenAttentionCall{p, t, copy(q), copy(k), copy(v), want_lse,
                                                     stored(inner(), Op::attention, t)},
                                 [&] { return inner().attention_varlen(p, t, q, k, v, want_lse); });
}

AttentionGradients RecordingImplementation::attention_backward(const AttentionProblem& p, DType t,
                                                               std::span<const double> q,
                                                               std::span<const double> k,
                                                               std::span<const double> v,
                                                               std::span<const double> dout) const {
  return record<AttentionGradients>(
      AttentionBackwardCall{p, t, copy(q), copy(k), copy(v), copy(dout),
                            stored(inner(), Op::attention, t)},
      [&] { return inner().attention_backward(p, t, q, k, v, dout); });
}

LossResult RecordingImplementation::cross_entropy(const LossProblem& p, DType t,
                                                  std::span<const double> logits,
                                                  std::span<const std::int64_t> labels,
                                                  std::span<const double> weights,
                                                  bool backward) const {
  return record<LossResult>(
      CrossEntropyCall{p,
                       t,
                       copy(logits),
                       copy(labels),
                       copy(weights),
                       backward,
                       stored(inner(), Op::cross_entropy, t),
                       {}},
      [&] { return inner().cross_entropy(p, t, logits, labels, weights, backward); });
}
LossResult RecordingImplementation::cross_entropy_upstream(
    const LossProblem& p, DType t, std::span<const double> logits,
    std::span<const std::int64_t> labels, std::span<const double> weights,
    std::span<const double> grad_output) const {
  return record<LossResult>(
      CrossEntropyCall{p, t, copy(logits), copy(labels), copy(weights), true,
                       stored(inner(), Op::cross_entropy, t), copy(grad_output)},
      [&] { return inner().cross_entropy_upstream(p, t, logits, labels, weights, grad_output); });
}

std::vector<std::int64_t> RecordingImplementation::lm_labels(
    const LmLabelsProblem& p, std::span<const std::int64_t> ids, std::span<const std::uint8_t> keep,
    std::span<const std::int32_t> prompt_lens) const {
  return record<std::vector<std::int64_t>>(
      LmLabelsCall{p, copy(ids), copy(keep), copy(prompt_lens)},
      [&] { return inner().lm_labels(p, ids, keep, prompt_lens); });
}

MlmResult RecordingImplementation::mlm(const MlmProblem& p, std::span<const std::int64_t> ids,
                                       std::span<const std::uint8_t> keep,
                                       std::span<const std::uint8_t> special,
                                       std::span<const std::uint8_t> continuation) const {
  return record<MlmResult>(MlmCall{p, copy(ids), copy(keep), copy(special), copy(continuation)},
                           [&] { return inner().mlm(p, ids, keep, special, continuation); });
}

namespace {

std::string filesystem_safe(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) c = '_';
  }
  return out;
}

std::string file_stem(std::string_view impl, std::string_view property) {
  return filesystem_safe(impl) + "__" + filesystem_safe(property) + "__call";
}

// Single-quotes a path for the replay command when the shell would split or expand it.
std::string shell_quoted(const std::string& s) {
  if (s.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-/:+") ==
      std::string::npos)
    return s;
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

void write_counterexample(const std::string& dir, const RecordingImplementation& recorder,
                          bool reproduced, PropertyOutcome& o, const std::string& plugin) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw std::runtime_error("cannot create directory " + dir + ": " + ec.message());
  const std::string stem = file_stem(o.implementation, o.property);
  for (const auto& e : fs::directory_iterator(dir, ec)) {  // the previous run's files
    const std::string name = e.path().filename().string();
    if (name.rfind(stem, 0) == 0 && name.ends_with(".safetensors")) fs::remove(e.path(), ec);
  }
  std::string counterexample;
  for (const auto& [type, value] : o.counterexample)
    counterexample += (counterexample.empty() ? "" : "\n") + type + ": " + value;
  const auto about = about_json();
  const auto& calls = recorder.calls();
  for (std::size_t k = 0; k < calls.size(); ++k) {
    const RecordedCall& c = calls[k];
    safetensors::File f = encode_case(c.inputs);
    if (c.result) {
      std::vector<std::string> notes;
      auto out = result_tensors(c.inputs, *c.result, kRecordedPrefix, &notes);
      f.tensors.merge(out);
      std::string joined;
      for (const auto& n : notes) joined += (joined.empty() ? "" : "\n") + n;
      if (!joined.empty()) f.metadata["maskcheck.recorded_notes"] = joined;
    }
    const std::string path =
        (fs::path(dir) / counterexample_file_name(o.implementation, o.property, k)).string();
    const std::string result_path = path.substr(0, path.size() - 12) + ".result.safetensors";
    auto& m = f.metadata;
    m["maskcheck.implementation"] = o.implementation;
    m["maskcheck.property"] = o.property;
    m["maskcheck.seed"] = std::to_string(o.seed);
    m["maskcheck.replay"] = o.replay;
    m["maskcheck.eval"] = "maskcheck eval " + std::string(to_string(op_of(call_of(c.inputs)))) +
                          " --impl " + shell_quoted(o.implementation) +
                          (plugin.empty() ? "" : " --plugin " + shell_quoted(plugin)) + " --in " +
                          shell_quoted(path) + " --out " + shell_quoted(result_path);
    m["maskcheck.call_index"] = std::to_string(k);
    m["maskcheck.calls"] = std::to_string(recorder.total_calls());
    m["maskcheck.counterexample"] = counterexample;
    m["maskcheck.message"] = o.message;
    m["maskcheck.reproduced"] = reproduced ? "true" : "false";
    if (!c.error.empty()) m["maskcheck.error"] = c.error;
    if (!c.signal.empty()) m["maskcheck.signal"] = c.signal;
    if (!c.output.empty()) m["maskcheck.output"] = c.output;
    m["maskcheck.version"] = about.at("maskcheck").get<std::string>();
    m["maskcheck.commit"] = about.at("commit").get<std::string>();
    safetensors::write_file(path, f);
    o.counterexample_files.push_back(path);
  }
}

}  // namespace

std::string counterexample_file_name(std::string_view impl, std::string_view property,
                                     std::size_t k) {
  return file_stem(impl, property) + std::to_string(k) + ".safetensors";
}

void save_counterexample(const std::string& dir, const RecordingImplementation& recorder,
                         bool reproduced, PropertyOutcome& o, const std::string& plugin) {
  try {
    write_counterexample(dir, recorder, reproduced, o, plugin);
    if (recorder.total_calls() > recorder.calls().size())
      o.message += "\n(counterexample: the case made " + std::to_string(recorder.total_calls()) +
                   " calls; the first " + std::to_string(recorder.calls().size()) + " are saved)";
    if (!reproduced)
      o.message +=
          "\n(counterexample: the shrunk case passed when re-run to record it; the "
          "implementation may be nondeterministic)";
  } catch (const std::exception& e) {
    o.message += "\n(counterexample files not saved: " + std::string(e.what()) + ")";
  }
}

namespace {

// Takes the lock of `dir` (creating it) for the rest of the process; false when another open
// file description holds it.
bool lock_dir(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw std::runtime_error("cannot create directory " + dir + ": " + ec.message());
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    throw std::runtime_error("cannot open directory " + dir + ": " + std::strerror(errno));
  if (::flock(fd, LOCK_EX | LOCK_NB) == 0) {
    // Held until the process exits: the descriptor is deliberately never closed. Workers are
    // started with exec and O_CLOEXEC closes their copy; the lock stays with this process.
    return true;
  }
  const int e = errno;
  ::close(fd);
  if (e != EWOULDBLOCK)
    throw std::runtime_error("cannot lock directory " + dir + ": " + std::strerror(e));
  return false;
}

}  // namespace

std::string claim_counterexample_dir(const std::string& dir) {
  if (lock_dir(dir)) return dir;
  for (int k = 1; k < 10000; ++k) {
    const std::string sub = (std::filesystem::path(dir) / ("run-" + std::to_string(k))).string();
    if (lock_dir(sub)) return sub;
  }
  throw std::runtime_error("cannot find a free run directory in " + dir);
}

}  // namespace maskcheck
