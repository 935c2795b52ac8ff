// The CPU's limits, measured in this process before any benchmark: memory bandwidth by a
// STREAM-style triad and the f32 FMA peak (fma_probe.cpp). The results go into the benchmark
// context (cpu.*) and feed the bw_frac and fma_frac counters of every CPU row; the
// "ceiling/cpu/..." rows re-measure them with the same statistics as every other row.
//
//   triad  a[i] = b[i] + 3 c[i] over doubles, OpenMP static schedule over all threads; each array
//          max(2 x the last-level cache, 256 MiB) (at most 1/8 of the memory for all three), so
//          that nothing of it is cached; bytes = 3 x 8 per element (STREAM's count: the
//          write-allocate read of `a` is not counted); pages touched before timing; best of 8
//          after a warm-up run. CI (MASKCHECK_CI=1): 3 x 16 MiB, best of 3 (cache-resident on
//          most machines: CI fractions are smoke values, not measurements).
//   fma    fma_probe_once: all threads, 12 independent Highway MulAdd chains each, the best
//          Highway target of this CPU; 2 FLOPs per lane per FMA; best of 15 after 0.2 s of warm-up
//          (measured before the triad).
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "../harness.hpp"
#include "cpu_harness.hpp"
#include "maskcheck/kernels/cpu.hpp"
#if MASKCHECK_BENCH_TORCH
#include "maskcheck/adapters/torch_peers.hpp"
#endif

namespace maskcheck::bench {

namespace {

constexpr int kTriadBest = 8, kTriadBestCi = 3, kFmaBest = 15;
constexpr std::int64_t kFmaIterations = std::int64_t{1} << 23;  // ~20 ms per probe run
constexpr std::int64_t kFmaIterationsCi = std::int64_t{1} << 20;

std::string fixed(double x, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, x);
  return buf;
}

// The largest data cache in sysfs (the last level), or 32 MiB when there is none to read.
std::size_t llc_bytes() {
  std::size_t best = 0;
  for (int i = 0; i < 8; ++i) {
    const std::string dir = "/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(i) + "/";
    std::ifstream type(dir + "type"), size(dir + "size");
    std::string t, s;
    if (!(type >> t) || !(size >> s) || t == "Instruction" || s.empty()) continue;
    std::size_t v = std::stoull(s);
    if (s.back() == 'K') v <<= 10;
    if (s.back() == 'M') v <<= 20;
    best = std::max(best, v);
  }
  return best > 0 ? best : std::size_t{32} << 20;
}

// Bytes per triad array (see the header comment).
std::size_t triad_array_bytes() {
  if (ci()) return std::size_t{16} << 20;
  std::size_t bytes = std::max<std::size_t>(2 * llc_bytes(), std::size_t{256} << 20);
  const auto memory = static_cast<std::size_t>(sysconf(_SC_PHYS_PAGES)) *
                      static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  if (memory > 0) bytes = std::min(bytes, memory / 24);
  return (bytes + (1 << 20) - 1) >> 20 << 20;
}

struct TriadArrays {
  std::int64_t n = 0;
  Buffer a, b, c;
};

std::unique_ptr<TriadArrays> make_triad(std::size_t array_bytes) {
  auto t = std::make_unique<TriadArrays>();
  t->n = static_cast<std::int64_t>(array_bytes / sizeof(double));
  t->a = Buffer(Device::cpu, array_bytes);
  t->b = Buffer(Device::cpu, array_bytes);
  t->c = Buffer(Device::cpu, array_bytes);
  double *a = t->a.as<double>(), *b = t->b.as<double>(), *c = t->c.as<double>();
  const std::int64_t n = t->n;
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < n; ++i) {  // first touch by the threads that use the pages
    a[i] = 0.0;
    b[i] = 1.0;
    c[i] = 2.0;
  }
  return t;
}

double measure_triad(std::size_t array_bytes, int best_of) {
  const auto t = make_triad(array_bytes);
  triad_once(t->a.as<double>(), t->b.as<double>(), t->c.as<double>(), t->n);  // warm-up
  double best = 0;
  for (int i = 0; i < best_of; ++i) {
    const double s = triad_once(t->a.as<double>(), t->b.as<double>(), t->c.as<double>(), t->n);
    if (best == 0 || s < best) best = s;
  }
  return 24.0 * static_cast<double>(t->n) / best;
}

