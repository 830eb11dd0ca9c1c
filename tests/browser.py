"""What the browser journeys share: Debian's Chromium (never a browser download), the
1366 px screen every page must fit, and a screenshot of every page visited, saved under the
run's output folder (``$BROWSER_SCREENSHOTS_DIR`` when set, as CI does, otherwise pytest's
base temporary directory), one folder per role."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1366, "height": 900}

needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian chromium at /usr/bin/chromium (apt-get install)"
)


def screenshot_folder(tmp_path_factory: pytest.TempPathFactory, role: str) -> Path:
    base = os.environ.get("BROWSER_SCREENSHOTS_DIR")
    root = Path(base) if base else tmp_path_factory.getbasetemp() / "screenshots"
    folder = root / role
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class Journey:
    """The browser page plus the bookkeeping every step shares: each page visited is
    checked to fit the screen and saved as a numbered screenshot."""

    def __init__(self, page: Any, base_url: str, folder: Path) -> None:
        self.page = page
        self.base_url = base_url
        self.folder = folder
        self.shots: list[Path] = []

    def snap(self, name: str) -> None:
        self.page.wait_for_load_state("networkidle")
        path = self.folder / f"{len(self.shots) + 1:02d}-{name}.png"
        self.page.screenshot(path=os.fspath(path), full_page=True)
        self.shots.append(path)
        # Usable at 1366 px: nothing runs off the side of the screen, and no admin list's
        # columns hide behind its scroll bar.
        width = self.page.evaluate("document.documentElement.scrollWidth")
        assert width <= VIEWPORT["width"], (name, width)
        hidden = self.page.evaluate(
            "[...document.querySelectorAll('#changelist .results')]"
            ".some(e => e.scrollWidth > e.clientWidth + 1)"
        )
        assert not hidden, (name, "list columns run off the screen")

    def open(self, path: str, name: str) -> Any:
        response = self.page.goto(self.base_url + path)
        self.snap(name)
        return response
