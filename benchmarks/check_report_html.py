"""Open a run's ``report.html`` in headless Chromium: count the images that failed to load, and take a
screenshot to look at.

    python benchmarks/check_report_html.py reports/embedded [--chromium chromium]

Writes ``DIR/report_html_check.json`` (images on the page, images broken, the browser's version)
and ``DIR/report_html_screenshot.png`` (the page's first 1400×2400 pixels). Chromium is Debian's
package (``apt-get install chromium``); this check is run by hand, not in CI, which has no browser.
The structural check that every figure is embedded runs in CI (``tests/test_benchmark_api.py``).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

# After load, the page's title becomes the count of images that did not decode.
PROBE = """<script>
window.addEventListener("load", () => {
  const imgs = Array.from(document.images);
  const broken = imgs.filter(i => !(i.complete && i.naturalWidth > 0)).length;
  document.title = "IMAGES=" + imgs.length + " BROKEN=" + broken;
});
</script>"""


def run(chromium: str, *args: str) -> str:
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path)
    ap.add_argument("--chromium", default="chromium")
    args = ap.parse_args(argv)
    page = args.results / "report.html"
    if not page.is_file():
        print(f"error: {page}: no report.html (python -m bench figures --results {args.results} writes it)", file=sys.stderr)
        return 2
    version = subprocess.run([args.chromium, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "probe.html"
        probe.write_text(page.read_text(encoding="utf-8").replace("</body>", PROBE + "\n</body>"), encoding="utf-8")
        dom = run(args.chromium, "--virtual-time-budget=20000", "--dump-dom", probe.as_uri())
    m = re.search(r"<title>IMAGES=(\d+) BROKEN=(\d+)</title>", dom)
    if m is None:
        print("error: the probe did not report (the page did not finish loading)", file=sys.stderr)
        return 1
    shot = args.results / "report_html_screenshot.png"
    run(args.chromium, "--window-size=1400,2400", f"--screenshot={shot.resolve()}", page.resolve().as_uri())
    result = {"page": str(page), "bytes": page.stat().st_size, "images": int(m.group(1)), "broken": int(m.group(2)),
              "browser": version, "screenshot": shot.name}
    (args.results / "report_html_check.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return 0 if result["broken"] == 0 and result["images"] > 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
