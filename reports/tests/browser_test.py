#!/usr/bin/env python3
"""The HTML report in a real browser (headless Chromium through its WebDriver, with Selenium).

  browser_test.py --maskcheck build/bin/maskcheck --workdir DIR [--published FILE...]

1. Writes a benchmark file with known families, peers and probes (bench-fixture.json), runs
   `maskcheck verify --mutants` on one mutant (failures with counterexample files), and renders
   both with `maskcheck report` into DIR/report/.
2. Opens report.html and checks what a reader sees: exactly the expected charts (two throughput
   families, one speedup chart, one limits chart), each rendered at a non-zero size with a title,
   axis labels with units, tick labels, a legend and hoverable points or bars; the verification
   matrix and failures with counterexample links that resolve; escaped text; nothing fetched from
   anywhere (no resource entries, no script, no external reference); and no error in the
   browser's console. Saves a screenshot, DIR/report.png.
3. Negative controls: copies of the page with an injected script, an external image, a chart
   removed, a NaN coordinate, the axis labels removed, a chart hidden. Each must fail the checks;
   a control that passes makes the test fail, so the checks cannot pass vacuously.
4. With --published, renders those result files too (the committed reports) and checks every
   chart in the same way (DIR/report-published.png).

Exit 0 when everything holds, 1 when a check fails, 77 (CTest's skip) when Chromium, its driver or
the selenium package is missing; ci/setup.sh installs them when MASKCHECK_SETUP_TESTS=1.
"""

import argparse
import base64
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.parse

SKIP = 77

# The fixture's expected charts, by figure kind.
EXPECTED_CHARTS = {"throughput": 2, "speedup": 1, "limits": 1}
FIXTURE_CPU = 'Fixture CPU <b>&amp; "quoted"</b>'


def skip(reason):
    print(f"SKIP: {reason}")
    sys.exit(SKIP)


def find_tools():
    chromium = os.environ.get("MASKCHECK_CHROMIUM") or shutil.which("chromium") or shutil.which(
        "chromium-browser")
    driver = os.environ.get("MASKCHECK_CHROMEDRIVER") or shutil.which("chromedriver")
    if not driver and os.path.exists("/usr/lib/chromium/chromedriver"):
        driver = "/usr/lib/chromium/chromedriver"
    if not chromium:
        skip("no Chromium (Debian: apt-get install chromium chromium-driver; ci/setup.sh does it "
             "with MASKCHECK_SETUP_TESTS=1)")
    if not driver:
        skip("no chromedriver (Debian: apt-get install chromium-driver)")
    try:
        import selenium  # noqa: F401
    except ImportError:
        skip(f"no selenium in {sys.executable} (pip install -r ci/requirements.txt; ci/setup.sh "
             "puts it in its virtual environment)")
    return chromium, driver


def start_browser(chromium, driver_path, workdir):
    # Never let Selenium Manager look for (or download) a browser or a driver.
    os.environ["SE_OFFLINE"] = "true"
    os.environ["SE_AVOID_STATS"] = "true"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1000", "--no-first-run", "--disable-extensions",
                "--disable-background-networking", "--disable-component-update",
                "--disable-default-apps", "--disable-sync",
                f"--user-data-dir={os.path.join(workdir, 'chromium-profile')}"]:
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=driver_path,
                      log_output=os.path.join(workdir, "chromedriver.log"))
    browser = webdriver.Chrome(service=service, options=options)
    browser.set_page_load_timeout(60)
    return browser


# ---- inputs -------------------------------------------------------------------------------------

def bench_rows(name, seconds, counters, label=""):
    """Google Benchmark iteration rows of one benchmark: one per repetition."""
    rows = []
    for i, t in enumerate(seconds):
        row = {"name": name + "/real_time", "run_name": name + "/real_time",
               "run_type": "iteration", "repetitions": len(seconds), "repetition_index": i,
               "threads": 1, "iterations": 10, "real_time": t * 1e6, "cpu_time": t * 1e6,
               "time_unit": "us", "label": label}
        for key, per_second in counters.items():
            row[key] = per_second / t  # work per call / seconds per call
        rows.append(row)
    return rows


