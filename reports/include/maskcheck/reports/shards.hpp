// Sharded verify runs: `maskcheck verify --shard K/N --json FILE` writes one file per shard, each
// with "shard": {"index": K, "count": N, "run": <the unsharded run's command>}. Merged, the N
// files are the unsharded run's file: the same rows in the same order, each (implementation,
// property) with its cases, skips, coverage and deviations summed over the shards, the worst
// status (failed, error, then skipped when no case was checked, deviation, passed), the largest
// errors, its chunks, and the failure of its first failing chunk with the replay command of that
// chunk. maskcheck's tests check that N merged shards equal the unsharded run.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace maskcheck::reports {

struct ResultFiles {
  std::vector<nlohmann::json> docs;
  std::vector<std::string> sources;  // a merged document's: "FIRST (+ N-1 more shards)"
};

// Replaces the verify documents that are shards of one run (the same "shard.run" and seed) by
// their merge, where the first of them stood; every other document stays as it is. A shard
// that is missing is recorded in the merged document ("shards.missing") and the reports say so.
// Throws std::runtime_error naming the files when two are the same shard, disagree on the
// shard count, or hold the same chunk of a property twice.
ResultFiles merge_shards(const std::vector<nlohmann::json>& docs,
                         const std::vector<std::string>& sources);

// One merged document from the shard documents of one run (validated verify documents).
nlohmann::json merge_verify_shards(const std::vector<nlohmann::json>& shards,
                                   const std::vector<std::string>& sources);

// "3, 7, 9": the chunk indices of a row's "chunks" or "failed_chunks" from position `from`.
std::string chunks_text(const nlohmann::json& chunks, std::size_t from = 0);

// "merged from shards 0, 1, 2, 3 of 4" or "merged from shards 0, 1, 3 of 4; shard 2 missing: its
// chunks are not in this matrix"; empty for a document that is no merge.
std::string shards_note(const nlohmann::json& doc);

}  // namespace maskcheck::reports
