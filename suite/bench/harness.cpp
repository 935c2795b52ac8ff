#include "harness.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <set>
#include <utility>

#include "maskcheck/reference/predicate.hpp"
#include "maskcheck/suite/runner.hpp"

namespace maskcheck::bench {

namespace {

struct Registered {
  const char* name;
  RegisterFn fn;
};
std::vector<Registered>& suites() {
  static std::vector<Registered> v;
  return v;
}
std::vector<Registered>& providers() {
  static std::vector<Registered> v;
  return v;
}

struct Ledger {
  int checked = 0;
  std::vector<std::pair<std::string, std::string>> ours_failed, peers_failed;
  std::vector<std::pair<std::string, std::string>> ours_errors, peers_errors;
  std::map<std::string, std::vector<std::string>> pruned;  // reason -> names
};
Ledger& ledger() {
  static Ledger l;
  return l;
}

std::map<Device, const DeviceHarness*>& device_harnesses() {
  static std::map<Device, const DeviceHarness*> m;
  return m;
}

std::map<std::pair<Device, DType>, std::string>& torch_unusable_reasons() {
  static std::map<std::pair<Device, DType>, std::string> m;
  return m;
}

}  // namespace

int add_suite(const char* name, RegisterFn fn) {
  suites().push_back({name, fn});
  return 0;
}

int add_context_provider(const char* name, RegisterFn fn) {
  providers().push_back({name, fn});
  return 0;
}

void run_context_providers() {
  std::vector<Registered> v = providers();
  std::stable_sort(v.begin(), v.end(), [](const Registered& a, const Registered& b) {
    return std::string_view(a.name) < std::string_view(b.name);
  });
  for (const auto& p : v) p.fn();
}

void register_all_suites() {
  // Sorted by name so that the order of static initialization does not decide the run order,
  // except that "ceiling" suites run first: their results feed the other rows' fractions.
  std::vector<Registered> v = suites();
  std::stable_sort(v.begin(), v.end(), [](const Registered& a, const Registered& b) {
    const bool ca = std::string_view(a.name).starts_with("ceiling");
    const bool cb = std::string_view(b.name).starts_with("ceiling");
    if (ca != cb) return ca;
    return std::string_view(a.name) < std::string_view(b.name);
  });
  for (const auto& s : v) s.fn();
}

benchmark::internal::Benchmark* add(const std::string& name,
                                    std::function<void(benchmark::State&)> fn, bool manual_time) {
  auto* b = benchmark::RegisterBenchmark(name.c_str(),
                                         [fn = std::move(fn)](benchmark::State& s) { fn(s); });
  if (manual_time) b->UseManualTime();
  b->Unit(benchmark::kMicrosecond);
  return b;
}

void note_pruned(const std::string& name, const std::string& reason) {
  ledger().pruned[reason].push_back(name);
}

bool ci() {
  return ci_budget();
}

std::uint64_t seed() {
  static const std::uint64_t s = seed_from_env().value_or(1);
  return s;
}

std::string dtype_name(DType t) {
  return std::string(to_string(t));
}

std::uint64_t Rng::next() {
  std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

std::int64_t Rng::uniform(std::int64_t lo, std::int64_t hi) {
  if (hi <= lo) return lo;
  const auto span = static_cast<std::uint64_t>(hi - lo) + 1;
  return lo + static_cast<std::int64_t>(next() % span);
}

double Rng::unit() {
  return static_cast<double>(next() >> 11) * 0x1.0p-53;
}

std::uint64_t mix(std::uint64_t s, std::uint64_t stream) {
  Rng r(s ^ (stream * 0xD1B54A32D192ED03ull));
  return r.next();
}

std::uint64_t name_hash(std::string_view name) {
  std::uint64_t h = 0xCBF29CE484222325ull;
  for (const char c : name) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001B3ull;
  }
  return h;
}

std::uint64_t case_stream(std::string_view key) {
  if (key.starts_with("cuda/")) key.remove_prefix(5);
  return name_hash(key);
}

std::vector<std::int32_t> draw_lengths(std::int64_t B, std::int64_t L, int pad_pct, Rng& rng) {
  std::vector<std::int32_t> len(static_cast<std::size_t>(B), static_cast<std::int32_t>(L));
  if (pad_pct <= 0 || L == 0) return len;
  const double p = std::min(pad_pct, 100) / 100.0;
  // Uniform in [lo, L] has mean padding p when lo = L (1 - 2p); past 50 % the draw is clamped at 1.
  const auto lo = std::max<std::int64_t>(1, static_cast<std::int64_t>(L * (1.0 - 2.0 * p) + 0.5));
  std::int64_t total = 0;
  for (auto& l : len) {
    l = static_cast<std::int32_t>(rng.uniform(lo, L));
    total += l;
  }
  const auto target = std::max<std::int64_t>(B, static_cast<std::int64_t>(B * L * (1.0 - p) + 0.5));
  // Nudge one unit at a time, round robin, inside [1, L], until the mean padding is exact.
  for (std::size_t i = 0; total != target; i = (i + 1) % len.size()) {
    if (total < target && len[i] < L) {
      ++len[i];
      ++total;
    } else if (total > target && len[i] > 1) {
      --len[i];
      --total;
    }
  }
  return len;
}

std::vector<std::int32_t> draw_documents(std::int32_t len, int docs, Rng& rng) {
  docs = std::max(1, std::min<int>(docs, std::max(1, len)));
  std::vector<std::int32_t> cuts;
  while (static_cast<int>(cuts.size()) < docs - 1) {
    const auto c = static_cast<std::int32_t>(rng.uniform(1, len - 1));
    if (std::find(cuts.begin(), cuts.end(), c) == cuts.end()) cuts.push_back(c);
  }
  std::sort(cuts.begin(), cuts.end());
  std::vector<std::int32_t> cu{0};
  cu.insert(cu.end(), cuts.begin(), cuts.end());
  cu.push_back(len);
  return cu;
}

double visible_pairs(const MaskSpec& m) {
  const FlatMask flat(m);
  const MaskView v = flat.view();
  double n = 0;
  for (std::int64_t b = 0; b < m.B; ++b)
    for (std::int64_t q = 0; q < m.Lq; ++q) n += static_cast<double>(row_keys(v, b, q).size());
  return n;
}

void record_check(const std::string& name, const CheckOutcome& c, bool ours) {
  ++ledger().checked;
  if (c.ok) return;
  (ours ? ledger().ours_failed : ledger().peers_failed).emplace_back(name, c.message);
}

void record_error(const std::string& name, const std::string& what, bool ours) {
  (ours ? ledger().ours_errors : ledger().peers_errors).emplace_back(name, what);
}

int print_summary() {
  const Ledger& l = ledger();
  auto list = [](const char* title, const auto& v) {
    if (v.empty()) return;
    std::fprintf(stderr, "%s (%zu):\n", title, v.size());
    for (const auto& [name, msg] : v) std::fprintf(stderr, "  %s: %s\n", name.c_str(), msg.c_str());
  };
  std::fprintf(stderr, "\n");
  if (!l.pruned.empty()) {
    std::size_t n = 0;
    for (const auto& [reason, names] : l.pruned) n += names.size();
    std::fprintf(stderr, "Not registered on purpose (%zu):\n", n);
    for (const auto& [reason, names] : l.pruned)
      std::fprintf(stderr, "  %zu x %s (e.g. %s)\n", names.size(), reason.c_str(),
                   names.front().c_str());
  }
  list("maskcheck MISMATCHES", l.ours_failed);
  list("maskcheck ERRORS", l.ours_errors);
  list("Peer mismatches (deviations, reported only)", l.peers_failed);
  list("Peer errors (reported only)", l.peers_errors);
  if (l.checked == 0)
    std::fprintf(stderr, "No result was checked (every benchmark that checks was skipped).\n");
  else if (l.ours_failed.empty() && l.peers_failed.empty())
    std::fprintf(stderr, "All results match (%d checked before timing).\n", l.checked);
  return l.ours_failed.empty() && l.ours_errors.empty() ? 0 : 1;
}

std::string check_label(const std::string& shape, const std::string& notes, const CheckOutcome& c) {
  return shape + (notes.empty() ? "" : " | " + notes) + " | check: " + c.message;
}

// ---- devices ------------------------------------------------------------------------------------

std::string device_name(Device d) {
  switch (d) {
    case Device::cpu:
      return "cpu";
    case Device::cuda:
      return "cuda";
  }
  return "?";
}

int add_device(Device d, const DeviceHarness* harness) {
  device_harnesses()[d] = harness;
  return 0;
}

const DeviceHarness& device(Device d) {
  const auto it = device_harnesses().find(d);
  if (it == device_harnesses().end())
    throw std::logic_error("maskcheck_bench was built without " + device_name(d));
  return *it->second;
}

std::vector<Device> devices() {
  std::vector<Device> v;
  for (const auto& [d, h] : device_harnesses()) v.push_back(d);
  return v;
}

Buffer::Buffer(Device d, std::size_t bytes)
    : d_(d), p_(device(d).allocate(bytes)), bytes_(p_ ? bytes : 0) {}

Buffer::Buffer(Buffer&& o) noexcept
    : d_(o.d_), p_(std::exchange(o.p_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}

Buffer& Buffer::operator=(Buffer&& o) noexcept {
  if (this != &o) {
    if (p_) device(d_).deallocate(p_);
    d_ = o.d_;
    p_ = std::exchange(o.p_, nullptr);
    bytes_ = std::exchange(o.bytes_, 0);
  }
  return *this;
}

Buffer::~Buffer() {
  if (p_) device(d_).deallocate(p_);
}

void Buffer::fill(int value) {
  if (bytes_ > 0) device(d_).memset(p_, value, bytes_);
}

void Buffer::upload(const void* host, std::size_t bytes) {
  if (bytes > bytes_) throw std::logic_error("upload larger than the buffer");
  if (bytes > 0) device(d_).upload(p_, host, bytes);
}

std::string torch_unusable(Device d, DType t) {
  const auto it = torch_unusable_reasons().find({d, t});
  return it == torch_unusable_reasons().end() ? std::string() : it->second;
}

void set_torch_unusable(Device d, DType t, const std::string& why) {
  torch_unusable_reasons()[{d, t}] = why;
}

std::string TokenCase::key() const {
  return device_name(device) + "/" + op + "/T" + std::to_string(B * L) + "/L" + std::to_string(L) +
         "/pad" + std::to_string(pad);
}

// ---- rows ---------------------------------------------------------------------------------------

Prepared& CaseImpls::get(const std::string& impl, const std::function<Prepared()>& build) {
  if (auto f = failures.find(impl); f != failures.end()) throw std::runtime_error(f->second);
  if (auto it = impls.find(impl); it != impls.end()) return it->second;
  try {
    return impls.emplace(impl, build()).first->second;
  } catch (const std::exception& e) {
    failures[impl] = e.what();
    throw;
  }
}

void run_row(benchmark::State& state, Device d, const std::string& name, bool ours,
             const std::function<Prepared&()>& prepare) {
  const DeviceHarness& dev = device(d);
  if (const std::string why = dev.unavailable(); !why.empty()) {
    state.SkipWithError(why.c_str());
    return;
  }
  // Errors are recorded once per row, not once per call of the benchmark function.
  static std::set<std::string> reported;
  Prepared* p = nullptr;
  try {
    p = &prepare();
  } catch (const std::exception& e) {
    if (reported.insert(name).second) record_error(name, e.what(), ours);
    state.SkipWithError(e.what());
    return;
  }
  if (!p->check.ok) {
    const std::string msg = "mismatch: " + p->check.message;
    state.SkipWithError(msg.c_str());
    return;
  }
  try {
    if (!p->warmed) {
      dev.warm_up(p->run);
      p->warmed = true;
    }
    dev.time(state, p->run);
  } catch (const std::exception& e) {
    if (reported.insert(name).second) record_error(name, e.what(), ours);
    state.SkipWithError(e.what());
    return;
  }
  dev.set_counters(state, p->work);
  // Google Benchmark writes NaN counters as bare NaN, which is not JSON: leave them out.
  if (std::isfinite(p->check.max_abs_err)) state.counters["check_max_err"] = p->check.max_abs_err;
  state.SetLabel(p->label);
}

// ---- the case cache -----------------------------------------------------------------------------

CaseCache::Slot& CaseCache::slot() {
  static Slot s;
  return s;
}

namespace {
std::vector<std::function<void()>>& release_hooks() {
  static std::vector<std::function<void()>> v;
  return v;
}
}  // namespace

void CaseCache::release() {
  Slot& s = slot();
  const bool had = s.value != nullptr;
  s.value.reset();
  s.key.clear();
  s.error.clear();
  if (had)
    for (const auto& f : release_hooks()) f();
}

void CaseCache::on_release(std::function<void()> fn) {
  release_hooks().push_back(std::move(fn));
}

}  // namespace maskcheck::bench
