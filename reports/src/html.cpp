#include "maskcheck/reports/html.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>

#include "maskcheck/reports/analysis.hpp"
#include "maskcheck/reports/results.hpp"
#include "maskcheck/reports/shards.hpp"
#include "svg.hpp"
#include "text.hpp"

namespace maskcheck::reports {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

std::string esc(std::string_view s) {
  return svg::escape(s);
}

// r[key] when it is there, else an empty object or array: safe to iterate (unlike
// r.value(key, json::object()).items(), whose temporary dies before the loop runs).
const json& member(const json& r, const char* key, bool array = false) {
  static const json empty_object = json::object(), empty_array = json::array();
  if (r.is_object() && r.contains(key)) return r.at(key);
  return array ? empty_array : empty_object;
}

// ---- small formatting helpers -------------------------------------------------------------------

// 23.6 GB/s, 191 GFLOP/s, 0.5 B/s.
std::string si(double v, const std::string& unit) {
  if (!std::isfinite(v)) return "-";
  std::string s = format_si(v);
  std::string prefix;
  if (!s.empty() && std::isalpha(static_cast<unsigned char>(s.back()))) {
    prefix = s.back();
    s.pop_back();
  }
  return s + " " + prefix + unit;
}

std::string ratio_text(double r) {
  return reports::ratio_text(r, r >= 10 ? 1 : 2, "\u00d7");
}

std::string reps_text(int n) {
  return std::to_string(n) + " repetition" + (n == 1 ? "" : "s");
}

// The spread of `s` in the table: "a - b", "+- d" or "-".
std::string spread_text(const Stat& s, const std::function<std::string(double)>& f) {
  switch (s.spread) {
    case Spread::min_max:
      return f(s.lo) + " \u2013 " + f(s.hi);
    case Spread::stddev:
      return "\u00b1 " + f((s.hi - s.lo) / 2) + " (stddev)";
    case Spread::none:
      break;
  }
  return "\u2014";
}

std::string tip_stat(const Stat& s, const std::function<std::string(double)>& f) {
  std::string t = "median " + f(s.median);
  if (s.spread == Spread::min_max)
    t += ", min " + f(s.lo) + ", max " + f(s.hi);
  else if (s.spread == Spread::stddev)
    t += ", stddev " + f((s.hi - s.lo) / 2);
  return t + " (" + reps_text(s.n) + ")";
}

std::string join_path(const std::vector<std::string>& parts, std::size_t from = 0) {
  std::string s;
  for (std::size_t i = from; i < parts.size(); ++i) s += (s.empty() ? "" : "/") + parts[i];
  return s;
}

// An axis component of a benchmark name: an upper-case letter, maybe more letters, then digits
// (D64, L2048, Lk1024, V131072, T1048576).
bool is_axis(const std::string& c) {
  if (c.empty() || !std::isupper(static_cast<unsigned char>(c[0]))) return false;
  std::size_t i = 1;
  while (i < c.size() && std::isalpha(static_cast<unsigned char>(c[i]))) ++i;
  if (i == c.size()) return false;
  for (; i < c.size(); ++i)
    if (!std::isdigit(static_cast<unsigned char>(c[i]))) return false;
  return true;
}

// The name's components before its first axis: the operation and dtype ("cpu/attention/f32").
std::string name_prefix(const std::string& group) {
  const auto parts = name_components(group);
  std::vector<std::string> head;
  for (const auto& p : parts) {
    if (is_axis(p)) break;
    head.push_back(p);
  }
  return join_path(head);
}

// The name up to its length axis (L<n> or Lk<n>), else up to its first axis: rows that are
// charted together when they fit.
std::string length_block(const std::string& group) {
  const auto parts = name_components(group);
  for (std::size_t i = 0; i < parts.size(); ++i) {
    const auto& p = parts[i];
    const bool length =
        is_axis(p) &&
        (p.rfind("Lk", 0) == 0 || (p[0] == 'L' && std::isdigit(static_cast<unsigned char>(p[1]))));
    if (length)
      return join_path(std::vector<std::string>(
          parts.begin(), parts.begin() + static_cast<std::ptrdiff_t>(i) + 1));
  }
  return name_prefix(group);
}

// The number of leading components that all `names` share (keeping at least one of each).
std::size_t common_components(const std::vector<std::string>& names) {
  if (names.empty()) return 0;
  auto first = name_components(names.front());
  std::size_t n = first.size();
  for (const auto& name : names) {
    const auto parts = name_components(name);
    std::size_t k = 0;
    while (k < n && k < parts.size() && parts[k] == first[k]) ++k;
    n = k;
    n = std::min(n, parts.size() - 1);
  }
  return n;
}

// "cpu/attention/f32/..." for the first `common` components of `name`; empty for none.
std::string prefix_text(const std::string& name, std::size_t common) {
  if (common == 0) return "";
  const auto parts = name_components(name);
  return join_path(std::vector<std::string>(parts.begin(),
                                            parts.begin() + static_cast<std::ptrdiff_t>(common))) +
         "/\u2026";
}

// ---- colours and markers, one per implementation over the whole page ------------------------

struct Style {
  std::string color;
  int marker = 0;
};

class Palette {
 public:
  Style of(const std::string& impl) {
    static const std::map<std::string, Style> fixed_styles{
        {"maskcheck", {"#0072B2", 0}},          {"maskcheck_varlen", {"#56B4E9", 1}},
        {"reference", {"#6B6B6B", 3}},          {"torch", {"#D55E00", 2}},
        {"torch_sdpa", {"#AA3377", 2}},         {"torch_flash", {"#E69F00", 2}},
        {"torch_flash_varlen", {"#9A6A00", 5}}, {"torch_efficient", {"#009E73", 4}},
        {"torch_cudnn", {"#CC79A7", 1}},        {"torch_math", {"#8C564B", 3}}};
    if (const auto it = fixed_styles.find(impl); it != fixed_styles.end()) return it->second;
    if (const auto it = extra_.find(impl); it != extra_.end()) return it->second;
    static const char* colors[] = {"#332288", "#117733", "#882255", "#44AA99",
                                   "#999933", "#AA4499", "#661100", "#6699CC"};
    const std::size_t k = extra_.size();
    Style s{colors[k % 8], static_cast<int>(k % 6)};
    extra_[impl] = s;
    return s;
  }