def write_bench_fixture(path):
    """Synthetic numbers, shaped like `maskcheck bench --json` on a CPU (3 repetitions)."""
    spread = [1.0, 0.96, 1.05]
    b = []
    b += bench_rows("ceiling/cpu/triad/3x16MiB", [0.010 * s for s in spread],
                    {"bytes_per_second": 0.010 * 22e9}, "STREAM triad")
    b += bench_rows("ceiling/cpu/fma/f32", [0.005 * s for s in spread],
                    {"FLOPS": 0.005 * 300e9}, "FMA probe")
    for length in [256, 512, 1024, 2048]:
        group = f"cpu/attention/f32/D64/L{length}/pad50/padding+causal"
        flops = 4 * 64 * length * length * 8 * 0.13  # useful FLOPs per call
        for impl, rate in [("maskcheck", 150e9), ("torch_sdpa", 20e9), ("reference", 0.4e9)]:
            if impl == "reference" and length > 256:
                continue
            t = flops / (rate * (1 + length / 8192))
            b += bench_rows(f"{group}/{impl}", [t * s for s in spread],
                            {"useful_FLOPS": flops, "bytes_per_second": flops / 40})
    for lk, lq in [(1024, 1024), (8192, 128)]:
        group = f"cpu/softmax/f32/Lk{lk}/Lq{lq}/pad0/none"
        nbytes = 64 * lk * lq * 8
        for impl, rate in [("maskcheck", 19e9), ("torch", 12e9)]:
            t = nbytes / rate
            b += bench_rows(f"{group}/{impl}", [t * s for s in spread],
                            {"bytes_per_second": nbytes, "bw_frac": nbytes / 20e9})
    group = "cpu/cross_entropy/f32/V131072/N512/ignore50"
    for impl, rate in [("maskcheck", 16e9), ("torch", 1.3e9)]:
        nbytes = 131072 * 512 * 8
        b += bench_rows(f"{group}/{impl}", [nbytes / rate * s for s in spread],
                        {"bytes_per_second": nbytes})
    b.append({"name": "cpu/mlm/T1048576/L512/pad25/maskcheck/real_time",
              "run_name": "cpu/mlm/T1048576/L512/pad25/maskcheck/real_time",
              "run_type": "iteration", "repetitions": 3, "error_occurred": True,
              "error_message": "mismatch: fixture row that was skipped"})
    doc = {"context": {"date": "2026-11-23T07:06:20+00:00", "num_cpus": 2,
                       "maskcheck.cpu": FIXTURE_CPU, "maskcheck.cores": "2",
                       "cpu.simd_target": "AVX3", "cpu.omp_threads": "2",
                       "cuda": "unavailable (fixture: no device)", "torch.version": "2.11.0",
                       "maskcheck.compiler": "gcc 12.2.0", "maskcheck.build_type": "Release",
                       "maskcheck.commit": "0123456789abcdef", "maskcheck.dirty": "false",
                       "maskcheck.seed": "1", "maskcheck.version": "0.1.0",
                       "cpu.triad_bandwidth_gbps": "20.0", "cpu.fma_peak_gflops": "200.0"},
           "benchmarks": b}
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)


def run(cmd, cwd):
    r = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return r.returncode, r.stdout


# ---- checks -------------------------------------------------------------------------------------

