// Inline SVG charts for the HTML report: a line chart with error bars (throughput against
// sequence length) and a horizontal bar chart with whiskers and a reference line (speedups,
// fractions of a limit). Plain strings, no script: hover values are SVG <title> elements.
//
// Every chart carries, for the report's browser test, a title (text.chart-title), axis labels
// with units (text.axis-label), tick labels (g.tick text) and a legend (g.legend): the test finds
// them by these classes. Coordinates are checked to be finite before they are written, since a
// NaN attribute is an error in the browser's console.
#pragma once

#include <functional>
#include <limits>
#include <string>
#include <vector>

namespace maskcheck::reports::svg {

// HTML/SVG text and attribute escaping (& < > " ').
std::string escape(std::string_view s);

// Shortens `s` to at most `max_chars` characters by cutting out its middle ("cpu/att…/maskcheck").
std::string abbreviate(const std::string& s, std::size_t max_chars);

struct LegendItem {
  enum class Kind { marker, bar, reference, whisker };
  Kind kind = Kind::marker;
  std::string label;
  std::string color = "#333";
  int marker = 0;
  std::string tip;  // hover text; the label when empty
};

// ---- line chart: x on a log2 axis, one line per series, whiskers from lo to hi ----------------
struct XYPoint {
  double x = 0, y = 0;
  double lo = std::numeric_limits<double>::quiet_NaN();  // whisker; NaN: none
  double hi = std::numeric_limits<double>::quiet_NaN();
  std::string tip;
};
struct XYSeries {
  std::string name;
  std::string color;
  int marker = 0;
  std::vector<XYPoint> points;  // ascending x
};
struct XYChart {
  std::string title;     // first line, bold
  std::string subtitle;  // second line (monospace; abbreviated to fit, in full on hover)
  std::string x_label;   // with unit
  std::string y_what;    // the y label, "{}" standing for the unit: "useful {}"
  std::string y_unit;    // the unit after an SI prefix: "FLOP/s" gives "useful TFLOP/s"
  std::vector<XYSeries> series;
  std::vector<LegendItem> extra_legend;  // after the series (what the whiskers mean)
  int width = 560;
};
std::string line_chart(const XYChart& c);

// ---- horizontal bars with whiskers --------------------------------------------------------------
struct Bar {
  std::string label;  // row label (abbreviated to fit; `tip` holds the full story)
  std::string tip;
  std::string color;
  double value = 0;
  double lo = std::numeric_limits<double>::quiet_NaN();
  double hi = std::numeric_limits<double>::quiet_NaN();
  std::string value_text;  // printed in the column right of the plot
};
struct BarChart {
  std::string title;
  std::string subtitle;
  std::string x_label;  // with unit
  std::string y_label;  // what the rows are, above their labels ("benchmark · peer")
  bool log_x = false;   // log10 axis; bars start at `reference` (or 1)
  std::function<std::string(double)> tick_text;
  double reference = std::numeric_limits<double>::quiet_NaN();  // a dashed vertical line
  std::string reference_label;
  std::vector<Bar> bars;
  std::vector<LegendItem> legend;
  int width = 960;
  std::size_t label_chars = 62;  // longest row label before it is abbreviated
};
std::string bar_chart(const BarChart& c);

}  // namespace maskcheck::reports::svg
