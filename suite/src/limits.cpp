#include "maskcheck/suite/limits.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "maskcheck/reference/common.hpp"

namespace maskcheck {
namespace {

double d(std::int64_t x) {
  return static_cast<double>(x);
}
double d(std::size_t x) {
  return static_cast<double>(x);
}

// Inputs and outputs as doubles (the suite's boundary type), each held twice (the registry's
// copy and the implementation's own storage), plus the reference's materialized mask (one byte
// per element) and its work.
CallCost attention_cost(const AttentionProblem& p, std::size_t inputs) {
  const double rows = d(p.mask.B) * d(p.H) * d(p.mask.Lq);
  const double out = rows * d(p.D) + rows;  // out and lse
  CallCost c;
  c.bytes = 16 * (d(inputs) + out) + d(p.mask.B) * d(p.mask.Lq) * d(p.mask.Lk) + 16 * d(p.mask.Lk);
  c.work = rows * d(p.mask.Lk) * (2 * d(p.D) + 2);
  return c;
}

}  // namespace

CallCost cost_of(const CallInputs& in) {
  return std::visit(
      overloaded{[](const BuildMaskCall& c) {
                   const double n = d(c.spec.B) * d(c.spec.Lq) * d(c.spec.Lk);
                   return CallCost{n * 17, n};
                 },
                 [](const ConvertMaskCall& c) {
                   const double n = d(c.values.size());
                   return CallCost{n * 24, n};
                 },
                 [](const PaddingCall& c) {
                   const double n = d(c.lengths.size()) * d(c.L);
                   return CallCost{n * 17, n};
                 },
                 [](const SoftmaxCall& c) {
                   const double n = d(c.problem.numel());
                   const double mask =
                       d(c.problem.mask.B) * d(c.problem.mask.Lq) * d(c.problem.mask.Lk);
                   return CallCost{n * 32 + mask, n * 4};
                 },
                 [](const AttentionCall& c) {
                   return attention_cost(c.problem, c.q.size() + c.k.size() + c.v.size());
                 },
                 [](const ChunkAttentionCall& c) {
                   return attention_cost(c.problem, c.q.size() + c.k.size() + c.v.size());
                 },
                 [](const PagedAttentionCall& c) {
                   // The caches, and the keys gathered into the padded layout.
                   return attention_cost(c.problem,
                                         c.q.size() + c.k_cache.size() + c.v_cache.size() +
                                             2 * static_cast<std::size_t>(c.problem.kv_numel()));
                 },
                 [](const AttentionBackwardCall& c) {
                   // The forward's work three times over, and its tensors twice (gradients).
                   CallCost cost = attention_cost(
                       c.problem, 2 * (c.q.size() + c.k.size() + c.v.size() + c.dout.size()));
                   cost.work *= 3;
                   return cost;
                 },
                 [](const VarlenAttentionCall& c) {
                   // Bounded by the padded problem (every document padded to the longest).
                   std::int64_t lq = 0, lk = 0;
                   for (std::size_t b = 0; b + 1 < c.problem.cu_seqlens_q.size(); ++b)
                     lq = std::max<std::int64_t>(
                         lq, c.problem.cu_seqlens_q[b + 1] - c.problem.cu_seqlens_q[b]);
                   for (std::size_t b = 0; b + 1 < c.problem.cu_seqlens_k.size(); ++b)
                     lk = std::max<std::int64_t>(
                         lk, c.problem.cu_seqlens_k[b + 1] - c.problem.cu_seqlens_k[b]);
                   AttentionProblem p;
                   p.mask.B = static_cast<std::int64_t>(c.problem.cu_seqlens_q.size()) - 1;
                   p.mask.Lq = lq;
                   p.mask.Lk = lk;
                   p.H = c.problem.H;
                   p.Hkv = c.problem.Hkv;
                   p.D = c.problem.D;
                   CallCost cost = attention_cost(p, c.q.size() + c.k.size() + c.v.size());
                   cost.bytes *= 2;  // the padded copy beside the packed tensors
                   return cost;
                 },
                 [](const CrossEntropyCall& c) {
                   const double n = d(c.problem.N) * d(c.problem.V);
                   return CallCost{n * (c.backward ? 40 : 24) + 24 * d(c.problem.N), n * 4};
                 },
                 [](const LmLabelsCall& c) {
                   const double n = d(c.problem.B) * d(c.problem.L);
                   return CallCost{n * 34, n};
                 },
                 [](const MlmCall& c) {
                   const double n = d(c.problem.B) * d(c.problem.L);
                   return CallCost{n * 52, n * 4};
                 }},
      in);
}

double decoded_bytes(const safetensors::File& f) {
  double n = 0;
  for (const auto& [name, t] : f.tensors)
    n += 8 * d(t.bytes.size() / safetensors::itemsize(t.dtype));
  return n;
}

void check_budget(const CallCost& cost, const Budget& budget, const std::string& source) {
  if (cost.bytes > static_cast<double>(budget.max_memory))
    throw_invalid(source, "needs about " + format_bytes(cost.bytes) + " of memory",
                  "above the budget --max-memory " +
                      format_bytes(static_cast<double>(budget.max_memory)) +
                      "; raise it to run the case");
  if (cost.work > budget.max_work) {
    char work[64], max[64];
    std::snprintf(work, sizeof work, "%.3g", cost.work);
    std::snprintf(max, sizeof max, "%.3g", budget.max_work);
    throw_invalid(source, std::string("needs about ") + work + " element operations",
                  std::string("above the budget --max-work ") + max + "; raise it to run the case");
  }
}

std::uint64_t parse_size(std::string_view text, std::string_view flag) {
  const std::string f(flag), t(text);
  auto bad = [&](std::string_view why) -> std::uint64_t {
    throw_invalid(f, t.empty() ? "''" : t, why);
  };
  if (text.empty()) return bad("must be a size such as 4G, 512M or 1048576 (bytes)");
  std::size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.'))
    ++i;
  const std::string number(text.substr(0, i));
  std::string unit(text.substr(i));
  if (number.empty() || number.front() == '.' || number.back() == '.')
    return bad("must start with a number (4G, 512M, 1.5GiB, 1048576)");
  for (char& ch : unit) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  double scale = 1;
  if (!unit.empty()) {
    const std::string_view prefixes = "KMGT";
    const auto p = prefixes.find(unit[0]);
    std::string rest = unit;
    if (p != std::string_view::npos) {
      scale = std::ldexp(1.0, 10 * static_cast<int>(p + 1));
      rest = unit.substr(1);
    }
    if (!(rest.empty() || rest == "B" || (p != std::string_view::npos && rest == "IB")))
      return bad("has an unknown unit; use K, M, G or T (powers of 1024), optionally with iB");
  }
  errno = 0;
  char* end = nullptr;
  const double v = std::strtod(number.c_str(), &end);
  if (errno != 0 || end != number.c_str() + number.size() || !std::isfinite(v))
    return bad("must be a finite number of bytes");
  const double bytes = v * scale;
  if (!(bytes >= 1)) return bad("must be at least 1 byte");
  if (bytes > std::ldexp(1.0, 62)) return bad("must be at most 4 EiB");
  return static_cast<std::uint64_t>(bytes);
}

std::string format_bytes(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  int u = 0;
  double v = bytes;
  while (std::fabs(v) >= 1024 && u < 6) {
    v /= 1024;
    ++u;
  }
  char buf[64];
  if (u == 0)
    std::snprintf(buf, sizeof buf, "%.0f %s", v, units[u]);
  else if (std::isfinite(v) && std::fabs(v) >= 1024)
    std::snprintf(buf, sizeof buf, "%.3g %s", v, units[u]);
  else
    std::snprintf(buf, sizeof buf, "%.2f %s", v, units[u]);
  return buf;
}

std::uint64_t parse_seed(std::string_view text, std::string_view flag) {
  const std::string shown = text.empty() ? "''" : std::string(text);
  if (text.empty() || text.find_first_not_of("0123456789") != std::string_view::npos)
    throw_invalid(std::string(flag), shown,
                  "must be an unsigned decimal integer (digits only, 0 to 18446744073709551615)");
  std::uint64_t v = 0;
  const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || ptr != text.data() + text.size())
    throw_invalid(std::string(flag), shown, "must be at most 18446744073709551615 (2^64 - 1)");
  return v;
}

double parse_positive(std::string_view text, std::string_view flag) {
  const std::string t(text);
  errno = 0;
  char* end = nullptr;
  const double v = t.empty() ? 0 : std::strtod(t.c_str(), &end);
  if (t.empty() || end != t.c_str() + t.size() || errno != 0 || !std::isfinite(v) || !(v > 0) ||
      std::isspace(static_cast<unsigned char>(t.front())))
    throw_invalid(std::string(flag), t.empty() ? "''" : t, "must be a finite number > 0");
  return v;
}

}  // namespace maskcheck
