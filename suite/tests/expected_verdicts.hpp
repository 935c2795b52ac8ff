// Third-party verdicts against the ones committed beside an adapter (expected_verdicts.json): the
// LibTorch and ggml adapter tests run the catalogue at a fixed seed and case count, collect one
// verdict per (implementation, property[ dtype]) and hand them here. Any difference (an upgrade
// of the library fixing or breaking a property, an adapter change) fails the test with the list;
// MASKCHECK_UPDATE_EXPECTED=1 rewrites the file from the run instead. The file also names the
// library's version: verdicts of another version are not compared (the test skips, saying so).
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <map>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "maskcheck/suite/io.hpp"
#include "maskcheck/suite/runner.hpp"

namespace maskcheck::testing {

using Verdicts = std::map<std::string, std::map<std::string, std::string>>;

// "passed", "failed", "skipped", or "deviation: NAME ..." with the deviations' names.
inline std::string verdict(const PropertyOutcome& o) {
  std::string v(to_string(o.status));
  if (o.status == Status::deviation) {
    v += ":";
    for (const auto& [name, n] : o.deviations) v += " " + name;
  }
  return v;
}

struct ExpectedFile {
  std::string path;     // expected_verdicts.json
  std::string library;  // its key for the version: "torch", "ggml"
  std::string version;  // this build's version of the library
  std::string about;    // how the verdicts were produced (the verify command)
  std::string replay;   // the command that replays one verdict, for the failure message
  std::string test;     // the ctest name, for the failure message
};

inline void expect_verdicts(const ExpectedFile& f, const Verdicts& got) {
  nlohmann::json doc;
  doc["about"] = f.about;
  doc[f.library] = f.version;
  doc["verdicts"] = got;
  const char* update = std::getenv("MASKCHECK_UPDATE_EXPECTED");
  if (update && std::string_view(update) == "1") {
    write_json_atomic(f.path, doc);
    GTEST_SKIP() << "rewrote " << f.path;
  }
  const nlohmann::json want = read_json_file(f.path);
  if (want.at(f.library) != doc[f.library])
    GTEST_SKIP() << "the expected verdicts are " << f.library << " " << want.at(f.library)
                 << "'s, this is " << doc[f.library]
                 << ": rerun with MASKCHECK_UPDATE_EXPECTED=1 and review the diff";
  std::string diff;
  const auto& expected = want.at("verdicts");
  for (const auto& [impl, props] : got)
    for (const auto& [prop, v] : props) {
      const std::string e = expected.contains(impl) && expected[impl].contains(prop)
                                ? expected[impl][prop].get<std::string>()
                                : "(none)";
      if (e != v) diff += "  " + impl + " " + prop + ": expected " + e + ", got " + v + "\n";
    }
  for (const auto& [impl, props] : expected.items())
    for (const auto& [prop, v] : props.items())
      if (!got.count(impl) || !got.at(impl).count(prop))
        diff += "  " + impl + " " + prop + ": expected " + v.get<std::string>() + ", not run\n";
  EXPECT_TRUE(diff.empty()) << f.library << " verdicts changed (" << f.about << "; replay one with "
                            << f.replay << "):\n"
                            << diff << "If the change is intended: MASKCHECK_UPDATE_EXPECTED=1 "
                            << "ctest -R " << f.test << ", and review the diff of " << f.path;
}

}  // namespace maskcheck::testing
