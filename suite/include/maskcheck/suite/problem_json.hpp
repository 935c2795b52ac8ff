// JSON of the problem types, every field by its C++ name:
//   MaskSpec         {"B", "Lq", "Lk", "q_lens": [..], "k_lens": [..], "padding": "right"|"left",
//                     "causal", "alignment": "bottom_right"|"top_left",
//                     "window": null | {"left", "right"}, "cu_seqlens_q": [[..], ..],
//                     "cu_seqlens_k"}
//   SoftmaxProblem   {"mask", "H", "scale"}
//   AttentionProblem {"mask", "H", "Hkv", "D", "scale": null (1/sqrt(D)) | number}
//   VarlenAttentionProblem {"H", "Hkv", "D", "cu_seqlens_q", "cu_seqlens_k", "causal",
//                     "alignment", "window", "scale"}
//   LossProblem      {"N", "V", "ignore_index", "label_smoothing",
//                     "reduction": "none"|"sum"|"mean", "weighted"}
//   LmLabelsProblem  {"B", "L", "ignore_index"}
//   MlmProblem       {"B", "L", "V", "mask_id", "p", "p_mask", "p_random", "seed", "whole_word",
//                     "max_predictions", "ignore_index"}
// A window side is an integer or "unbounded"; a non-finite double is "nan", "inf" or "-inf"
// (JSON has no word for them). Doubles print with the shortest round-trip digits, so
// to_json -> from_json gives back the same struct, bit for bit.
// Reading is strict where a typo would silently change a case: unknown fields, wrong types,
// fractional or out-of-range integers throw InvalidArgument naming the path
// ("problem.mask.k_lens[1]"). Missing fields keep the struct's default. Reading does not call
// validate(): callers decide when (a case may be deliberately invalid).
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "maskcheck/reference/problems.hpp"

namespace maskcheck {

void to_json(nlohmann::json& j, const Window& w);
void to_json(nlohmann::json& j, const MaskSpec& m);
void to_json(nlohmann::json& j, const SoftmaxProblem& p);
void to_json(nlohmann::json& j, const AttentionProblem& p);
void to_json(nlohmann::json& j, const VarlenAttentionProblem& p);
void to_json(nlohmann::json& j, const LossProblem& p);
void to_json(nlohmann::json& j, const LmLabelsProblem& p);
void to_json(nlohmann::json& j, const MlmProblem& p);

// `path` names the object in error messages.
void read_json(const nlohmann::json& j, MaskSpec& m, const std::string& path);
void read_json(const nlohmann::json& j, SoftmaxProblem& p, const std::string& path);
void read_json(const nlohmann::json& j, AttentionProblem& p, const std::string& path);
void read_json(const nlohmann::json& j, VarlenAttentionProblem& p, const std::string& path);
void read_json(const nlohmann::json& j, LossProblem& p, const std::string& path);
void read_json(const nlohmann::json& j, LmLabelsProblem& p, const std::string& path);
void read_json(const nlohmann::json& j, MlmProblem& p, const std::string& path);

// nlohmann's hook (j.get<AttentionProblem>()), with the path "problem".
template <class P>
requires requires(const nlohmann::json& j, P& p, const std::string& s) {
  read_json(j, p, s);
}
void from_json(const nlohmann::json& j, P& p) {
  read_json(j, p, "problem");
}

// Strict readers of single JSON values, shared with the case files' options.
std::int64_t json_int(const nlohmann::json& v, const std::string& path);
double json_double(const nlohmann::json& v, const std::string& path);  // numbers, "nan", "inf"
bool json_bool(const nlohmann::json& v, const std::string& path);
std::string json_string(const nlohmann::json& v, const std::string& path);
nlohmann::json json_double_value(double x);       // a number, or "nan" / "inf" / "-inf"
std::string json_brief(const nlohmann::json& v);  // dump() cut to 120 characters, for messages
// Parses text that must hold a JSON object nested at most `max_depth` levels; `what` names it in
// the InvalidArgument thrown otherwise.
nlohmann::json parse_json_object(std::string_view text, const std::string& what,
                                 int max_depth = 16);

// Walks the fields of one JSON object: field() reads a key when present, finish() rejects keys
// no field() asked for.
class JsonFields {
 public:
  JsonFields(const nlohmann::json& j, std::string path);
  template <class F>
  void field(const std::string& key, F&& read) {
    known_.push_back(key);
    if (const auto it = j_.find(key); it != j_.end()) read(*it, path_ + "." + key);
  }
  void finish() const;

 private:
  const nlohmann::json& j_;
  std::string path_;
  std::vector<std::string> known_;
};

}  // namespace maskcheck