# Collected in the page in one go: every figure and its chart's parts, sizes from the layout.
COLLECT = r"""
const box = e => { const r = e.getBoundingClientRect(); return [r.width, r.height]; };
const textBox = e => { try { const b = e.getBBox(); return [b.width, b.height]; }
                       catch (x) { return [0, 0]; } };
const figures = Array.from(document.querySelectorAll('figure.chart-figure')).map(f => {
  const svgs = Array.from(f.querySelectorAll('svg.chart'));
  const s = svgs[0];
  const texts = sel => s ? Array.from(s.querySelectorAll(sel)).map(t =>
      ({text: t.textContent, box: textBox(t)})) : [];
  return {
    id: f.id, kind: f.dataset.kind, svgs: svgs.length, box: s ? box(s) : [0, 0],
    visible: s ? getComputedStyle(s).display !== 'none' && getComputedStyle(s).visibility !== 'hidden' : false,
    title: texts('.chart-title'), axisLabels: texts('.axis-label'), ticks: texts('.tick text'),
    legend: s ? Array.from(s.querySelectorAll('.legend .legend-item')).map(g =>
        ({text: g.textContent, box: textBox(g)})) : [],
    marks: s ? s.querySelectorAll('g.point, g.bar').length : 0,
    markTitles: s ? Array.from(s.querySelectorAll('g.point > title, g.bar > title')).map(t =>
        t.textContent) : [],
    series: s ? Array.from(s.querySelectorAll('g.series')).map(g => g.dataset.series) : [],
    tableRows: f.querySelectorAll('.fig-table tr').length,
  };
});
const machine = {};
document.querySelectorAll('table.machine tr').forEach(tr => {
  const th = tr.querySelector('th'); const tds = tr.querySelectorAll('td');
  if (th && tds.length) machine[th.textContent] = Array.from(tds).map(td => td.textContent);
});
return {
  figures, machine,
  svgCount: document.querySelectorAll('svg.chart').length,
  resources: performance.getEntriesByType('resource').map(e => e.name),
  scripts: document.querySelectorAll('script').length,
  links: document.querySelectorAll('link, iframe, object, embed, img, video, audio').length,
  external: Array.from(document.querySelectorAll('[src], [href]')).map(e =>
      e.getAttribute('src') || e.getAttribute('href')).filter(u => /^(https?:|\/\/|ftp:)/i.test(u)),
  csp: !!document.querySelector('meta[http-equiv="Content-Security-Policy"]'),
  matrixCells: {pass: document.querySelectorAll('table.matrix td.pass').length,
                fail: document.querySelectorAll('table.matrix td.fail').length},
  failures: Array.from(document.querySelectorAll('div.failure')).map(d => ({
    id: d.id, pres: Array.from(d.querySelectorAll('pre')).map(p => p.textContent),
    codes: Array.from(d.querySelectorAll('code')).map(c => c.textContent),
    links: Array.from(d.querySelectorAll('a[href]')).map(a => a.getAttribute('href')),
    text: d.textContent})),
  boldInMachine: document.querySelectorAll('table.machine b').length,
  height: document.documentElement.scrollHeight,
};
"""

UNIT = re.compile(r"(B/s|FLOP/s|\u00d7|tokens|fraction)")


def check_chart(fig):
    """What every chart must have; returns a list of problems."""
    p = []
    name = f"{fig['id']} ({fig['kind']})"
    if fig["svgs"] != 1:
        p.append(f"{name}: {fig['svgs']} svg charts, expected 1")
        return p
    if not fig["visible"] or fig["box"][0] < 100 or fig["box"][1] < 100:
        p.append(f"{name}: rendered at {fig['box'][0]:.0f} x {fig['box'][1]:.0f} px")
    if not fig["title"] or not fig["title"][0]["text"].strip() or fig["title"][0]["box"][0] <= 0:
        p.append(f"{name}: no visible title")
    want_axes = 2 if fig["kind"] == "throughput" else 1
    labels = [a for a in fig["axisLabels"] if a["box"][0] > 0 and a["text"].strip()]
    if len(labels) < want_axes:
        p.append(f"{name}: {len(labels)} visible axis labels, expected {want_axes}")
    for a in labels:
        if not UNIT.search(a["text"]):
            p.append(f"{name}: axis label without a unit: {a['text']!r}")
    ticks = [t for t in fig["ticks"] if t["box"][0] > 0 and t["text"].strip()]
    if len(ticks) < 2 * want_axes:
        p.append(f"{name}: {len(ticks)} visible tick labels")
    legend = [g for g in fig["legend"] if g["box"][0] > 0 and g["text"].strip()]
    if len(legend) < 2:
        p.append(f"{name}: legend has {len(legend)} visible entries")
    if fig["marks"] < 1 or any(not t.strip() for t in fig["markTitles"]):
        p.append(f"{name}: {fig['marks']} points/bars, or one without a hover title")
    if fig["tableRows"] < 2:
        p.append(f"{name}: no table of medians beside the chart")
    return p


