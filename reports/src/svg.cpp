#include "svg.hpp"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "maskcheck/reports/results.hpp"

namespace maskcheck::reports::svg {
namespace {

constexpr double kFont = 11;       // ticks, legend, row labels
constexpr double kSansChar = 0.6;  // a generous width per character, in font sizes
constexpr double kMonoChar = 0.62;
constexpr double kLegendRow = 18;

// A coordinate: one decimal, and never NaN or inf (the browser rejects those attributes).
std::string num(double v) {
  if (!std::isfinite(v)) v = 0;
  std::ostringstream os;
  os.setf(std::ios::fixed);
  os.precision(1);
  os << v;
  return os.str();
}

// A tick value: up to three significant digits, no trailing zeros.
std::string short_number(double v) {
  if (std::fabs(v) < 1e-12) return "0";
  std::ostringstream os;
  os.precision(3);
  os << v;
  return os.str();
}

double text_width(const std::string& s, double font, double per_char) {
  // Multi-byte UTF-8 sequences count once.
  std::size_t chars = 0;
  for (unsigned char c : s) chars += (c & 0xC0) != 0x80;
  return static_cast<double>(chars) * font * per_char;
}

struct Axis {
  double d0 = 0, d1 = 1;  // domain
  double p0 = 0, p1 = 1;  // pixels
  bool log = false;
  double operator()(double v) const {
    if (log) {
      const double a = std::log(d0), b = std::log(d1);
      return p0 + (std::log(std::max(v, d0 * 1e-6)) - a) / (b - a) * (p1 - p0);
    }
    return p0 + (v - d0) / (d1 - d0) * (p1 - p0);
  }
};

// 0 = top, step "nice" (1, 2, 2.5, 5 x 10^k), about five ticks up to at least `max`.
std::vector<double> linear_ticks(double max) {
  if (!(max > 0) || !std::isfinite(max)) max = 1;
  const double raw = max / 5;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = 10 * mag;
  for (double m : {1.0, 2.0, 2.5, 5.0, 10.0})
    if (m * mag >= raw) {
      step = m * mag;
      break;
    }
  std::vector<double> t;
  const int n = static_cast<int>(std::ceil(max / step - 1e-9));
  for (int i = 0; i <= n; ++i) t.push_back(i * step);
  return t;
}

// 1, 2, 5 x 10^k inside [lo, hi] (only the powers of ten when there are three or more of them).
std::vector<double> log_ticks(double lo, double hi) {
  std::vector<double> all, decades;
  for (int k = static_cast<int>(std::floor(std::log10(lo))) - 1;
       k <= static_cast<int>(std::ceil(std::log10(hi))) + 1; ++k)
    for (double m : {1.0, 2.0, 5.0}) {
      const double v = m * std::pow(10.0, k);
      if (v < lo * (1 - 1e-9) || v > hi * (1 + 1e-9)) continue;
      all.push_back(v);
      if (m == 1.0) decades.push_back(v);
    }
  return decades.size() >= 3 ? decades : all;
}

// Widens [lo, hi] (both > 0) to a factor of at least 5, around their geometric middle, so that
// the axis has at least two 1-2-5 ticks.
void widen_log_domain(double& lo, double& hi) {
  lo /= 1.4;
  hi *= 1.25;
  if (hi / lo < 5) {
    const double mid = std::sqrt(lo * hi);
    lo = mid / std::sqrt(5.0);
    hi = mid * std::sqrt(5.0);
  }
}

const char* kPrefixes[] = {"", "k", "M", "G", "T", "P", "E"};

// The SI prefix exponent (multiple of 3, 0..18) for values up to `top`.
int prefix_exponent(double top) {
  if (!(top >= 1000)) return 0;
  return std::min(18, static_cast<int>(std::floor(std::log10(top) / 3)) * 3);
}

// `what` with its "{}" replaced by the unit ("useful {}" -> "useful TFLOP/s").
std::string with_unit(const std::string& what, const std::string& unit) {
  const auto at = what.find("{}");
  return at == std::string::npos ? what + " [" + unit + "]"
                                 : what.substr(0, at) + unit + what.substr(at + 2);
}

// A marker centred at (x, y).
std::string marker(int shape, double x, double y, const std::string& color) {
  const double s = 4.5;
  const std::string fill = " fill=\"" + color + "\" stroke=\"#fff\" stroke-width=\"1\"";
  std::ostringstream os;
  switch (((shape % 6) + 6) % 6) {
    case 0:
      os << "<circle cx=\"" << num(x) << "\" cy=\"" << num(y) << "\" r=\"4.2\"" << fill << "/>";
      break;
    case 1:
      os << "<rect x=\"" << num(x - 3.8) << "\" y=\"" << num(y - 3.8)
         << "\" width=\"7.6\" height=\"7.6\"" << fill << "/>";
      break;
    case 2:
      os << "<path d=\"M" << num(x) << " " << num(y - s) << "L" << num(x + s) << " "
         << num(y + s * 0.8) << "L" << num(x - s) << " " << num(y + s * 0.8) << "Z\"" << fill
         << "/>";
      break;
    case 3:
      os << "<path d=\"M" << num(x) << " " << num(y - s) << "L" << num(x + s) << " " << num(y)
         << "L" << num(x) << " " << num(y + s) << "L" << num(x - s) << " " << num(y) << "Z\""
         << fill << "/>";
      break;
    case 4:
      os << "<path d=\"M" << num(x) << " " << num(y + s) << "L" << num(x + s) << " "
         << num(y - s * 0.8) << "L" << num(x - s) << " " << num(y - s * 0.8) << "Z\"" << fill
         << "/>";
      break;
    default:  // a plus sign, thick
      os << "<path d=\"M" << num(x - s) << " " << num(y) << "H" << num(x + s) << "M" << num(x)
         << " " << num(y - s) << "V" << num(y + s) << "\" stroke=\"" << color
         << "\" stroke-width=\"3\" fill=\"none\"/>";
      break;
  }
  return os.str();
}

std::string whisker_v(double x, double y_lo, double y_hi, const std::string& color) {
  std::ostringstream os;
  os << "<path class=\"whisker\" d=\"M" << num(x) << " " << num(y_lo) << "V" << num(y_hi) << "M"
     << num(x - 3.5) << " " << num(y_lo) << "H" << num(x + 3.5) << "M" << num(x - 3.5) << " "
     << num(y_hi) << "H" << num(x + 3.5) << "\" stroke=\"" << color
     << "\" stroke-width=\"1.3\" fill=\"none\"/>";
  return os.str();
}

std::string whisker_h(double x_lo, double x_hi, double y, const std::string& color) {
  std::ostringstream os;
  os << "<path class=\"whisker\" d=\"M" << num(x_lo) << " " << num(y) << "H" << num(x_hi) << "M"
     << num(x_lo) << " " << num(y - 4) << "V" << num(y + 4) << "M" << num(x_hi) << " " << num(y - 4)
     << "V" << num(y + 4) << "\" stroke=\"" << color << "\" stroke-width=\"1.3\" fill=\"none\"/>";
  return os.str();
}

// The legend, flowing left to right from (x0, y0) and wrapping before `x_max`; returns its height.
double legend(std::ostringstream& os, const std::vector<LegendItem>& items, double x0, double y0,
              double x_max) {
  os << "<g class=\"legend\">";
  double x = x0, y = y0 + 10;
  for (const auto& it : items) {
    const double w = 30 + text_width(it.label, kFont, kSansChar) + 16;
    if (x > x0 && x + w > x_max) {
      x = x0;
      y += kLegendRow;
    }
    os << "<g class=\"legend-item\"><title>" << escape(it.tip.empty() ? it.label : it.tip)
       << "</title>";
    switch (it.kind) {
      case LegendItem::Kind::marker:
        os << "<path d=\"M" << num(x) << " " << num(y) << "H" << num(x + 24) << "\" stroke=\""
           << it.color << "\" stroke-width=\"2\"/>" << marker(it.marker, x + 12, y, it.color);
        break;
      case LegendItem::Kind::bar:
        os << "<rect x=\"" << num(x + 2) << "\" y=\"" << num(y - 5) << "\" width=\"20\" "
           << "height=\"10\" fill=\"" << it.color << "\"/>";
        break;
      case LegendItem::Kind::reference:
        os << "<path d=\"M" << num(x) << " " << num(y) << "H" << num(x + 24) << "\" stroke=\""
           << it.color << "\" stroke-width=\"1.5\" stroke-dasharray=\"5 3\"/>";
        break;
      case LegendItem::Kind::whisker:
        os << whisker_h(x + 3, x + 21, y, it.color);
        break;
    }
    os << "<text x=\"" << num(x + 30) << "\" y=\"" << num(y + 4) << "\">" << escape(it.label)
       << "</text></g>";
    x += w;
  }
  os << "</g>";
  return y - y0 + 10;
}

// Title and subtitle at the top; the subtitle is abbreviated to the width, whole on hover.
void header(std::ostringstream& os, const std::string& title, const std::string& subtitle,
            double width) {
  os << "<text class=\"chart-title\" x=\"12\" y=\"20\">" << escape(title) << "</text>";
  if (!subtitle.empty()) {
    const auto fit = static_cast<std::size_t>(std::max(10.0, (width - 24) / (12 * kMonoChar)));
    os << "<g><title>" << escape(subtitle) << "</title><text class=\"chart-subtitle\" x=\"12\" "
       << "y=\"38\">" << escape(abbreviate(subtitle, fit)) << "</text></g>";
  }
}

std::string open_svg(double width, double height, const std::string& title) {
  std::ostringstream os;
  os << "<svg class=\"chart\" viewBox=\"0 0 " << num(width) << " " << num(height) << "\" width=\""
     << num(width) << "\" height=\"" << num(height) << "\" role=\"img\" aria-label=\""
     << escape(title) << "\"><rect class=\"bg\" x=\"0\" y=\"0\" width=\"" << num(width)
     << "\" height=\"" << num(height) << "\" fill=\"#fff\"/>";
  return os.str();
}

}  // namespace

std::string escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string abbreviate(const std::string& s, std::size_t max_chars) {
  if (s.size() <= max_chars || max_chars < 5) return s;
  const std::size_t head = (max_chars - 1) / 3;
  std::size_t tail = max_chars - 1 - head;
  // Do not cut a UTF-8 sequence.
  std::size_t h = head;
  while (h > 0 && (static_cast<unsigned char>(s[h]) & 0xC0) == 0x80) --h;
  std::size_t t = s.size() - tail;
  while (t < s.size() && (static_cast<unsigned char>(s[t]) & 0xC0) == 0x80) ++t;
  return s.substr(0, h) + "\u2026" + s.substr(t);
}

std::string line_chart(const XYChart& c) {
  const double width = c.width;
  const double left = 72, right = 22, top = 56, plot_h = 240;
  Axis x{0, 1, left, width - right, true}, y{0, 1, top + plot_h, top, false};

  // Domains: x from the points (log2), y linear from 0, or log when the values span > 30x.
  double x_min = INFINITY, x_max = -INFINITY, y_min = INFINITY, y_max = -INFINITY;
  std::vector<double> xs;
  for (const auto& s : c.series)
    for (const auto& p : s.points) {
      if (!std::isfinite(p.x) || !std::isfinite(p.y) || p.x <= 0) continue;
      x_min = std::min(x_min, p.x);
      x_max = std::max(x_max, p.x);
      xs.push_back(p.x);
      for (double v : {p.y, p.lo, p.hi})
        if (std::isfinite(v) && v > 0) {
          y_min = std::min(y_min, v);
          y_max = std::max(y_max, v);
        }
    }
  if (!std::isfinite(x_min)) x_min = x_max = 1;
  if (!std::isfinite(y_min)) y_min = y_max = 1;
  x.d0 = x_min / std::pow(2.0, 0.35);
  x.d1 = x_max * std::pow(2.0, 0.35);
  std::sort(xs.begin(), xs.end());
  xs.erase(std::unique(xs.begin(), xs.end()), xs.end());

  std::vector<double> y_ticks;
  std::string y_label;
  int exp = 0;
  if (y_max / y_min > 30) {
    y.log = true;
    y.d0 = y_min;
    y.d1 = y_max;
    widen_log_domain(y.d0, y.d1);
    y_ticks = log_ticks(y.d0, y.d1);
    y_label = with_unit(c.y_what, c.y_unit) + ", log scale";
  } else {
    y_ticks = linear_ticks(y_max * 1.04);
    y.d0 = 0;
    y.d1 = y_ticks.back();
    exp = prefix_exponent(y.d1);
    y_label = with_unit(c.y_what, kPrefixes[exp / 3] + c.y_unit);
  }

  std::vector<LegendItem> items;
  for (const auto& s : c.series)
    items.push_back({LegendItem::Kind::marker, s.name, s.color, s.marker, s.name});
  items.insert(items.end(), c.extra_legend.begin(), c.extra_legend.end());

  std::ostringstream body;
  header(body, c.title, c.subtitle, width);
  // Grid and y axis.
  body << "<g class=\"axis y\">";
  for (double t : y_ticks) {
    const double py = y(t);
    const std::string text = y.log ? format_si(t) : short_number(t / std::pow(10.0, exp));
    body << "<g class=\"tick\"><path class=\"grid\" d=\"M" << num(left) << " " << num(py) << "H"
         << num(width - right) << "\"/><text x=\"" << num(left - 6) << "\" y=\"" << num(py + 4)
         << "\" text-anchor=\"end\">" << escape(text) << "</text></g>";
  }
  body << "<text class=\"axis-label\" transform=\"translate(16 " << num(top + plot_h / 2)
       << ") rotate(-90)\" text-anchor=\"middle\">" << escape(y_label) << "</text></g>";
  // x axis: a tick at every length, labels that would collide are left out.
  body << "<g class=\"axis x\"><path class=\"domain\" d=\"M" << num(left) << " "
       << num(top + plot_h) << "H" << num(width - right) << "\"/>";
  double last_label_end = -INFINITY;
  for (double t : xs) {
    const double px = x(t);
    const std::string text = t == std::floor(t) && t < 1e15
                                 ? std::to_string(static_cast<long long>(t))
                                 : short_number(t);
    const double w = text_width(text, kFont, kSansChar);
    const bool room = px - w / 2 > last_label_end + 4;
    body << "<g class=\"tick\"><path class=\"grid\" d=\"M" << num(px) << " " << num(top) << "V"
         << num(top + plot_h) << "\"/><path class=\"domain\" d=\"M" << num(px) << " "
         << num(top + plot_h) << "v5\"/>";
    if (room) {
      body << "<text x=\"" << num(px) << "\" y=\"" << num(top + plot_h + 18)
           << "\" text-anchor=\"middle\">" << escape(text) << "</text>";
      last_label_end = px + w / 2;
    }
    body << "</g>";
  }
  body << "<text class=\"axis-label\" x=\"" << num(left + (width - right - left) / 2) << "\" y=\""
       << num(top + plot_h + 38) << "\" text-anchor=\"middle\">" << escape(c.x_label)
       << "</text></g>";
  body << "<path class=\"domain\" d=\"M" << num(left) << " " << num(top) << "V" << num(top + plot_h)
       << "\"/>";

  // Series, dodged a few pixels apart so that whiskers at one length do not hide each other.
  const double n = static_cast<double>(c.series.size());
  for (std::size_t i = 0; i < c.series.size(); ++i) {
    const auto& s = c.series[i];
    const double dodge = (static_cast<double>(i) - (n - 1) / 2) * 4;
    body << "<g class=\"series\" data-series=\"" << escape(s.name) << "\">";
    std::string line;
    for (const auto& p : s.points) {
      if (!std::isfinite(p.x) || !std::isfinite(p.y) || p.x <= 0 || (y.log && p.y <= 0)) continue;
      line += (line.empty() ? "M" : "L") + num(x(p.x) + dodge) + " " + num(y(p.y));
    }
    if (!line.empty())
      body << "<path class=\"line\" d=\"" << line << "\" stroke=\"" << s.color
           << "\" stroke-width=\"2\" fill=\"none\"/>";
    for (const auto& p : s.points) {
      if (!std::isfinite(p.x) || !std::isfinite(p.y) || p.x <= 0 || (y.log && p.y <= 0)) continue;
      const double px = x(p.x) + dodge;
      body << "<g class=\"point\"><title>" << escape(p.tip) << "</title>";
      if (std::isfinite(p.lo) && std::isfinite(p.hi) && p.hi > p.lo && (!y.log || p.lo > 0))
        body << whisker_v(px, y(std::max(p.lo, y.d0)), y(p.hi), s.color);
      body << marker(s.marker, px, y(p.y), s.color) << "</g>";
    }
    body << "</g>";
  }

  std::ostringstream leg;
  const double legend_h = legend(leg, items, left - 40, top + plot_h + 50, width - 8);
  const double height = top + plot_h + 50 + legend_h + 8;
  return open_svg(width, height, c.title) + body.str() + leg.str() + "</svg>";
}

std::string bar_chart(const BarChart& c) {
  const double width = c.width;
  std::size_t longest = 0;
  for (const auto& b : c.bars) longest = std::max(longest, std::min(b.label.size(), c.label_chars));
  const double left = 12 + static_cast<double>(longest) * kFont * kMonoChar + 10;
  const double value_col = 70, right = value_col + 8, top = 58, row_h = 18;
  const double plot_h = row_h * static_cast<double>(std::max<std::size_t>(c.bars.size(), 1));
  Axis x{0, 1, left, width - right, c.log_x};
  Axis y{0, 1, top, top + plot_h, false};

  double lo = INFINITY, hi = -INFINITY;
  for (const auto& b : c.bars)
    for (double v : {b.value, b.lo, b.hi})
      if (std::isfinite(v) && (!c.log_x || v > 0)) {
        lo = std::min(lo, v);
        hi = std::max(hi, v);
      }
  if (std::isfinite(c.reference)) {
    lo = std::min(lo, c.reference);
    hi = std::max(hi, c.reference);
  }
  if (!std::isfinite(lo)) lo = hi = 1;
  std::vector<double> ticks;
  if (c.log_x) {
    x.d0 = lo;
    x.d1 = hi;
    widen_log_domain(x.d0, x.d1);
    ticks = log_ticks(x.d0, x.d1);
  } else {
    ticks = linear_ticks(hi * 1.04);
    x.d0 = 0;
    x.d1 = ticks.back();
  }
  const double base = c.log_x ? (std::isfinite(c.reference) ? c.reference : 1.0) : 0.0;
  const auto tick_text = c.tick_text ? c.tick_text : [](double v) { return short_number(v); };

  std::ostringstream body;
  header(body, c.title, c.subtitle, width);
  body << "<g class=\"axis x\">";
  double last_label_end = -INFINITY;
  for (double t : ticks) {
    const double px = x(t);
    const std::string text = tick_text(t);
    const double w = text_width(text, kFont, kSansChar);
    body << "<g class=\"tick\"><path class=\"grid\" d=\"M" << num(px) << " " << num(top) << "V"
         << num(top + plot_h) << "\"/>";
    if (px - w / 2 > last_label_end + 4) {
      body << "<text x=\"" << num(px) << "\" y=\"" << num(top + plot_h + 16)
           << "\" text-anchor=\"middle\">" << escape(text) << "</text>";
      last_label_end = px + w / 2;
    }
    body << "</g>";
  }
  body << "<path class=\"domain\" d=\"M" << num(left) << " " << num(top + plot_h) << "H"
       << num(width - right) << "\"/><text class=\"axis-label\" x=\""
       << num(left + (width - right - left) / 2) << "\" y=\"" << num(top + plot_h + 36)
       << "\" text-anchor=\"middle\">" << escape(c.x_label) << "</text></g>";
  body << "<text class=\"value-head\" x=\"" << num(width - value_col) << "\" y=\"" << num(top - 6)
       << "\">median</text>";
  if (!c.y_label.empty())
    body << "<text class=\"value-head rows-label\" x=\"" << num(left - 8) << "\" y=\""
         << num(top - 6) << "\" text-anchor=\"end\">" << escape(c.y_label) << "</text>";

  body << "<g class=\"bars\">";
  for (std::size_t i = 0; i < c.bars.size(); ++i) {
    const auto& b = c.bars[i];
    const double cy = y.p0 + row_h * (static_cast<double>(i) + 0.5);
    if (i % 2 == 1)
      body << "<rect class=\"stripe\" x=\"0\" y=\"" << num(cy - row_h / 2) << "\" width=\""
           << num(width) << "\" height=\"" << num(row_h) << "\"/>";
    body << "<g class=\"bar\"><title>" << escape(b.tip.empty() ? b.label : b.tip) << "</title>";
    body << "<text class=\"row-label\" x=\"" << num(left - 8) << "\" y=\"" << num(cy + 4)
         << "\" text-anchor=\"end\">" << escape(abbreviate(b.label, c.label_chars)) << "</text>";
    if (std::isfinite(b.value) && (!c.log_x || b.value > 0)) {
      const double a = x(base), v = x(b.value);
      body << "<rect x=\"" << num(std::min(a, v)) << "\" y=\"" << num(cy - 5.5) << "\" width=\""
           << num(std::max(std::fabs(v - a), 1.5)) << "\" height=\"11\" fill=\"" << b.color
           << "\"/>";
      if (std::isfinite(b.lo) && std::isfinite(b.hi) && b.hi > b.lo && (!c.log_x || b.lo > 0))
        body << whisker_h(x(std::max(b.lo, x.d0)), x(b.hi), cy, "#222");
    }
    body << "<text class=\"value\" x=\"" << num(width - value_col) << "\" y=\"" << num(cy + 4)
         << "\">" << escape(b.value_text) << "</text></g>";
  }
  body << "</g>";
  body << "<path class=\"domain\" d=\"M" << num(x(base)) << " " << num(top) << "V"
       << num(top + plot_h) << "\"/>";
  if (std::isfinite(c.reference)) {
    const double px = x(c.reference);
    body << "<g class=\"reference\"><title>" << escape(c.reference_label) << "</title><path d=\"M"
         << num(px) << " " << num(top - 4) << "V" << num(top + plot_h)
         << "\" stroke=\"#b00\" stroke-width=\"1.5\" stroke-dasharray=\"5 3\"/><text x=\""
         << num(px) << "\" y=\"" << num(top - 8) << "\" text-anchor=\"middle\" fill=\"#b00\">"
         << escape(c.reference_label) << "</text></g>";
  }

  std::ostringstream leg;
  const double legend_h = legend(leg, c.legend, 12, top + plot_h + 50, width - 8);
  const double height = top + plot_h + 50 + legend_h + 8;
  return open_svg(width, height, c.title) + body.str() + leg.str() + "</svg>";
}

}  // namespace maskcheck::reports::svg