 private:
  std::map<std::string, Style> extra_;
};

// ---- the page -----------------------------------------------------------------------------------

const char* kCss = R"(
:root{--fg:#1d1f21;--muted:#666;--line:#d8d8d8;--pass:#d6f0dc;--fail:#f6cdc8;--dev:#fbe5b6;
--skip:#ececec;--error:#e9b2ab}
*{box-sizing:border-box}
body{margin:0;background:#f6f7f8;color:var(--fg);
font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",Arial,sans-serif}
main{max-width:1320px;margin:0 auto;padding:12px 24px 48px}
h1{font-size:24px;margin:12px 0 4px}h2{font-size:20px;margin:28px 0 8px;padding-top:8px;
border-top:2px solid var(--line)}h3{font-size:16px;margin:22px 0 6px}h4{margin:16px 0 4px}
p{margin:6px 0}code,pre,.mono{font-family:"DejaVu Sans Mono",Menlo,Consolas,monospace;
font-size:12.5px}
pre{background:#fff;border:1px solid var(--line);padding:8px;overflow-x:auto;white-space:pre-wrap;
word-break:break-word;margin:4px 0}
table{border-collapse:collapse;background:#fff;margin:6px 0}
th,td{border:1px solid var(--line);padding:3px 8px;text-align:left;vertical-align:top}
th{background:#eef0f2;font-weight:600}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.muted,.none{color:var(--muted)}.none{font-style:italic}
nav ul{margin:4px 0;padding-left:20px}
.scroll{overflow-x:auto;max-width:100%}
.summary span{display:inline-block;margin:2px 6px 2px 0;padding:1px 8px;border-radius:10px;
border:1px solid var(--line)}
.pass{background:var(--pass)}.fail{background:var(--fail);font-weight:700}
.error{background:var(--error);font-weight:700}.skip{background:var(--skip);color:#444}
.dev{background:var(--dev)}
table.matrix td{white-space:nowrap;font-size:12.5px}
table.matrix td a{color:inherit}
table.matrix th.rot{vertical-align:bottom;padding:4px 2px}
table.matrix th.rot div{writing-mode:vertical-rl;transform:rotate(180deg);white-space:nowrap;
max-height:260px;overflow:hidden;text-overflow:ellipsis}
.legend-table td{font-size:12.5px}
.failure{background:#fff;border:1px solid #e3a39b;border-left:5px solid #c0392b;padding:6px 12px;
margin:10px 0}
.warn{background:#fff4d6;border:1px solid #e0b84a;padding:6px 10px}
figure{background:#fff;border:1px solid var(--line);border-radius:6px;margin:14px 0;
padding:10px}
.fig-row{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}
.fig-table{flex:1 1 480px;min-width:300px;overflow-x:auto}
.fig-table table{font-size:12px;margin:0}
figcaption{font-size:13px;color:#333;margin-top:6px;max-width:1100px}
svg.chart{display:block;max-width:100%;height:auto;flex:0 0 auto}
svg.chart text{font-size:11px;fill:#222}
svg.chart .chart-title{font-size:13px;font-weight:700}
svg.chart .chart-subtitle,svg.chart .row-label,svg.chart .value{
font-family:"DejaVu Sans Mono",Menlo,Consolas,monospace;font-size:11px}
svg.chart .subtitle-muted{fill:#555}
svg.chart .axis-label{font-size:12px;font-weight:600}
svg.chart .value-head{font-size:10px;fill:#666}
svg.chart .grid{stroke:#e6e6e6;stroke-width:1}
svg.chart .domain{stroke:#444;stroke-width:1;fill:none}
svg.chart .stripe{fill:#f4f6f8}
svg.chart g.point:hover path,svg.chart g.point:hover circle,svg.chart g.point:hover rect,
svg.chart g.bar:hover rect{opacity:.75}
.summary span.zero{background:#fff;color:var(--muted)}
details summary{cursor:pointer;margin:4px 0}
table.rows td.mono:last-child{font-size:11.5px;max-width:520px}
footer{margin-top:32px;color:var(--muted);font-size:12px}
)";

struct Page {
  std::ostringstream body;
  std::vector<std::pair<std::string, std::string>> toc;  // id, title (h2 and h3)
  std::vector<int> toc_level;
  int figures = 0;
  Palette palette;

  void heading(int level, const std::string& id, const std::string& title) {
    body << "<h" << level << " id=\"" << esc(id) << "\">" << esc(title) << "</h" << level << ">\n";
    toc.push_back({id, title});
    toc_level.push_back(level);
  }
};

std::string basename_of(const std::string& path) {
  const auto p = fs::path(path).filename().string();
  return p.empty() ? path : p;
}

// ---- machine and versions -------------------------------------------------------------------

struct Fact {
  std::string text;
  bool missing = false;
};

Fact missing(const std::string& why = "not recorded") {
  return {why, true};
}

using Facts = std::vector<std::pair<std::string, Fact>>;

Facts verify_facts(const json& doc) {
  const json about = doc.value("about", json::object());
  auto have = [&](const std::string& k) -> Fact {
    const std::string v = context_text(about, k);
    return v.empty() ? missing() : Fact{v};
  };
  Facts f;
  f.push_back({"date", have("date")});
  f.push_back({"CPU", have("cpu")});
  f.push_back({"cores", have("cores")});
  f.push_back({"SIMD target", missing()});
  // Newer verify files name the GPU ("none (why)" without one), its driver and LibTorch
  // ("not built" without it); older ones do not.
  const std::string gpu = context_text(about, "gpu");
  const bool no_gpu = gpu.rfind("none", 0) == 0;
  f.push_back({"GPU", gpu.empty() ? missing() : no_gpu ? missing(gpu) : Fact{gpu}});
  const std::string driver = context_text(about, "gpu_driver");
  f.push_back({"GPU driver, CUDA runtime", !driver.empty() ? Fact{driver}
                                           : no_gpu        ? missing("none")
                                                           : missing()});
  const std::string libtorch = context_text(about, "libtorch");
  bool torch = false;
  for (const auto& r : member(doc, "results", true))
    if (r.value("implementation", "").rfind("torch:", 0) == 0) torch = true;
  f.push_back({"LibTorch", libtorch == "not built" ? missing("none (not built)")
                           : !libtorch.empty()     ? Fact{libtorch}
                           : torch ? missing("used (torch:* implementations); version not recorded")
                                   : missing()});
  std::string compiler = context_text(about, "compiler");
  if (!compiler.empty() && !context_text(about, "build_type").empty())
    compiler += ", " + context_text(about, "build_type");
  f.push_back({"compiler, build", compiler.empty() ? missing() : Fact{compiler}});
  std::string commit = context_text(about, "commit");
  if (!commit.empty()) {
    if (about.value("dirty", false)) commit += " (dirty: uncommitted changes)";
    if (!context_text(about, "maskcheck").empty())
      commit = "maskcheck " + context_text(about, "maskcheck") + ", " + commit;
  }
  f.push_back({"maskcheck, commit", commit.empty() ? missing() : Fact{commit}});
  std::string seed = doc.contains("seed") ? doc.at("seed").dump() : "";
  if (!seed.empty() && doc.contains("cases"))
    seed += " (" + doc.at("cases").dump() + " cases per property, size " +
            doc.value("size", "small") + ")";
  f.push_back({"seed", seed.empty() ? missing() : Fact{seed}});
  f.push_back({"operating system", have("os")});
  f.push_back({"measured limits", missing("none (verify runs no probes)")});
  f.push_back({"sizes", Fact{"verify: randomized cases up to max size " +
                             (doc.contains("max_size") ? doc.at("max_size").dump() : "?")}});
  return f;
}

Facts bench_facts(const json& doc, const BenchDoc& bench, const Limits& limits) {
  const json& ctx = bench.context;
  auto have = [&](const std::string& k) -> Fact {
    const std::string v = context_text(ctx, k);
    return v.empty() ? missing() : Fact{v};
  };
  Facts f;
  f.push_back({"date", have("date")});
  std::string cpu = context_text(ctx, "maskcheck.cpu");
  if (!context_text(ctx, "mhz_per_cpu").empty())
    cpu += (cpu.empty() ? "" : ", ") + context_text(ctx, "mhz_per_cpu") + " MHz";
  f.push_back({"CPU", cpu.empty() ? missing() : Fact{cpu}});
  std::string cores = context_text(ctx, "maskcheck.cores");
  if (cores.empty()) cores = context_text(ctx, "num_cpus");
  if (!context_text(ctx, "cpu.omp_threads").empty())
    cores += (cores.empty() ? "" : ", ") + context_text(ctx, "cpu.omp_threads") + " OpenMP threads";
  if (!context_text(ctx, "torch.cpu_threads").empty())
    cores += ", " + context_text(ctx, "torch.cpu_threads") + " LibTorch threads";
  f.push_back({"cores", cores.empty() ? missing() : Fact{cores}});
  f.push_back({"SIMD target", have("cpu.simd_target")});
  Fact gpu = missing();
  Fact driver = missing();
  const std::string device = context_text(ctx, "cuda.device");
  if (!device.empty()) {
    std::string g = device;
    std::vector<std::string> extra;
    if (!context_text(ctx, "cuda.compute_capability").empty())
      extra.push_back("compute capability " + context_text(ctx, "cuda.compute_capability"));
    if (!context_text(ctx, "cuda.sm_count").empty())
      extra.push_back(context_text(ctx, "cuda.sm_count") + " SMs");
    if (!context_text(ctx, "cuda.sm_clock_mhz").empty())
      extra.push_back(context_text(ctx, "cuda.sm_clock_mhz") + " MHz");
    if (!context_text(ctx, "cuda.memory_gib").empty())
      extra.push_back(context_text(ctx, "cuda.memory_gib") + " GiB");
    if (!context_text(ctx, "cuda.l2_mib").empty())
      extra.push_back("L2 " + context_text(ctx, "cuda.l2_mib") + " MiB");
    for (std::size_t i = 0; i < extra.size(); ++i) g += (i == 0 ? " (" : ", ") + extra[i];
    if (!extra.empty()) g += ")";
    gpu = {g};
    std::string d;
    if (!context_text(ctx, "cuda.driver").empty()) d = "driver " + context_text(ctx, "cuda.driver");
    if (!context_text(ctx, "cuda.runtime").empty())
      d += (d.empty() ? "" : ", ") + std::string("runtime ") + context_text(ctx, "cuda.runtime");
    driver = d.empty() ? missing() : Fact{d};
  } else if (!context_text(ctx, "cuda").empty()) {
    gpu = missing("none: " + context_text(ctx, "cuda"));
    driver = missing("none");
  }
  f.push_back({"GPU", gpu});
  f.push_back({"GPU driver, CUDA runtime", driver});
  std::string torch = context_text(ctx, "torch.version");
  if (!torch.empty()) {
    if (!context_text(ctx, "torch.cuda").empty())
      torch += ", CUDA " + context_text(ctx, "torch.cuda");
    if (!context_text(ctx, "torch.cudnn").empty())
      torch += ", cuDNN " + context_text(ctx, "torch.cudnn");
    if (!context_text(ctx, "torch.onednn_max_cpu_isa").empty())
      torch += "; oneDNN ISA capped: " + context_text(ctx, "torch.onednn_max_cpu_isa");
  }
  bool torch_rows = false;
  for (const auto& r : bench.rows) torch_rows = torch_rows || r.impl.rfind("torch", 0) == 0;
  f.push_back({"LibTorch", !torch.empty() ? Fact{torch}
                           : torch_rows   ? missing()
                                          : missing("none (no LibTorch rows in this file)")});
  std::string compiler = context_text(ctx, "maskcheck.compiler");
  if (!compiler.empty() && !context_text(ctx, "maskcheck.build_type").empty())
    compiler += ", " + context_text(ctx, "maskcheck.build_type");
  f.push_back({"compiler, build", compiler.empty() ? missing() : Fact{compiler}});
  std::string commit = context_text(ctx, "maskcheck.commit");
  if (!commit.empty()) {
    if (context_text(ctx, "maskcheck.dirty") == "true") commit += " (dirty: uncommitted changes)";
    if (!context_text(ctx, "maskcheck.version").empty())
      commit = "maskcheck " + context_text(ctx, "maskcheck.version") + ", " + commit;
  }
  f.push_back({"maskcheck, commit", commit.empty() ? missing() : Fact{commit}});
  f.push_back({"seed", have("maskcheck.seed")});
  f.push_back({"operating system", missing()});
  std::vector<std::string> lim;
  auto limit_line = [&](const std::string& what, const Limit& l, const std::string& ctx_key,
                        const std::string& ctx_unit) {
    std::string s;
    if (l.ok()) s = what + " " + si(l.value, l.unit) + (l.from_probe ? " (probe row" : " (context");
    if (l.ok() && l.from_probe && !context_text(ctx, ctx_key).empty())
      s += "; start-up " + context_text(ctx, ctx_key) + " " + ctx_unit;
    if (l.ok()) s += ")";
    if (!s.empty()) lim.push_back(s);
  };
  limit_line("CPU triad bandwidth", limits.cpu_bandwidth, "cpu.triad_bandwidth_gbps", "GB/s");
  limit_line("CPU FMA peak", limits.cpu_fma, "cpu.fma_peak_gflops", "GFLOP/s");
  limit_line("GPU copy bandwidth", limits.gpu_bandwidth, "cuda.copy_bandwidth_gbps", "GB/s");
  std::string lims;
  for (const auto& l : lim) lims += (lims.empty() ? "" : "; ") + l;
  f.push_back({"measured limits", lims.empty() ? missing("none in this file") : Fact{lims}});
  std::string sizes = context_text(ctx, "maskcheck.ci_budget") == "1"
                          ? "CI sizes (MASKCHECK_CI=1): smoke values, not measurements"
                          : "full sizes";
  if (ctx.contains("load_avg") && ctx.at("load_avg").is_array()) {
    std::string load;
    for (const auto& v : ctx.at("load_avg"))
      if (v.is_number()) load += (load.empty() ? "" : " ") + fixed(v.get<double>(), 2);
    sizes += "; load average at start " + load;
  }
  (void)doc;
  f.push_back({"sizes", Fact{sizes}});
  return f;
}

void machine_section(Page& page, const std::vector<json>& docs,
                     const std::vector<std::string>& labels,
                     const std::vector<std::optional<BenchDoc>>& benches,
                     const std::vector<Limits>& limits) {
  page.heading(2, "machine", "Machine and versions");
  std::vector<Facts> columns;
  for (std::size_t i = 0; i < docs.size(); ++i)
    columns.push_back(benches[i] ? bench_facts(docs[i], *benches[i], limits[i])
                                 : verify_facts(docs[i]));
  page.body << "<div class=\"scroll\"><table class=\"machine\"><tr><th></th>";
  for (const auto& l : labels) page.body << "<th>" << esc(l) << "</th>";
  page.body << "</tr>\n";
  for (std::size_t k = 0; k < columns.front().size(); ++k) {
    page.body << "<tr><th>" << esc(columns.front()[k].first) << "</th>";
    for (const auto& col : columns) {
      const Fact& fact = col[k].second;
      page.body << "<td" << (fact.missing ? " class=\"none\"" : "") << ">" << esc(fact.text)
                << "</td>";
    }
    page.body << "</tr>\n";
  }
  page.body << "</table></div>\n";
}

// ---- verification ---------------------------------------------------------------------------

std::string status_class(const std::string& status) {
  if (status == "passed") return "pass";
  if (status == "failed") return "fail";
  if (status == "error") return "error";
  if (status == "deviation") return "dev";
  return "skip";
}

std::string status_mark(const std::string& status) {
  if (status == "passed") return "\u2713 ";
  if (status == "failed" || status == "error") return "\u2717 ";
  if (status == "deviation") return "\u2248 ";
  return "\u2013 ";
}

// Percent-encodes a relative path for an href (keeps / and unreserved characters).
std::string href_path(const std::string& path) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : path) {
    if (std::isalnum(c) || c == '/' || c == '.' || c == '_' || c == '-' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

// The link from the report directory to a counterexample file, if the file exists.
std::optional<std::string> file_link(const std::string& file, const HtmlOptions& o) {
  if (o.out_dir.empty()) return std::nullopt;
  std::error_code ec;
  fs::path p(file);
  if (p.is_relative()) p = (o.cwd.empty() ? fs::current_path(ec) : o.cwd) / p;
  if (!fs::is_regular_file(p, ec)) return std::nullopt;
  const fs::path target = fs::weakly_canonical(p, ec);
  if (ec) return std::nullopt;
  fs::path base = o.out_dir;
  if (base.is_relative()) base = (o.cwd.empty() ? fs::current_path(ec) : o.cwd) / base;
  base = fs::weakly_canonical(base, ec);
  if (ec) return std::nullopt;
  const fs::path rel = target.lexically_relative(base);
  if (rel.empty()) return std::nullopt;
  return href_path(rel.generic_string());
}

std::string cell_tip(const json& r) {
  std::ostringstream t;
  t << r.value("implementation", "?") << " / " << r.value("property", "?") << ": "
    << r.value("status", "?") << ", " << r.value("cases", 0) << " cases";
  if (r.value("skipped_cases", 0) > 0) t << ", " << r.at("skipped_cases").get<int>() << " skipped";
  for (const auto& [reason, n] : member(r, "skip_reasons").items())
    t << "\nskipped" << (n.is_number() && n.get<int>() > 0 ? " " + n.dump() + "x" : "") << ": "
      << reason;
  for (const auto& [name, n] : member(r, "deviations").items())
    t << "\ndeviation " << name << " in " << n.dump() << " case(s)";
  for (const auto& e : member(r, "max_errors", true))
    if (e.is_object())
      t << "\nmax |err| " << e.value("tensor", "?") << ": "
        << (e.contains("max_abs_err") ? e.at("max_abs_err").dump() : "?") << " (ratio to bound "
        << (e.contains("max_ratio_to_bound") ? e.at("max_ratio_to_bound").dump() : "?") << ")";
  if (r.contains("seconds") && r.at("seconds").is_number())
    t << "\n" << format_seconds(r.at("seconds").get<double>());
  return t.str();
}

void verify_section(Page& page, const json& doc, const std::string& label, std::size_t index,
                    const HtmlOptions& options) {
  const std::string id = "verify-" + std::to_string(index);
  page.heading(2, id, "Verification: " + label);
  const json& s = member(doc, "summary");  // counts; a file without them shows zeros
  const json results = doc.value("results", json::array());
  page.body << "<p class=\"summary\">";
  const std::vector<std::pair<std::string, std::string>> kinds{{"passed", "pass"},
                                                               {"deviation", "dev"},
                                                               {"failed", "fail"},
                                                               {"error", "error"},
                                                               {"skipped", "skip"}};
  for (const auto& [key, cls] : kinds)
    page.body << "<span class=\"" << (s.value(key, 0) > 0 ? cls : "zero") << "\">"
              << s.value(key, 0) << " "
              << (key == "deviation" ? "passed with named deviations" : key) << "</span>";
  page.body << " in " << fixed(doc.value("duration_s", 0.0), 1) << " s; seed "
            << esc(doc.contains("seed") ? doc.at("seed").dump() : "?") << ", "
            << doc.value("cases", 0) << " cases per property, size "
            << esc(doc.value("size", "small"))
            << (doc.value("strict", false) ? ", strict (deviations fail)" : "") << ".</p>\n";
  if (const std::string note = shards_note(doc); !note.empty())
    page.body << "<p" << (note.find("missing") != std::string::npos ? " class=\"warn\"" : "")
              << ">Shards: " << esc(note) << ".</p>\n";
  page.body << "<p>Replay the run: <code>" << esc(doc.value("replay", "")) << "</code></p>\n";
  if (doc.contains("kill_rate")) {
    const json& k = doc.at("kill_rate");
    page.body << "<p><strong>Mutant kill rate: " << k.value("killed", 0) << " / "
              << k.value("total", 0)
              << "</strong> (a mutant is killed when at least one property fails on it; against "
                 "mutants a failure is the goal).</p>\n";
  }

  // The matrix: properties down, implementations across.
  std::vector<std::string> impls, props;
  std::map<std::pair<std::string, std::string>, std::size_t> at;
  for (std::size_t i = 0; i < results.size(); ++i) {
    const std::string impl = results[i].value("implementation", "?");
    const std::string prop = results[i].value("property", "?");
    if (std::find(impls.begin(), impls.end(), impl) == impls.end()) impls.push_back(impl);
    if (std::find(props.begin(), props.end(), prop) == props.end()) props.push_back(prop);
    at[{prop, impl}] = i;
  }
  std::map<std::size_t, std::string> failure_ids;
  for (std::size_t i = 0; i < results.size(); ++i) {
    const std::string st = results[i].value("status", "");
    if (st == "failed" || st == "error")
      failure_ids[i] = id + "-failure-" + std::to_string(failure_ids.size() + 1);
  }
  page.heading(3, id + "-matrix", "Properties \u00d7 implementations");
  page.body << "<table class=\"legend-table\"><tr>"
            << "<td class=\"pass\">\u2713 pass N: N cases passed</td>"
            << "<td class=\"dev\">\u2248 pass N, deviation NAME: passed with a named convention "
               "difference</td>"
            << "<td class=\"fail\">\u2717 FAIL: a property failed (linked below)</td>"
            << "<td class=\"error\">\u2717 ERROR: the implementation threw</td>"
            << "<td class=\"skip\">\u2013 skip: unsupported, with the reason on hover</td>"
            << "<td>-: not run</td></tr></table>\n";
  const bool rotate = impls.size() > 6;
  page.body << "<div class=\"scroll\"><table class=\"matrix\"><tr><th>property</th>";
  for (const auto& impl : impls)
    page.body << "<th" << (rotate ? " class=\"rot\"><div>" : ">") << esc(impl)
              << (rotate ? "</div>" : "") << "</th>";
  page.body << "</tr>\n";
  for (const auto& prop : props) {
    page.body << "<tr><th class=\"mono\">" << esc(prop) << "</th>";
    for (const auto& impl : impls) {
      const auto it = at.find({prop, impl});
      if (it == at.end()) {
        page.body << "<td class=\"muted\">-</td>";
        continue;
      }
      const json& r = results[it->second];
      const std::string st = r.value("status", "");
      page.body << "<td class=\"" << status_class(st) << "\" title=\"" << esc(cell_tip(r)) << "\">";
      const std::string text = status_mark(st) + verify_cell(r);
      if (const auto f = failure_ids.find(it->second); f != failure_ids.end())
        page.body << "<a href=\"#" << f->second << "\">" << esc(text) << "</a>";
      else
        page.body << esc(text);
      page.body << "</td>";
    }
    page.body << "</tr>\n";
  }
  page.body << "</table></div>\n";

  if (!failure_ids.empty()) {
    page.heading(3, id + "-failures", "Failures (" + std::to_string(failure_ids.size()) + ")");
    for (const auto& [i, fid] : failure_ids) {
      const json& r = results[i];
      page.body << "<div class=\"failure\" id=\"" << fid << "\"><h4>"
                << (r.value("status", "") == "error" ? "ERROR " : "FAILED ")
                << esc(r.value("implementation", "?")) << " \u2014 <span class=\"mono\">"
                << esc(r.value("property", "?")) << "</span></h4>\n";
      page.body << "<p>after " << r.value("cases", 0) << " passing case(s); property seed "
                << esc(r.contains("seed") ? r.at("seed").dump() : "?") << "</p>\n";
      page.body << "<p>Message:</p><pre>" << esc(r.value("message", "(none)")) << "</pre>\n";
      if (r.contains("counterexample") && !r.at("counterexample").empty()) {
        page.body << "<p>Shrunk counterexample:</p><pre>";
        for (const auto& ce : r.at("counterexample"))
          page.body << esc(ce.value("type", "?")) << ": " << esc(ce.value("value", "?")) << "\n";
        page.body << "</pre>\n";
      } else {
        page.body << "<p class=\"none\">No counterexample recorded.</p>\n";
      }
      page.body << "<p>Replay: <code>" << esc(r.value("replay", "")) << "</code></p>\n";
      if (r.contains("failed_chunks") && r.at("failed_chunks").size() > 1)
        page.body << "<p>Also failed in chunks " << esc(chunks_text(r.at("failed_chunks"), 1))
                  << " (replay one with <code>--chunk J</code>).</p>\n";
      const json files = r.value("counterexample_files", json::array());
      if (!files.empty()) {
        page.body << "<p>Counterexample files (replay one with <code>maskcheck eval "
                  << esc(r.value("op", "OP")) << " --impl " << esc(r.value("implementation", "?"))
                  << " --in FILE</code>):</p><ul>";
        for (const auto& f : files) {
          const std::string name = f.is_string() ? f.get<std::string>() : f.dump();
          if (const auto link = file_link(name, options))
            page.body << "<li><a class=\"mono\" href=\"" << esc(*link) << "\">" << esc(name)
                      << "</a></li>";
          else
            page.body << "<li><span class=\"mono\">" << esc(name)
                      << "</span> <span class=\"none\">(not found from the report's "
                         "directory)</span></li>";
        }
        page.body << "</ul>\n";
      } else {
        page.body << "<p class=\"none\">No counterexample files.</p>\n";
      }
      page.body << "</div>\n";
    }
  }

  bool any = false;
  for (const auto& r : results)
    for (const auto& [name, n] : member(r, "deviations").items()) {
      if (!any) {
        page.heading(3, id + "-deviations", "Named deviations");
        page.body << "<p>Conventions on which libraries legitimately differ (see the README); "
                     "they fail the run only with <code>--strict</code>.</p>"
                  << "<table><tr><th>implementation</th><th>property</th><th>deviation</th>"
                     "<th class=\"num\">cases</th></tr>\n";
      }
      any = true;
      page.body << "<tr><td>" << esc(r.value("implementation", "?")) << "</td><td class=\"mono\">"
                << esc(r.value("property", "?")) << "</td><td class=\"mono\">" << esc(name)
                << "</td><td class=\"num\">" << esc(n.dump()) << "</td></tr>\n";
    }
  if (any) page.body << "</table>\n";

  any = false;
  for (const auto& r : results)
    for (const auto& [reason, n] : member(r, "skip_reasons").items()) {
      if (!any) {
        page.heading(3, id + "-skipped", "Skipped cases");
        page.body << "<div class=\"scroll\"><table><tr><th>implementation</th><th>property</th>"
                     "<th class=\"num\">cases</th><th>reason</th></tr>\n";
      }
      any = true;
      const int count = n.is_number() ? n.get<int>() : 0;
      page.body << "<tr><td>" << esc(r.value("implementation", "?")) << "</td><td class=\"mono\">"
                << esc(r.value("property", "?")) << "</td><td class=\"num\">"
                << (count > 0 ? std::to_string(count) : std::string("all")) << "</td><td>"
                << esc(reason) << "</td></tr>\n";
    }
  if (any) page.body << "</table></div>\n";

  if (doc.contains("mutants") && doc.at("mutants").is_array()) {
    page.heading(3, id + "-mutants", "Mutants");
    page.body << "<div class=\"scroll\"><table><tr><th>mutant</th><th>bug</th><th>verdict</th>"
                 "<th>killed by</th></tr>\n";
    for (const auto& m : doc.at("mutants")) {
      const bool killed = m.value("killed", false);
      std::string by;
      for (const auto& p : member(m, "killed_by", true))
        if (p.is_string()) by += (by.empty() ? "" : ", ") + p.get<std::string>();
      page.body << "<tr><td class=\"mono\">" << esc(m.value("name", "?")) << "</td><td>"
                << esc(m.value("bug", "")) << "</td><td class=\"" << (killed ? "pass" : "fail")
                << "\">" << (killed ? "\u2713 killed" : "\u2717 SURVIVED")
                << "</td><td class=\"mono\">" << esc(by.empty() ? "-" : by) << "</td></tr>\n";
    }
    page.body << "</table></div>\n";
  }
}

// ---- benchmarks -----------------------------------------------------------------------------

// A figure: the chart, its table beside it, and a caption.
void figure(Page& page, const std::string& kind, const std::string& chart, const std::string& table,
            const std::string& caption) {
  ++page.figures;
  page.body << "<figure class=\"chart-figure\" id=\"figure-" << page.figures << "\" data-kind=\""
            << kind << "\"><div class=\"fig-row\">" << chart << "<div class=\"fig-table\">" << table
            << "</div></div><figcaption><strong>Figure " << page.figures << ".</strong> " << caption
            << "</figcaption></figure>\n";
}

// What the whiskers of a set of stats mean, for a legend and a caption.
std::string whisker_meaning(const std::vector<Stat>& stats) {
  std::set<std::string> kinds;
  int n_min = 1 << 30, n_max = 0;
  for (const auto& s : stats) {
    if (s.spread == Spread::none) continue;
    kinds.insert(s.spread == Spread::min_max ? "min\u2013max" : "median \u00b1 1 stddev");
    n_min = std::min(n_min, s.n);
    n_max = std::max(n_max, s.n);
  }
  if (kinds.empty()) return "no spread recorded (a single repetition)";
  std::string k;
  for (const auto& x : kinds) k += (k.empty() ? "" : " or ") + x;
  const std::string n = n_min == n_max ? std::to_string(n_min)
                                       : std::to_string(n_min) + "\u2013" + std::to_string(n_max);
  return "whiskers: " + k + " over " + n + " repetitions";
}

std::string lq_of(const std::string& group) {
  for (const auto& p : name_components(group))
    if (p.size() > 2 && p.rfind("Lq", 0) == 0 && is_axis(p)) return p.substr(2);
  return "";
}

void throughput_charts(Page& page, const BenchDoc& bench, const std::string& id) {
  const auto families = length_families(bench);
  page.heading(3, id + "-throughput", "Throughput against sequence length");
  if (families.empty()) {
    page.body << "<p class=\"none\">No chart: no family of rows that differ only in their "
                 "sequence length (L or Lk) has two or more lengths in this file.</p>\n";
    return;
  }
  page.body << "<p>One chart per family of rows that differ only in the sequence-length axis of "
               "their names; one line per implementation, the marker at the median, "
               "log<sub>2</sub> length axis. Attention is measured in useful FLOP/s (FLOPs of "
               "visible (query, key) pairs only), everything else in bytes moved per second. "
               "Hover a point for its values.</p>\n";
  for (const auto& fam : families) {
    svg::XYChart c;
    c.title = "Throughput against sequence length";
    c.subtitle = fam.pattern;
    const std::string axis_name = fam.axis == "Lk" ? "keys per row Lk" : "sequence length L";
    c.x_label = axis_name + " [tokens, log2 axis]";
    c.y_what = fam.metric.counter == "bytes_per_second" ? "{} (bytes moved)" : "useful {}";
    c.y_unit = fam.metric.unit;
    std::vector<Stat> stats;
    std::ostringstream table;
    table << "<table><tr><th>implementation</th><th class=\"num\">" << esc(fam.axis)
          << "</th><th class=\"num\">median</th><th class=\"num\">spread</th>"
             "<th class=\"num\">reps</th></tr>";
    const auto unit_fmt = [&](double v) { return si(v, fam.metric.unit); };
    for (const auto& line : fam.lines) {
      const Style st = page.palette.of(line.impl);
      svg::XYSeries s{line.impl, st.color, st.marker, {}};
      for (const auto& p : line.points) {
        const Stat v = counter_stat(*p.row, fam.metric.counter, fam.metric.scale);
        if (!v.ok()) continue;
        stats.push_back(v);
        svg::XYPoint pt;
        pt.x = static_cast<double>(p.length);
        pt.y = v.median;
        if (v.spread != Spread::none) {
          pt.lo = v.lo;
          pt.hi = v.hi;
        }
        pt.tip = line.impl + " at " + fam.axis + "=" + std::to_string(p.length) + ": " +
                 tip_stat(v, unit_fmt) + "; time " + format_seconds(p.row->median_s) + "\n" +
                 p.row->name;
        s.points.push_back(pt);
        table << "<tr><td title=\"" << esc(p.row->name) << "\">" << esc(line.impl)
              << "</td><td class=\"num\">" << p.length << "</td><td class=\"num\">"
              << esc(unit_fmt(v.median)) << "</td><td class=\"num\">"
              << esc(spread_text(v, unit_fmt)) << "</td><td class=\"num\">" << v.n << "</td></tr>";
      }
      c.series.push_back(std::move(s));
    }
    table << "</table>";
    const std::string whiskers = whisker_meaning(stats);
    c.extra_legend.push_back({svg::LegendItem::Kind::whisker, whiskers, "#444", 0, whiskers});
    std::string caption =
        "<span class=\"mono\">" + esc(fam.pattern) + "</span>: " +
        (fam.metric.counter == "bytes_per_second" ? "bytes moved per second" : "useful FLOP/s") +
        " against " + esc(axis_name) + "; " + esc(whiskers) + ".";
    if (fam.lq_varies) {
      std::string pairs;
      std::set<long long> seen;
      for (const auto& line : fam.lines)
        for (const auto& p : line.points)
          if (seen.insert(p.length).second)
            pairs += (pairs.empty() ? "" : ", ") + std::string("Lk ") + std::to_string(p.length) +
                     " \u00d7 Lq " + lq_of(p.row->group);
      caption += " The number of query rows changes with the keys per row: " + esc(pairs) + ".";
    }
    figure(page, "throughput", svg::line_chart(c), table.str(), caption);
  }
}

// Splits items into charts of at most `max` bars, breaking between name prefixes where it can.
template <class T, class PrefixOf>
std::vector<std::vector<T>> chunk_by_prefix(const std::vector<T>& items, std::size_t max,
                                            PrefixOf prefix_of) {
  std::vector<std::vector<T>> blocks;
  std::string last;
  for (const auto& it : items) {
    const std::string p = prefix_of(it);
    if (blocks.empty() || p != last) blocks.push_back({});
    blocks.back().push_back(it);
    last = p;
  }
  std::vector<std::vector<T>> charts;
  for (const auto& b : blocks) {
    if (!charts.empty() && charts.back().size() + b.size() <= max) {
      charts.back().insert(charts.back().end(), b.begin(), b.end());
      continue;
    }
    for (std::size_t i = 0; i < b.size(); i += max)
      charts.push_back(
          std::vector<T>(b.begin() + static_cast<std::ptrdiff_t>(i),
                         b.begin() + static_cast<std::ptrdiff_t>(std::min(i + max, b.size()))));
  }
  return charts;
}

constexpr std::size_t kMaxBars = 32;

void speedup_charts(Page& page, const BenchDoc& bench, const std::string& id) {
  const auto speedups = torch_speedups(bench);
  page.heading(3, id + "-speedup", "Speedup over LibTorch");
  if (speedups.empty()) {
    page.body << "<p class=\"none\">No chart: no benchmark in this file has both a maskcheck row "
                 "and a LibTorch (torch*) peer that ran.</p>\n";
    return;
  }
  page.body << "<p>Bar = the peer's median time / maskcheck's median time, on a log axis from "
               "1\u00d7: to the right of the dashed line maskcheck is faster, to the left "
               "slower.</p>\n";
  const auto charts = chunk_by_prefix(speedups, kMaxBars,
                                      [](const Speedup& s) { return length_block(s.own->group); });
  for (std::size_t ci = 0; ci < charts.size(); ++ci) {
    const auto& chunk = charts[ci];
    std::vector<std::string> names;
    for (const auto& s : chunk) names.push_back(s.own->group);
    const std::size_t common = common_components(names);
    svg::BarChart c;
    c.title = "Speedup of maskcheck over LibTorch" +
              (charts.size() > 1
                   ? " (" + std::to_string(ci + 1) + " of " + std::to_string(charts.size()) + ")"
                   : std::string());
    c.subtitle = prefix_text(names.front(), common);
    c.x_label = "speedup = LibTorch time / maskcheck time [\u00d7, log axis]";
    c.y_label = "benchmark \u00b7 LibTorch peer";
    c.log_x = true;
    c.tick_text = [](double v) {
      std::ostringstream os;
      os.precision(3);
      os << v << "\u00d7";
      return os.str();
    };
    c.reference = 1;
    c.reference_label = "1\u00d7: as fast";
    std::vector<Stat> stats;
    std::vector<std::string> peers;
    std::ostringstream table;
    table << "<table><tr><th>benchmark</th><th>peer</th><th class=\"num\">maskcheck</th>"
             "<th class=\"num\">peer</th><th class=\"num\">speedup</th>"
             "<th class=\"num\">spread</th><th class=\"num\">reps</th></tr>";
    for (const auto& s : chunk) {
      const std::string rest = join_path(name_components(s.own->group), common);
      const Style st = page.palette.of(s.peer->impl);
      if (std::find(peers.begin(), peers.end(), s.peer->impl) == peers.end())
        peers.push_back(s.peer->impl);
      stats.push_back(s.ratio);
      svg::Bar b;
      b.label = rest + " \u00b7 " + s.peer->impl;
      b.color = st.color;
      b.value = s.ratio.median;
      if (s.ratio.spread != Spread::none) {
        b.lo = s.ratio.lo;
        b.hi = s.ratio.hi;
      }
      b.value_text = ratio_text(s.ratio.median);
      b.tip = s.own->group + "\n" + s.peer->impl + " " + format_seconds(s.peer->median_s) +
              " / maskcheck " + format_seconds(s.own->median_s) + " = " +
              ratio_text(s.ratio.median) + "; " + tip_stat(s.ratio, ratio_text) +
              (s.ratio.spread == Spread::min_max
                   ? "\nrange: every pairing of a peer and a maskcheck repetition"
                   : "");
      c.bars.push_back(b);
      table << "<tr><td class=\"mono\" title=\"" << esc(s.own->group) << "\">" << esc(rest)
            << "</td><td>" << esc(s.peer->impl) << "</td><td class=\"num\">"
            << esc(format_seconds(s.own->median_s)) << "</td><td class=\"num\">"
            << esc(format_seconds(s.peer->median_s)) << "</td><td class=\"num\">"
            << esc(ratio_text(s.ratio.median)) << "</td><td class=\"num\">"
            << esc(spread_text(s.ratio, ratio_text)) << "</td><td class=\"num\">" << s.ratio.n
            << "</td></tr>";
    }
    table << "</table>";
    for (const auto& p : peers) {
      const Style st = page.palette.of(p);
      c.legend.push_back({svg::LegendItem::Kind::bar, "vs " + p, st.color, 0, p});
    }
    const std::string whiskers = whisker_meaning(stats);
    c.legend.push_back({svg::LegendItem::Kind::whisker, whiskers, "#222", 0,
                        whiskers + " (min\u2013max: peer min / maskcheck max to peer max / "
                                   "maskcheck min)"});
    c.legend.push_back(
        {svg::LegendItem::Kind::reference, "1\u00d7 = as fast as the peer", "#b00", 0, ""});
    std::string caption =
        "Speedup of maskcheck over its LibTorch peers" +
        (common > 0 ? " in <span class=\"mono\">" + esc(c.subtitle) + "</span>" : std::string()) +
        "; " + esc(whiskers) +
        (stats.front().spread == Spread::min_max
             ? " (the range of peer / maskcheck over every pairing of their repetitions)"
             : "") +
        ". Medians are in the table and at the right of each bar.";
    figure(page, "speedup", svg::bar_chart(c), table.str(), caption);
  }
}

void fraction_charts(Page& page, const BenchDoc& bench, const Limits& limits,
                     const std::string& id) {
  const auto fractions = limit_fractions(bench, limits);
  page.heading(3, id + "-limits", "Fraction of the measured limits");
  std::size_t gpu_attention = 0;
  for (const auto& r : bench.rows)
    if (r.ok() && r.impl.rfind("maskcheck", 0) == 0 && !is_cpu_row(r) && r.counter("useful_TFLOPS"))
      ++gpu_attention;
  auto limit_text = [&](const std::string& what, const Limit& l) {
    return "<li>" + what + ": " +
           (l.ok() ? "<strong>" + esc(si(l.value, l.unit)) + "</strong> from the " + esc(l.source)
                   : std::string("<span class=\"none\">not measured in this file</span>")) +
           "</li>";
  };
  page.body << "<p>Each maskcheck row against the limits measured on this machine in the same "
               "run (probe rows preferred over the values the benchmark recorded at start-up):"
               "</p><ul>"
            << limit_text("CPU memory bandwidth (STREAM triad)", limits.cpu_bandwidth)
            << limit_text("CPU FMA peak", limits.cpu_fma)
            << limit_text("GPU memory bandwidth (device-to-device copy)", limits.gpu_bandwidth)
            << "</ul>\n";
  if (gpu_attention > 0)
    page.body << "<p class=\"muted\">" << gpu_attention
              << " GPU attention row(s) are not shown: there is no measured compute limit "
                 "(tensor-core peak) for the GPU.</p>\n";
  if (fractions.empty()) {
    page.body << "<p class=\"none\">No chart: no maskcheck row has a measured limit to be "
                 "compared with in this file.</p>\n";
    return;
  }
  const auto charts = chunk_by_prefix(fractions, kMaxBars,
                                      [](const Fraction& f) { return length_block(f.row->group); });
  const std::string bw_color = "#0072B2", fma_color = "#E69F00";
  for (std::size_t ci = 0; ci < charts.size(); ++ci) {
    const auto& chunk = charts[ci];
    std::vector<std::string> names;
    for (const auto& f : chunk) names.push_back(f.row->group);
    const std::size_t common = common_components(names);
    svg::BarChart c;
    c.title = "Achieved fraction of the measured limit" +
              (charts.size() > 1
                   ? " (" + std::to_string(ci + 1) + " of " + std::to_string(charts.size()) + ")"
                   : std::string());
    c.subtitle = prefix_text(names.front(), common);
    c.x_label = "achieved / measured limit [fraction; 1.0 = the limit]";
    c.y_label = "maskcheck benchmark";
    c.reference = 1;
    c.reference_label = "1.0: measured limit";
    c.tick_text = [](double v) { return fixed(v, v == std::floor(v) ? 1 : 2); };
    std::vector<Stat> stats;
    bool bw = false, fma = false;
    std::ostringstream table;
    table << "<table><tr><th>benchmark</th><th class=\"num\">achieved</th><th>against</th>"
             "<th class=\"num\">fraction</th><th class=\"num\">spread</th>"
             "<th class=\"num\">reps</th></tr>";
    for (const auto& f : chunk) {
      const bool is_bw = f.kind == Fraction::Kind::bandwidth;
      bw = bw || is_bw;
      fma = fma || !is_bw;
      const Limit& l = is_bw ? (is_cpu_row(*f.row) ? limits.cpu_bandwidth : limits.gpu_bandwidth)
                             : limits.cpu_fma;
      const std::string unit = is_bw ? "B/s" : "FLOP/s";
      stats.push_back(f.fraction);
      svg::Bar b;
      b.label = join_path(name_components(f.row->group),
                          std::min(common, name_components(f.row->group).size() - 1)) +
                (f.row->impl == "maskcheck" ? "" : " \u00b7 " + f.row->impl);
      b.color = is_bw ? bw_color : fma_color;
      b.value = f.fraction.median;
      if (f.fraction.spread != Spread::none) {
        b.lo = f.fraction.lo;
        b.hi = f.fraction.hi;
      }
      b.value_text = fixed(f.fraction.median, 2);
      const auto frac_fmt = [](double v) { return fixed(v, 3); };
      b.tip = f.row->name + "\n" + (is_bw ? "bytes/s " : "useful FLOP/s ") +
              si(f.achieved.median, unit) + " / " + si(l.value, l.unit) + " = " +
              fixed(f.fraction.median, 3) + "; " + tip_stat(f.fraction, frac_fmt) +
              "\nlimit: " + l.source;
      c.bars.push_back(b);
      table << "<tr><td class=\"mono\" title=\"" << esc(f.row->name) << "\">" << esc(b.label)
            << "</td><td class=\"num\">" << esc(si(f.achieved.median, unit)) << "</td><td>"
            << (is_bw ? "bandwidth" : "FMA peak") << "</td><td class=\"num\">"
            << fixed(f.fraction.median, 3) << "</td><td class=\"num\">"
            << esc(spread_text(f.fraction, frac_fmt)) << "</td><td class=\"num\">" << f.fraction.n
            << "</td></tr>";
    }
    table << "</table>";
    if (bw)
      c.legend.push_back({svg::LegendItem::Kind::bar, "bytes/s \u00f7 measured bandwidth", bw_color,
                          0, "memory-bound rows"});
    if (fma)
      c.legend.push_back(
          {svg::LegendItem::Kind::bar, "useful FLOP/s \u00f7 FMA peak", fma_color, 0, "attention"});
    const std::string whiskers = whisker_meaning(stats);
    c.legend.push_back({svg::LegendItem::Kind::whisker, whiskers, "#222", 0, ""});
    c.legend.push_back({svg::LegendItem::Kind::reference, "1.0 = measured limit", "#b00", 0, ""});
    std::string sources;
    if (bw) {
      std::set<std::string> src;
      for (const auto& f : chunk)
        if (f.kind == Fraction::Kind::bandwidth)
          src.insert((is_cpu_row(*f.row) ? limits.cpu_bandwidth : limits.gpu_bandwidth).source);
      for (const auto& s : src) sources += " Bandwidth: the " + esc(s) + ".";
    }
    if (fma) sources += " FMA peak: the " + esc(limits.cpu_fma.source) + ".";
    const std::string caption =
        "Fraction of the measured limit reached by each maskcheck row; " + esc(whiskers) +
        " of the row (the limit's own spread is not included)." + sources +
        " Above 1.0 the row beats the probe (for example data that stays in cache, or a probe "
        "that does not reach the peak).";
    figure(page, "limits", svg::bar_chart(c), table.str(), caption);
  }
}

void rows_table(Page& page, const BenchDoc& bench, const std::string& id) {
  page.heading(3, id + "-rows", "All rows");
  page.body << "<details><summary>Every row of the file (" << bench.rows.size()
            << "): median time, spread, repetitions, throughput and the medians of all its "
               "counters; hover a name for its label.</summary>\n";
  page.body << "<div class=\"scroll\"><table class=\"rows\"><tr><th>benchmark</th>"
               "<th>implementation</th><th class=\"num\">median time</th>"
               "<th class=\"num\">spread</th><th class=\"num\">reps</th>"
               "<th class=\"num\">throughput</th><th>counters (medians)</th></tr>\n";
  for (const auto& r : bench.rows) {
    page.body << "<tr><td class=\"mono\" title=\"" << esc(r.label) << "\">" << esc(r.group)
              << "</td><td>" << esc(r.impl) << "</td>";
    if (!r.ok()) {
      page.body << "<td colspan=\"5\" class=\"skip\">skipped: "
                << esc(r.error.empty() ? "no time" : r.error) << "</td></tr>\n";
      continue;
    }
    const Stat t = time_stat(r);
    page.body << "<td class=\"num\">" << esc(format_seconds(t.median)) << "</td><td class=\"num\">"
              << esc(spread_text(t, format_seconds)) << "</td><td class=\"num\">" << t.n << "</td>";
    const auto metric = throughput_metric(r);
    page.body << "<td class=\"num\">"
              << (metric ? esc(si(*r.counter(metric->counter) * metric->scale, metric->unit))
                         : std::string("-"))
              << "</td><td class=\"mono\">";
    std::string counters;
    for (const auto& [k, v] : r.counters)
      counters += (counters.empty() ? "" : ", ") + k + "=" + format_si(v);
    page.body << esc(counters) << "</td></tr>\n";
  }
  page.body << "</table></div></details>\n";
}

void bench_section(Page& page, const json& doc, const BenchDoc& bench, const Limits& limits,
                   const std::string& label, std::size_t index) {
  (void)doc;
  const std::string id = "bench-" + std::to_string(index);
  page.heading(2, id, "Benchmarks: " + label);
  std::set<std::string> impls;
  int reps = 0, ok = 0, skipped = 0;
  for (const auto& r : bench.rows) {
    impls.insert(r.impl);
    reps = std::max(reps, r.repetitions);
    (r.ok() ? ok : skipped) += 1;
  }
  page.body << "<p>" << bench.rows.size() << " rows (" << ok << " ran, " << skipped << " skipped), "
            << impls.size() << " implementations, " << reps_text(reps) << " each";
  bool samples = false;
  for (const auto& r : bench.rows) samples = samples || r.seconds.size() > 1;
  page.body << (samples ? " (every repetition recorded: spreads are min\u2013max)"
                        : " (aggregates only: spreads are \u00b1 1 stddev)")
            << ".</p>\n";
  // maskcheck.timing: the CUDA timing in files written before it became cuda.timing.
  for (const std::string key : {"cpu.timing", "cuda.timing", "maskcheck.timing"}) {
    const std::string v = context_text(bench.context, key);
    if (!v.empty()) page.body << "<p class=\"muted\">" << esc(key) << ": " << esc(v) << "</p>\n";
  }
  if (context_text(bench.context, "maskcheck.ci_budget") == "1")
    page.body << "<p class=\"warn\">This file was measured at CI sizes (MASKCHECK_CI=1): the "
                 "problems are small and the probes cache-resident, so the numbers are smoke "
                 "values, not measurements.</p>\n";
  throughput_charts(page, bench, id);
  speedup_charts(page, bench, id);
  fraction_charts(page, bench, limits, id);
  rows_table(page, bench, id);
}

}  // namespace

std::string html_escape(std::string_view s) {
  return svg::escape(s);
}

std::string html_report(const std::vector<json>& docs, const HtmlOptions& options) {
  std::vector<DocKind> kinds;
  std::vector<std::string> labels;
  std::vector<std::optional<BenchDoc>> benches;
  std::vector<Limits> limits;
  for (std::size_t i = 0; i < docs.size(); ++i) {
    const std::string source = i < options.sources.size() ? options.sources[i] : "";
    kinds.push_back(
        doc_kind(docs[i], source.empty() ? "result file " + std::to_string(i + 1) : source));
    std::string label = source.empty() ? "file " + std::to_string(i + 1) : basename_of(source);
    // Two inputs with one file name (reports/gpu/.../bench.json, reports/cpu/.../bench.json):
    // name them by their directory too.
    for (std::size_t j = 0; j < options.sources.size(); ++j)
      if (j != i && !source.empty() && basename_of(options.sources[j]) == basename_of(source)) {
        const fs::path p(source);
        label = (p.parent_path().filename() / p.filename()).generic_string();
        break;
      }
    label += kinds.back() == DocKind::verify ? " (verify)" : " (bench)";
    labels.push_back(label);
    if (kinds.back() == DocKind::bench) {
      benches.push_back(parse_bench(docs[i]));
      limits.push_back(measured_limits(*benches.back()));
    } else {
      benches.push_back(std::nullopt);
      limits.push_back({});
    }
  }

  Page page;
  if (!docs.empty()) machine_section(page, docs, labels, benches, limits);
  for (std::size_t i = 0; i < docs.size(); ++i) {
    if (kinds[i] == DocKind::verify)
      verify_section(page, docs[i], labels[i], i + 1, options);
    else
      bench_section(page, docs[i], *benches[i], limits[i], labels[i], i + 1);
  }

  std::ostringstream os;
  os << "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
     << "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
        "style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'\">\n"
     << "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
     << "<meta name=\"generator\" content=\"maskcheck report\">\n"
     << "<title>maskcheck report</title>\n<style>" << kCss << "</style></head>\n<body><main>\n"
     << "<h1>maskcheck report</h1>\n<p class=\"muted\">";
  if (!options.generated.empty())
    os << "Generated " << esc(options.generated) << " from ";
  else
    os << "From ";
  for (std::size_t i = 0; i < labels.size(); ++i) {
    const std::string path = i < options.sources.size() ? options.sources[i] : labels[i];
    os << (i == 0 ? "" : ", ") << "<span class=\"mono\">" << esc(path) << "</span> ("
       << (kinds[i] == DocKind::verify ? "verify" : "bench") << ")";
  }
  os << ". Self-contained: no scripts, nothing loaded from elsewhere; hover a chart's points and "
        "bars, or a matrix cell, for its values.</p>\n";
  os << "<nav><strong>Contents</strong><ul>";
  bool in_sub = false, open_top = false;
  for (std::size_t i = 0; i < page.toc.size(); ++i) {
    const std::string link =
        "<a href=\"#" + esc(page.toc[i].first) + "\">" + esc(page.toc[i].second) + "</a>";
    if (page.toc_level[i] == 2) {
      os << (in_sub ? "</ul></li>" : open_top ? "</li>" : "") << "<li>" << link;
      in_sub = false;
      open_top = true;
    } else {
      if (!in_sub) os << "<ul>";
      in_sub = true;
      os << "<li>" << link << "</li>";
    }
  }
  os << (in_sub ? "</ul></li>" : open_top ? "</li>" : "");
  os << "</ul></nav>\n" << page.body.str();
  os << "<footer>maskcheck report: " << page.figures << " chart" << (page.figures == 1 ? "" : "s")
     << ".</footer>\n</main></body></html>\n";
  return os.str();
}

}  // namespace maskcheck::reports
