"""Screenshots of an ablation-path viewer page in headless Chromium (for docs/img/).

    python benchmarks/ablation_path.py --html /tmp/ap.html
    python benchmarks/ablation_viewer_screenshots.py /tmp/ap.html docs/img/ablation_viewer

writes ``<prefix>_t<k>.png`` for a few slider positions and ``<prefix>_complement.png``.
Needs Debian's chromium (``apt-get install -y chromium``) and ``pip install playwright``.
"""
from __future__ import annotations

import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync"]


def main(page_path: str, prefix: str, positions=(3, 9, 13)) -> None:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        page = browser.new_page(viewport={"width": 1140, "height": 640})
        page.goto(Path(page_path).resolve().as_uri())
        for k in positions:
            page.eval_on_selector("#t-slider", "(el, k) => {el.value = k; el.dispatchEvent(new Event('input'))}", k)
            page.screenshot(path=f"{prefix}_t{k}.png")
        page.check("#comp-toggle")
        page.screenshot(path=f"{prefix}_complement.png")
        browser.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
