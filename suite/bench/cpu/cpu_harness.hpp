// CPU timing for maskcheck_bench: the DeviceHarness of Device::cpu (maskcheck's CPU kernels,
// Highway SIMD + OpenMP, beside LibTorch on the CPU and the reference), in the same process as
// the CUDA rows.
//
// A timed iteration is one call of the operation, wall clock (UseRealTime: the kernels and
// LibTorch run on several threads, so the main thread's CPU time would be meaningless). No cache
// flush: the memory-bound cases are sized beyond the last-level cache (see each <op>_bench.cpp),
// the compute-bound ones do not care. Before timing, every row runs once and is checked
// (check.hpp), then runs once more as a warm-up (first-touch page faults of outputs and
// LibTorch's temporaries happen there, not in the first timed iteration).
//
// Memory: 64-byte aligned host buffers (cache-line and AVX-512 aligned, as a framework's allocator
// would give), first touched by whoever writes them first. Inputs are written by all threads
// (first touch), each value a counter-based hash of (seed, index).
//
// Counters (set_cpu_counters):
//   bytes_per_second  minimal bytes (visible inputs read once, outputs written once) per second;
//   bw_frac           memory-bound rows: that rate over the STREAM triad bandwidth of the probe;
//   useful_FLOPS      attention: 4 D per visible (q, k) pair and head, per second;
//   dense_FLOPS       attention: 4 D Lq Lk per head, per second; visible_frac their ratio;
//   fma_frac          attention: useful FLOP/s over the FMA peak of the probe.
#pragma once

#include <benchmark/benchmark.h>

#include <cstdint>
#include <functional>
#include <string>

#include "../harness.hpp"

namespace maskcheck::bench {

// ---- the machine's limits, measured by the probes in ceilings.cpp -----------------------------

struct CpuCeilings {
  double triad_bytes_per_second = 0;  // STREAM triad, 3 x 8 bytes per element
  double fma_flops = 0;               // f32 FMA peak, all threads, 2 FLOPs per lane per FMA
};
const CpuCeilings& cpu_ceilings();
void set_cpu_ceilings(const CpuCeilings& c);

// The probes themselves (ceilings.cpp runs them at start-up; the ceiling/cpu rows time them).
// triad: a[i] = b[i] + s * c[i] over n doubles per array, OpenMP static schedule; returns seconds.
double triad_once(double* a, const double* b, const double* c, std::int64_t n);
// FMA: every OpenMP thread runs `iterations` of independent Highway MulAdd chains; returns the
// FLOPs done (2 per lane per FMA, all threads) and sets *target to the Highway target used.
double fma_probe_once(std::int64_t iterations, std::string* target);

// ---- rows -----------------------------------------------------------------------------------

// Registers a CPU row: wall-clock time (UseRealTime), microseconds.
benchmark::internal::Benchmark* add_cpu(const std::string& name,
                                        std::function<void(benchmark::State&)> fn);
void set_cpu_counters(benchmark::State& state, const Work& w);

}  // namespace maskcheck::bench