double measure_fma(std::int64_t iterations, std::string* target) {
  // Warm-up for at least 0.2 s: the threads come up and the frequency settles (a single warm-up
  // run left the start-up figure 25 % under the timed ceiling row on a 2-core VM).
  const auto warm = std::chrono::steady_clock::now();
  do {
    fma_probe_once(iterations, target);
  } while (std::chrono::duration<double>(std::chrono::steady_clock::now() - warm).count() < 0.2);
  double best = 0;
  for (int i = 0; i < kFmaBest; ++i) {
    const auto start = std::chrono::steady_clock::now();
    const double flops = fma_probe_once(iterations, target);
    const double s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    best = std::max(best, flops / s);
  }
  return best;
}

#if MASKCHECK_BENCH_TORCH
// Runs the LibTorch bf16 CPU operations the benchmarks time (attention with a boolean mask and
// with is_causal, softmax + mask, cross-entropy + backward) on tiny inputs in a forked child, so
// that an illegal instruction kills the child and not this process. "" or how the child ended.
std::string try_torch_bf16() {
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) return "";  // cannot tell: let the rows find out
  if (pid == 0) {
    namespace tp = torch_peers;
    try {
      AttentionProblem p;
      p.mask.B = 2;
      p.mask.Lq = p.mask.Lk = 128;
      p.D = 64;
      std::vector<std::uint16_t> x(static_cast<std::size_t>(2 * 128 * 128), 0x3f80);  // 1.0
      for (bool padded : {false, true}) {
        p.mask.causal = !padded;
        if (padded) p.mask.k_lens = p.mask.q_lens = {128, 77};
        tp::SdpaPeer(tp::SdpaBackend::dispatch, tp::Layout::padded, p, DType::bf16, tp::Device::cpu,
                     x.data(), x.data(), x.data())
            .run();
      }
      SoftmaxProblem sp;
      sp.mask = p.mask;
      std::vector<std::uint16_t> y(x.size());
      tp::SoftmaxPeer(sp, DType::bf16, tp::Device::cpu, x.data(), y.data()).run();
      LossProblem lp;
      lp.N = 128;
      lp.V = 256;
      std::vector<std::int64_t> labels(128, 3);
      tp::CrossEntropyPeer(lp, DType::bf16, tp::Device::cpu, x.data(), labels.data()).run();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "maskcheck_bench: LibTorch bf16 check: %s\n", e.what());
      ::_exit(3);
    }
    ::_exit(0);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) return "";
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return "";
  if (WIFSIGNALED(status)) return std::string("killed by ") + ::strsignal(WTERMSIG(status));
  return "exited with " + std::to_string(WEXITSTATUS(status));
}

// See torch_unusable in harness.hpp. Runs before anything else in the process touches
// oneDNN, which reads ONEDNN_MAX_CPU_ISA once, on first use.
void check_torch_bf16() {
  const std::string why = try_torch_bf16();
  if (why.empty()) return;
  if (std::getenv("ONEDNN_MAX_CPU_ISA") == nullptr) {
    for (const char* isa : {"AVX512_CORE_AMX", "AVX512_CORE_BF16", "AVX2"}) {
      ::setenv("ONEDNN_MAX_CPU_ISA", isa, 1);
      if (try_torch_bf16().empty()) {
        benchmark::AddCustomContext(
            "torch.onednn_max_cpu_isa",
            std::string(isa) + " (set by maskcheck_bench: LibTorch's bf16 CPU kernels were " + why +
                " with oneDNN's default ISA on this machine)");
        return;
      }
    }
    ::unsetenv("ONEDNN_MAX_CPU_ISA");
  }
  const std::string reason = "LibTorch's bf16 CPU kernels fail on this machine (" + why + ")";
  set_torch_unusable(Device::cpu, DType::bf16, reason);
  benchmark::AddCustomContext("torch.cpu_bf16", "unusable: " + reason);
}
#endif

