#include "maskcheck/reports/shards.hpp"

#include <algorithm>
#include <limits>
#include <map>
#include <set>
#include <stdexcept>

#include "maskcheck/reports/results.hpp"

namespace maskcheck::reports {
namespace {

using nlohmann::json;

bool is_shard(const json& doc) {
  return doc.is_object() && doc.contains("shard") && doc.at("shard").is_object() &&
         doc.at("shard").contains("run") && doc.at("shard").at("run").is_string();
}

std::vector<int> ints(const json& row, const char* key) {
  return row.contains(key) ? row.at(key).get<std::vector<int>>() : std::vector<int>();
}

void add_counts(json& into, const json& from, const char* key) {
  if (!from.contains(key)) return;
  json& to = into[key];
  if (to.is_null()) to = json::object();
  for (const auto& [k, n] : from.at(key).items())
    to[k] = to.value(k, 0) + n.get<std::int64_t>();
}

// Error maxima per tensor; null is +inf (JSON has no infinity).
void max_errors(json& into, const json& from) {
  std::map<std::string, json> by_tensor;
  for (const json* side : {static_cast<const json*>(&into), &from})
    for (const auto& e : side->value("max_errors", json::array())) {
      const std::string t = e.value("tensor", "");
      auto [it, added] = by_tensor.emplace(t, e);
      if (added) continue;
      for (const char* key : {"max_abs_err", "max_rel_err", "max_ratio_to_bound"}) {
        json& a = it->second[key];
        const json& b = e.at(key);
        if (a.is_null() || b.is_null())
          a = nullptr;
        else
          a = std::max(a.get<double>(), b.get<double>());
      }
    }
  json out = json::array();
  for (auto& [t, e] : by_tensor) out.push_back(std::move(e));
  into["max_errors"] = out;
}

// The status of summed chunks, as the runner rules: failed, error, then by the cases.
std::string merged_status(const json& a, const json& b, const json& merged) {
  for (const char* worst : {"failed", "error"})
    if (a.at("status") == worst || b.at("status") == worst) return worst;
  if (merged.value("cases", 0) == 0) return "skipped";
  return merged.contains("deviations") && !merged.at("deviations").empty() ? "deviation"
                                                                            : "passed";
}

void merge_row(json& acc, const json& r) {
  const json before = acc;
  for (const char* key : {"cases", "skipped_cases"})
    acc[key] = acc.value(key, 0) + r.value(key, 0);
  acc["seconds"] = acc.value("seconds", 0.0) + r.value("seconds", 0.0);
  for (const char* key : {"skip_reasons", "coverage", "deviations"}) add_counts(acc, r, key);
  max_errors(acc, r);
  std::vector<int> chunks = ints(acc, "chunks"), theirs = ints(r, "chunks");
  chunks.insert(chunks.end(), theirs.begin(), theirs.end());
  std::sort(chunks.begin(), chunks.end());
  acc["chunks"] = chunks;
  // The failure shown is that of the first failing chunk, as in the unsharded run.
  std::vector<int> failed = ints(acc, "failed_chunks"), other = ints(r, "failed_chunks");
  if (!other.empty() && (failed.empty() || other.front() < failed.front()))
    for (const char* key : {"message", "counterexample", "replay", "counterexample_files"}) {
      if (r.contains(key))
        acc[key] = r.at(key);
      else
        acc.erase(key);
    }
  failed.insert(failed.end(), other.begin(), other.end());
  std::sort(failed.begin(), failed.end());
  if (!failed.empty()) acc["failed_chunks"] = failed;
  acc["status"] = merged_status(before, r, acc);
}

}  // namespace

json merge_verify_shards(const std::vector<json>& shards, const std::vector<std::string>& sources) {
  auto name = [&](std::size_t i) {
    return i < sources.size() ? sources[i] : "shard file " + std::to_string(i + 1);
  };
  const int count = shards.front().at("shard").value("count", 1);
  std::map<int, std::size_t> by_index;
  for (std::size_t i = 0; i < shards.size(); ++i) {
    const json& sh = shards[i].at("shard");
    const int k = sh.value("index", 0), n = sh.value("count", 1);
    if (n != count)
      throw std::runtime_error(name(i) + " is shard " + std::to_string(k) + "/" +
                               std::to_string(n) + " but " + name(0) + " is one of " +
                               std::to_string(count) + " shards of the same run");
    if (k < 0 || k >= n)
      throw std::runtime_error(name(i) + ": shard " + std::to_string(k) + "/" +
                               std::to_string(n) + " is not one of shards 0 to " +
                               std::to_string(n - 1));
    if (const auto [it, added] = by_index.emplace(k, i); !added)
      throw std::runtime_error(name(it->second) + " and " + name(i) + " are both shard " +
                               std::to_string(k) + "/" + std::to_string(n) + " of one run");
  }

  json merged = shards.front();
  for (const char* key : {"shard", "results", "summary", "mutants", "kill_rate"})
    merged.erase(key);
  merged["replay"] = shards.front().at("shard").at("run");
  double seconds = 0;
  for (const auto& s : shards) seconds += s.value("duration_s", 0.0);
  merged["duration_s"] = seconds;
  std::vector<int> present, missing;
  for (int k = 0; k < count; ++k) (by_index.count(k) ? present : missing).push_back(k);
  merged["shards"] = {{"count", count}, {"merged", present}, {"missing", missing}};

  // Rows in the unsharded run's order (plan_index), each with the chunks of every shard.
  struct Row {
    std::int64_t order;
    json row;
    std::map<int, std::size_t> chunk_from;  // chunk -> shard file, to refuse a chunk twice
  };
  std::map<std::pair<std::string, std::string>, Row> rows;
  std::int64_t seen = 0;
  for (const auto& [k, i] : by_index)
    for (const auto& r : shards[i].at("results")) {
      const auto key = std::pair{r.value("implementation", ""), r.value("property", "")};
      json row = r;
      row.erase("plan_index");
      const std::int64_t order =
          r.contains("plan_index") ? r.at("plan_index").get<std::int64_t>()
                                   : std::numeric_limits<std::int32_t>::max() + seen;
      ++seen;
      auto it = rows.find(key);
      if (it == rows.end()) {
        it = rows.emplace(key, Row{order, row, {}}).first;
      } else {
        it->second.order = std::min(it->second.order, order);
        merge_row(it->second.row, row);
      }
      for (int c : ints(r, "chunks"))
        if (const auto [at, added] = it->second.chunk_from.emplace(c, i); !added)
          throw std::runtime_error(name(at->second) + " and " + name(i) + " both hold chunk " +
                                   std::to_string(c) + " of " + key.first + " " + key.second +
                                   ": they are not shards of one run");
    }
  std::vector<const Row*> ordered;
  for (const auto& [key, row] : rows) ordered.push_back(&row);
  std::stable_sort(ordered.begin(), ordered.end(),
                   [](const Row* a, const Row* b) { return a->order < b->order; });
  json results = json::array();
  json summary = {{"passed", 0}, {"failed", 0}, {"skipped", 0}, {"error", 0}, {"deviation", 0}};
  for (const Row* r : ordered) {
    const std::string st = r->row.value("status", "skipped");
    summary[st] = summary.value(st, 0) + 1;
    results.push_back(r->row);
  }
  merged["summary"] = summary;
  merged["results"] = results;

  // Mutants: killed when a property failed on it in any shard, as the unsharded run judges.
  std::map<std::string, std::string> bugs;
  for (const auto& s : shards)
    for (const auto& m : s.value("mutants", json::array()))
      bugs.emplace(m.value("name", ""), m.value("bug", ""));
  if (!bugs.empty()) {
    json mutants = json::array();
    int killed = 0;
    std::set<std::string> done;
    for (const auto& r : results) {
      const std::string impl = r.value("implementation", "");
      if (!bugs.count(impl) || !done.insert(impl).second) continue;
      std::vector<std::string> by;
      for (const auto& o : results)
        if (o.value("implementation", "") == impl && o.value("status", "") == "failed")
          by.push_back(o.value("property", ""));
      killed += !by.empty();
      mutants.push_back(
          {{"name", impl}, {"bug", bugs[impl]}, {"killed", !by.empty()}, {"killed_by", by}});
    }
    merged["mutants"] = mutants;
    merged["kill_rate"] = {{"killed", killed}, {"total", static_cast<int>(mutants.size())}};
  }
  return merged;
}

ResultFiles merge_shards(const std::vector<json>& docs, const std::vector<std::string>& sources) {
  auto source = [&](std::size_t i) { return i < sources.size() ? sources[i] : std::string(); };
  // The shards of one run share its command (seed, cases, size, selection) and seed.
  std::map<std::string, std::vector<std::size_t>> groups;
  for (std::size_t i = 0; i < docs.size(); ++i)
    if (is_shard(docs[i]) && doc_kind(docs[i], source(i)) == DocKind::verify)
      groups[docs[i].at("shard").at("run").get<std::string>() + "\n" +
             docs[i].value("seed", json()).dump()]
          .push_back(i);
  std::map<std::size_t, const std::vector<std::size_t>*> first_of;
  std::set<std::size_t> absorbed;
  for (const auto& [key, members] : groups) {
    first_of[members.front()] = &members;
    absorbed.insert(members.begin() + 1, members.end());
  }
  ResultFiles out;
  for (std::size_t i = 0; i < docs.size(); ++i) {
    if (absorbed.count(i)) continue;
    const auto g = first_of.find(i);
    if (g == first_of.end()) {
      out.docs.push_back(docs[i]);
      out.sources.push_back(source(i));
      continue;
    }
    std::vector<json> shards;
    std::vector<std::string> names;
    for (std::size_t m : *g->second) {
      shards.push_back(docs[m]);
      names.push_back(source(m).empty() ? "result file " + std::to_string(m + 1) : source(m));
    }
    out.docs.push_back(merge_verify_shards(shards, names));
    out.sources.push_back(
        names.size() == 1
            ? names.front()
            : names.front() + " (+ " + std::to_string(names.size() - 1) + " more shard" +
                  (names.size() > 2 ? "s" : "") + ")");
  }
  return out;
}

std::string chunks_text(const json& chunks, std::size_t from) {
  std::string s;
  for (std::size_t i = from; i < chunks.size(); ++i)
    s += (i > from ? ", " : "") + chunks[i].dump();
  return s;
}

std::string shards_note(const json& doc) {
  if (doc.contains("shards") && doc.at("shards").is_object()) {
    const json& s = doc.at("shards");
    const auto merged = ints(s, "merged"), missing = ints(s, "missing");
    std::string note = "merged from shards " + chunks_text(json(merged)) + " of " +
                       std::to_string(s.value("count", 0));
    if (!missing.empty())
      note += "; shard" + std::string(missing.size() > 1 ? "s " : " ") + chunks_text(json(missing)) +
              " missing: " + (missing.size() > 1 ? "their" : "its") +
              " chunks are not in this matrix";
    return note;
  }
  if (doc.contains("shard") && doc.at("shard").is_object())
    return "shard " + std::to_string(doc.at("shard").value("index", 0)) + " of " +
           std::to_string(doc.at("shard").value("count", 0)) +
           " (only its share of the chunks; `maskcheck report` merges the shards' files)";
  return {};
}

}  // namespace maskcheck::reports
