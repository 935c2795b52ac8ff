// Files maskcheck reads and writes, and the rules that keep hostile or unlucky paths harmless.
//
// Reading: regular files only (a FIFO, a character device such as /dev/zero, a socket or a
// directory is refused before a byte is read, so nothing hangs or runs out of memory), at most a
// stated number of bytes (the size is checked before reading and again while reading).
//
// Writing: to a temporary file `<target>.tmp.<pid>` in the target's directory, flushed and
// fsync'ed, then renamed over the target, so a failure or a kill never leaves a truncated file
// over a good one. The target must be a plain path: empty paths, existing directories, FIFOs,
// devices and sockets are refused (renaming over them would replace them: as root, `--json
// /dev/null` would replace /dev/null), and so is a symbolic link as the last component
// (renaming would replace the link, not the file it names; name the file itself). Temporary
// files that a killed maskcheck left beside a target (`<target>.tmp.<pid>` of a process that no
// longer exists) are removed by the next write of that target.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace maskcheck {

// Result JSON files (verify, bench) larger than this are refused.
inline constexpr std::uint64_t kMaxJsonFileBytes = std::uint64_t{256} << 20;
// JSON nested deeper than this is refused (result files nest about 6 levels).
inline constexpr int kMaxJsonDepth = 64;

// The contents of the regular file `path`, at most `max_bytes` long. Throws std::runtime_error
// naming the path for anything else (missing, unreadable, not a regular file, too large).
std::string read_input_file(const std::string& path, std::uint64_t max_bytes);

// Throws InvalidArgument naming `flag` (e.g. "--json") and the path when maskcheck must not write
// `path` (see the top). `input`, when given, is a file the same command reads: writing over it
// is refused too.
void check_output_path(const std::string& path, std::string_view flag,
                       const std::string& input = "");

// Throws std::runtime_error naming the path when it cannot write, InvalidArgument when the path
// is refused (check_output_path).
void write_file_atomic(const std::string& path, std::string_view content);
void write_json_atomic(const std::string& path, const nlohmann::json& j);
// Several files replaced together: every temporary file is written and flushed before the first
// rename, and SIGINT, SIGTERM, SIGHUP and SIGQUIT are held back during the renames, so an
// interrupt or a CI timeout leaves either every old file or every new one. (Only SIGKILL or a
// power loss between two renames can leave a new file beside an old one.)
void write_files_atomic(const std::vector<std::pair<std::string, std::string>>& files);

// The temporary file write_file_atomic uses for `path` in this process.
std::string temp_path_for(const std::string& path);
// Removes `<path>.tmp.<pid>` files of processes that no longer exist.
void remove_stale_temp_files(const std::string& path);

// Reads and parses a JSON file (read_input_file with kMaxJsonFileBytes, kMaxJsonDepth). Google
// Benchmark's bare nan / inf values read as null. Throws std::runtime_error naming the path when
// it cannot read or parse.
nlohmann::json read_json_file(const std::string& path);
// The same for text already in memory; `source` names it in errors.
nlohmann::json parse_json_text(const std::string& text, const std::string& source);

}  // namespace maskcheck