def console_errors(browser):
    return [e for e in browser.get_log("browser") if e.get("level") == "SEVERE"]


def load(browser, path):
    browser.get("file://" + urllib.parse.quote(os.path.abspath(path)))
    return browser.execute_script(COLLECT)


def check_page(browser, path, expected=None):
    """Loads `path`; returns (problems, collected)."""
    got = load(browser, path)
    p = [f"console: {e.get('message')}" for e in console_errors(browser)]
    if got["resources"]:
        p.append(f"the page fetched {got['resources']}")
    if got["scripts"] or got["links"] or got["external"]:
        p.append(f"not self-contained: {got['scripts']} scripts, {got['links']} embedded "
                 f"elements, external references {got['external']}")
    if not got["csp"]:
        p.append("no Content-Security-Policy")
    if got["svgCount"] != len(got["figures"]):
        p.append(f"{got['svgCount']} svg charts in {len(got['figures'])} figures")
    kinds = {}
    for fig in got["figures"]:
        kinds[fig["kind"]] = kinds.get(fig["kind"], 0) + 1
        p += check_chart(fig)
    if expected is not None and kinds != expected:
        p.append(f"charts by kind {kinds}, expected {expected}")
    if expected is None and not got["figures"]:
        p.append("no charts")
    return p, got


def check_fixture_content(got, report_dir):
    """What the fixture's page must say, beyond the charts."""
    p = []
    attention = [f for f in got["figures"] if f["kind"] == "throughput" and
                 "maskcheck" in f["series"] and "torch_sdpa" in f["series"]]
    if not attention or sorted(attention[0]["series"]) != ["maskcheck", "reference", "torch_sdpa"]:
        p.append(f"attention family lines: {[f['series'] for f in got['figures']]}")
    cpu = got["machine"].get("CPU", [])
    if FIXTURE_CPU not in " ".join(cpu) or got["boldInMachine"]:
        p.append(f"CPU name not shown literally (escaping): {cpu}")
    gpu = " ".join(got["machine"].get("GPU", []))
    if "none" not in gpu:
        p.append(f"GPU should read none: {gpu!r}")
    for field in ["date", "cores", "LibTorch", "compiler, build", "maskcheck, commit", "seed",
                  "measured limits"]:
        values = got["machine"].get(field)
        if not values or any(not v.strip() for v in values):
            p.append(f"machine table: {field} blank or missing: {values}")
    if got["matrixCells"]["fail"] < 1 or got["matrixCells"]["pass"] < 1:
        p.append(f"verification matrix cells: {got['matrixCells']}")
    if not got["failures"]:
        p.append("no failures listed")
    linked = 0
    for f in got["failures"]:
        if "Shrunk counterexample" not in f["text"] or not f["pres"]:
            p.append(f"{f['id']}: no message or counterexample")
        if not any(c.startswith("maskcheck verify ") for c in f["codes"]):
            p.append(f"{f['id']}: no replay command")
        for href in f["links"]:
            target = os.path.normpath(os.path.join(report_dir, urllib.parse.unquote(href)))
            if not os.path.isfile(target):
                p.append(f"{f['id']}: link {href} does not resolve to a file")
            linked += 1
    if linked == 0:
        p.append("no counterexample file is linked")
    return p


def screenshot(browser, path, height):
    shot = browser.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": 1400, "height": min(height, 12000), "scale": 1}})
    with open(path, "wb") as f:
        f.write(base64.b64decode(shot["data"]))