void cpu_context() {
#if MASKCHECK_BENCH_TORCH
  check_torch_bf16();  // first: before any OpenMP team exists in this process (fork)
#endif
  const int threads = cpu::max_threads();
  benchmark::AddCustomContext("cpu.omp_threads", std::to_string(threads));
  benchmark::AddCustomContext("cpu.simd_target", cpu::simd_target());
  benchmark::AddCustomContext("cpu.llc_mib",
                              fixed(static_cast<double>(llc_bytes()) / (1 << 20), 1));
#if MASKCHECK_BENCH_TORCH
  benchmark::AddCustomContext("torch.cpu_threads",
                              std::to_string(torch_peers::torch_num_threads()));
#endif
  benchmark::AddCustomContext(
      "cpu.timing",
      "wall clock (UseRealTime) per call; checked once and warmed up once before timing; no "
      "cache flush (memory-bound cases exceed the last-level cache outside CI sizes)");
  CpuCeilings c;
  try {
    // The FMA probe first: the triad's large arrays leave the kernel freeing pages behind them.
    std::string target;
    c.fma_flops = measure_fma(ci() ? kFmaIterationsCi : kFmaIterations, &target);
    benchmark::AddCustomContext("cpu.fma_peak_gflops", fixed(c.fma_flops * 1e-9, 1));
    benchmark::AddCustomContext(
        "cpu.fma_probe", "Highway MulAdd (" + target + "), 12 independent f32 chains per thread, " +
                             std::to_string(threads) +
                             " threads, 2 FLOPs per lane per FMA, best of " +
                             std::to_string(kFmaBest));
    const std::size_t bytes = triad_array_bytes();
    const int best_of = ci() ? kTriadBestCi : kTriadBest;
    c.triad_bytes_per_second = measure_triad(bytes, best_of);
    benchmark::AddCustomContext("cpu.triad_bandwidth_gbps",
                                fixed(c.triad_bytes_per_second * 1e-9, 2));
    benchmark::AddCustomContext(
        "cpu.triad_probe", "STREAM triad a = b + s c over doubles, OpenMP " +
                               std::to_string(threads) + " threads, 3 arrays of " +
                               std::to_string(bytes >> 20) +
                               " MiB, 24 bytes per element, best of " + std::to_string(best_of));
  } catch (const std::exception& e) {
    benchmark::AddCustomContext("cpu.probes", std::string("error (") + e.what() + ")");
  }
  set_cpu_ceilings(c);
}

void register_cpu_ceilings() {
  const std::size_t bytes = triad_array_bytes();
  const std::string triad = "ceiling/cpu/triad/3x" + std::to_string(bytes >> 20) + "MiB";
  add_cpu(triad, [triad, bytes](benchmark::State& state) {
    try {
      auto& t = CaseCache::get<TriadArrays>(triad, [&] { return make_triad(bytes); });
      triad_once(t.a.as<double>(), t.b.as<double>(), t.c.as<double>(), t.n);
      for (auto _ : state) triad_once(t.a.as<double>(), t.b.as<double>(), t.c.as<double>(), t.n);
      Work w;
      w.bytes = 24.0 * static_cast<double>(t.n);
      w.memory_bound = true;
      set_cpu_counters(state, w);
      state.SetLabel("STREAM triad, " + std::to_string(cpu::max_threads()) +
                     " OpenMP threads, 24 bytes per element");
    } catch (const std::exception& e) {
      state.SkipWithError(e.what());
    }
  });
  const std::string fma = "ceiling/cpu/fma/f32";
  add_cpu(fma, [](benchmark::State& state) {
    using C = benchmark::Counter;
    const std::int64_t iterations = ci() ? kFmaIterationsCi : kFmaIterations / 2;
    std::string target;
    double flops = fma_probe_once(iterations, &target);
    for (auto _ : state) flops = fma_probe_once(iterations, &target);
    state.counters["FLOPS"] = C(flops, C::kIsIterationInvariantRate);
    if (cpu_ceilings().fma_flops > 0)
      state.counters["fma_frac"] =
          C(flops / cpu_ceilings().fma_flops, C::kIsIterationInvariantRate);
    state.SetLabel("Highway MulAdd (" + target + "), 12 chains per thread, " +
                   std::to_string(cpu::max_threads()) + " OpenMP threads");
  });
}

}  // namespace

MASKCHECK_BENCH_CONTEXT(cpu, cpu_context);
MASKCHECK_BENCH_SUITE(ceiling_cpu, register_cpu_ceilings);

}  // namespace maskcheck::bench
