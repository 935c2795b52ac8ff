#include "maskcheck/suite/io.hpp"

#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace maskcheck {

void write_file_atomic(const std::string& path, std::string_view content) {
  namespace fs = std::filesystem;
  const fs::path target(path);
  if (target.has_parent_path()) {
    std::error_code ec;
    fs::create_directories(target.parent_path(), ec);
    if (ec)
      throw std::runtime_error("cannot create directory " + target.parent_path().string() + ": " +
                               ec.message());
  }
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) throw std::runtime_error("cannot write " + tmp + ": " + std::strerror(errno));
  const bool ok = std::fwrite(content.data(), 1, content.size(), f) == content.size() &&
                  std::fflush(f) == 0 && ::fsync(::fileno(f)) == 0;
  const int saved = errno;
  std::fclose(f);
  if (!ok) {
    std::remove(tmp.c_str());
    throw std::runtime_error("cannot write " + tmp + ": " + std::strerror(saved));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = errno;
    std::remove(tmp.c_str());
    throw std::runtime_error("cannot replace " + path + ": " + std::strerror(e));
  }
}

void write_json_atomic(const std::string& path, const nlohmann::json& j) {
  write_file_atomic(path, j.dump(2) + "\n");
}

namespace {

// Replaces the values nan, -nan, inf, -inf, infinity (any case) that follow a ':' by null.
std::string null_non_finite(const std::string& in) {
  std::string out;
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size();) {
    out += in[i];
    if (in[i++] != ':') continue;
    std::size_t j = i;
    while (j < in.size() && (in[j] == ' ' || in[j] == '\t')) ++j;
    std::size_t w = j + (j < in.size() && in[j] == '-');
    std::size_t e = w;
    while (e < in.size() && std::isalpha(static_cast<unsigned char>(in[e]))) ++e;
    std::string word = in.substr(w, e - w);
    for (char& c : word) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (word == "nan" || word == "inf" || word == "infinity") {
      out += " null";
      i = e;
    }
  }
  return out;
}

}  // namespace

nlohmann::json read_json_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read " + path + ": " + std::strerror(errno));
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    return nlohmann::json::parse(ss.str());
  } catch (const nlohmann::json::exception& e) {
    // Google Benchmark writes non-finite counters as bare nan / inf, which JSON has no word
    // for; read them as null rather than refusing the whole file.
    const std::string text = null_non_finite(ss.str());
    try {
      return nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception&) {
      throw std::runtime_error("cannot parse " + path + " as JSON: " + e.what());
    }
  }
}

}  // namespace maskcheck
