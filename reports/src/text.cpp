#include "text.hpp"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "svg.hpp"

namespace maskcheck::reports {
namespace {

// The longest run of backticks in s.
std::size_t longest_backtick_run(std::string_view s) {
  std::size_t best = 0, run = 0;
  for (char c : s) {
    run = c == '`' ? run + 1 : 0;
    best = std::max(best, run);
  }
  return best;
}

}  // namespace

std::string md_text(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&':
      case '<':
      case '>':
        out += svg::escape(std::string_view(&c, 1));  // the HTML page's entities
        break;
      case '\n':
      case '\r':
        out += ' ';
        break;
      case '\\':
      case '`':
      case '[':
      case ']':
      case '|':
        out += '\\';
        out += c;
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string md_code(std::string_view s) {
  std::string body;
  body.reserve(s.size());
  for (char c : s) {
    if (c == '|')
      body += "\\|";
    else if (c == '\n' || c == '\r')
      body += ' ';
    else
      body += c;
  }
  const std::string fence(longest_backtick_run(s) + 1, '`');
  // A span that starts or ends with a backtick needs a space inside the fence (CommonMark strips
  // one space on each side).
  const bool pad = !body.empty() && (body.front() == '`' || body.back() == '`');
  return fence + (pad ? " " : "") + body + (pad ? " " : "") + fence;
}

std::string md_block(std::string_view s) {
  const std::string fence(std::max<std::size_t>(3, longest_backtick_run(s) + 1), '`');
  std::string out = fence + "\n" + std::string(s);
  if (out.back() != '\n') out += '\n';
  return out + fence + "\n";
}

std::string fixed(double x, int digits) {
  if (!std::isfinite(x)) return "-";
  std::ostringstream os;
  os.setf(std::ios::fixed);
  os.precision(digits);
  os << x;
  return os.str();
}

std::string ratio_text(double r, int digits, std::string_view sign) {
  if (!std::isfinite(r)) return "-";
  return fixed(r, digits) + std::string(sign);
}

std::string context_text(const nlohmann::json& ctx, const std::string& key) {
  if (!ctx.is_object() || !ctx.contains(key)) return {};
  const nlohmann::json& v = ctx.at(key);
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number() || v.is_boolean()) return v.dump();
  return {};
}

}  // namespace maskcheck::reports
