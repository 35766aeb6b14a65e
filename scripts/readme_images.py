"""Make the README's and the docs' pictures of the console (docs/images/) again, as a new user sees it.

    uv run python -m scripts.readme_images [--minutes 5]

Starts ``agentic-backend serve`` with ``make serve``'s defaults on a new data folder, sends loadgen's mix
at 20 requests/s for ``--minutes``, then signs in with Debian's Chromium (as the browser tests do) and saves
the overview (its last 15 minutes) and the spend page at 1400 x 1000 pixels.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

from bench.agents_vs_litellm import wait_ready
from bench.common import free_port

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "docs" / "images"
KEY = "readme-images-admin-key-0123456789-abcdefgh"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=5.0)
    args = parser.parse_args()
    chromium = shutil.which("chromium")
    if chromium is None:
        sys.exit("chromium is not installed: run scripts/bootstrap.sh")
    data = Path(tempfile.mkdtemp(prefix="readme-images-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "AGENTIC_DATA_DIR": str(data), "AGENTIC_ADMIN_API_KEY": KEY}
    cli = [sys.executable, "-m", "agentic_backend"]
    serve = subprocess.Popen([*cli, "serve", "--port", str(port)], env=env, stdout=subprocess.DEVNULL)
    try:
        wait_ready(f"{url}/api/v1/monitoring/live", {})
        load = [*cli, "loadgen", "--url", url, "--api-key", KEY, "--rate", "20"]
        subprocess.run([*load, "--duration", str(args.minutes * 60)], check=True, stdout=subprocess.DEVNULL)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{url}/console/")
            page.get_by_label("API key").fill(KEY)
            page.keyboard.press("Enter")
            page.locator("#who-name").wait_for()
            page.get_by_role("button", name="15m").click()
            page.locator("section.panel canvas").first.wait_for()
            time.sleep(2)  # every chart drawn
            page.screenshot(path=str(IMAGES / "console-overview.png"))
            page.get_by_role("link", name="Spend").click()
            page.get_by_role("heading", name="Spend", exact=True, level=1).wait_for()
            time.sleep(1)
            page.screenshot(path=str(IMAGES / "console-spend.png"))
            browser.close()
    finally:
        serve.terminate()
        serve.wait(timeout=30)
        shutil.rmtree(data, ignore_errors=True)
    print(f"saved {IMAGES / 'console-overview.png'} and {IMAGES / 'console-spend.png'}")


if __name__ == "__main__":
    main()