# Each control breaks the page in one way that the checks must notice.
def controls(html):
    first_svg = re.search(r"<svg class=\"chart\".*?</svg>", html, re.S)
    return {
        "script blocked by the page's policy":
            html.replace("</body>", "<script>document.title = missing();</script></body>"),
        "script error without the policy":
            re.sub(r"<meta http-equiv=\"Content-Security-Policy\"[^>]*>", "", html).replace(
                "</body>", "<script>document.title = missing();</script></body>"),
        "external image": html.replace("</main>",
                                       "<img src=\"https://example.invalid/x.png\"></main>"),
        "a chart removed": html[:first_svg.start()] + html[first_svg.end():],
        "a NaN coordinate": re.sub(r"<circle cx=\"[^\"]*\"", "<circle cx=\"NaN\"", html, count=1),
        "no axis labels": re.sub(r"<text class=\"axis-label\"[^>]*>[^<]*</text>", "", html),
        "a chart hidden": html.replace("<svg class=\"chart\"",
                                       "<svg style=\"display:none\" class=\"chart\"", 1),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--maskcheck", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--published", nargs="*", default=[],
                    help="result files to render and check as well (the committed reports)")
    args = ap.parse_args()
    chromium, driver_path = find_tools()
    maskcheck = os.path.abspath(args.maskcheck)
    work = os.path.abspath(args.workdir)
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)

    # Inputs, with relative paths from `work`: the counterexample links are resolved from there.
    write_bench_fixture(os.path.join(work, "bench-fixture.json"))
    rc, out = run([maskcheck, "verify", "--mutants", "--impl", "mutant:causal-off-by-one",
                   "--op", "attention", "--cases", "20", "--seed", "1", "--json",
                   "verify-mutants.json"], work)
    if rc != 0:
        print(out)
        print("FAIL: maskcheck verify --mutants did not kill the mutant")
        return 1
    rc, out = run([maskcheck, "report", "verify-mutants.json", "bench-fixture.json", "--out",
                   "report"], work)
    if rc != 0:
        print(out)
        print("FAIL: maskcheck report")
        return 1
    report_dir = os.path.join(work, "report")
    page = os.path.join(report_dir, "report.html")

    failed = False
    browser = start_browser(chromium, driver_path, work)
    try:
        problems, got = check_page(browser, page, EXPECTED_CHARTS)
        problems += check_fixture_content(got, report_dir)
        screenshot(browser, os.path.join(work, "report.png"), got["height"])
        print(f"report.html: {len(got['figures'])} charts, {len(got['failures'])} failures "
              f"listed, screenshot {os.path.join(work, 'report.png')}")
        for p in problems:
            print(f"FAIL: {p}")
        failed = failed or bool(problems)

        with open(page, encoding="utf-8") as f:
            html = f.read()
        for name, broken in controls(html).items():
            if broken == html:
                print(f"FAIL: negative control '{name}' did not change the page")
                failed = True
                continue
            copy = os.path.join(report_dir, "control.html")
            with open(copy, "w", encoding="utf-8") as f:
                f.write(broken)
            found, _ = check_page(browser, copy, EXPECTED_CHARTS)
            if found:
                print(f"negative control '{name}': detected ({found[0]})")
            else:
                print(f"FAIL: negative control '{name}' passed the checks: they are too weak")
                failed = True

        if args.published:
            inputs = [os.path.abspath(p) for p in args.published]
            rc, out = run([maskcheck, "report", *inputs, "--out", "published"], work)
            if rc != 0:
                print(out)
                print("FAIL: maskcheck report of the published results")
                return 1
            problems, got = check_page(browser, os.path.join(work, "published", "report.html"))
            screenshot(browser, os.path.join(work, "report-published.png"), got["height"])
            print(f"published report: {len(got['figures'])} charts")
            for p in problems:
                print(f"FAIL (published): {p}")
            failed = failed or bool(problems)
    finally:
        browser.quit()
    print("FAILED" if failed else "all checks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
