"""The report's page: its layout, style, and the one script of its own.

The script unpacks plotly.js (gzip, base64) with the browser's DecompressionStream, runs
it, and draws each figure (plotly JSON) with ``Plotly.newPlot``: plotly's own offline
HTML would carry plotly.js uncompressed, 4.8 MB of the report's 5 MB budget.
"""

from __future__ import annotations

REPORT = "report.html"  # the file's name, in the folder and in the parent run

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin-top: 1.5em; }
.figure { width: 100%; min-height: 420px; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { border: 1px solid #ddd; padding: 2px 6px; text-align: right; white-space: nowrap; }
th { background: #f3f3f3; position: sticky; top: 0; }
tr:nth-child(even) td { background: #fafafa; }
#status { color: #a00; }
"""

UNPACK = """
// Each run's link points at the MLflow UI the page is in: the UI's artifact view shows
// the report from a blob: URL of its own address (any port); a report opened as a file
// keeps the address it was written with.
(() => {
  const here = location.href.replace(/^blob:/, "");
  if (!/^https?:/.test(here)) return;
  const origin = new URL(here).origin;
  for (const link of document.querySelectorAll("a[data-run]")) {
    link.href = origin + link.dataset.run;
  }
})();
(async () => {
  const status = document.getElementById("status");
  try {
    const packed = document.getElementById("plotly-gz").textContent;
    const bytes = Uint8Array.from(atob(packed), (c) => c.charCodeAt(0));
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    const code = await new Response(stream).text();
    const script = document.createElement("script");
    script.textContent = code;
    document.head.appendChild(script);
    const figures = JSON.parse(document.getElementById("figures").textContent);
    for (const element of document.querySelectorAll("[data-figure]")) {
      const figure = figures[Number(element.dataset.figure)];
      await Plotly.newPlot(element, figure.data, figure.layout, { responsive: true });
    }
    document.body.dataset.drawn = String(figures.length);
  } catch (error) {
    status.textContent = "the figures could not be drawn: " + error;
  }
})();
"""

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>@TITLE@</title>
<style>@STYLE@</style>
</head>
<body>
<h1>@TITLE@</h1>
<p>@SUMMARY@</p>
<p id="status"></p>
@SECTIONS@
<h2>trials</h2>
@TABLE@
<script type="application/json" id="figures">@FIGURES@</script>
<script type="application/octet-stream" id="plotly-gz">@PLOTLY@</script>
<script>@UNPACK@</script>
</body>
</html>
"""


def page(**parts: str) -> str:
    """PAGE with each ``@NAME@`` replaced by ``parts[name]`` (one pass, so a part's own
    text is never read as a placeholder)."""
    import re

    return re.sub(r"@([A-Z]+)@", lambda m: parts[m.group(1).lower()], PAGE)
