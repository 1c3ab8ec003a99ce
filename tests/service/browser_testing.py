"""Helpers for the review page's browser tests: Debian's Chromium driven by Playwright, a live
service on a real uvicorn with its own database, and screenshots kept as test artefacts.

Playwright's own browser download is never used: the system Chromium is launched by path, with
the flags that keep it off the network (this machine's network is closed).
"""

from __future__ import annotations

import importlib.util
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from service.core.config import Settings
from service.main import create_app
from tests.service.service_testing import KEYS, REPO, headers, uvicorn_server

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = REPO / "test-artifacts"
# A common laptop screen; the page must be usable at this size.
LAPTOP_VIEWPORT = {"width": 1366, "height": 768}


def browser_missing_reason() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing: run scripts/install-test-prereqs.sh (Debian's chromium)"
    if importlib.util.find_spec("playwright") is None:
        return (
            "the playwright package is missing: pip install playwright (never `playwright install`)"
        )
    return None


def save_artifact(page: Any, tmp_path: Path, name: str) -> Path:
    """A full-window screenshot under pytest's tmp dir, copied to test-artifacts/ at the repo."""
    shot = tmp_path / name
    page.screenshot(path=str(shot))
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copyfile(shot, ARTIFACTS / name)
    return shot


@dataclass
class LiveService:
    """The app on a real uvicorn: its base URL, an HTTP client and an engine onto its database."""

    base_url: str
    http: httpx.Client
    engine: sa.Engine

    def predict(self, text: str, **fields: Any) -> dict[str, Any]:
        response = self.http.post(
            "/v1/predictions", json={"text": text, **fields}, headers=headers("ehr")
        )
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    def stored(self, prediction_id: str) -> dict[str, Any]:
        """The prediction as GET /v1/predictions/{id} shows it (what the page reads)."""
        response = self.http.get(f"/v1/predictions/{prediction_id}", headers=headers("coder"))
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def feedback_rows(self, prediction_id: str) -> list[tuple[str, str, str, str | None, str]]:
        """(code, decision, coder_id, comment, client) of each feedback event, oldest first."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.text(
                    "SELECT code, decision, coder_id, comment, client FROM feedback_events "
                    "WHERE prediction_id = :id ORDER BY id"
                ),
                {"id": prediction_id},
            )
            return [(row[0], row[1], row[2], row[3], row[4]) for row in rows]

    def count(self, table: str) -> int:
        with self.engine.connect() as connection:
            return int(connection.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())


@contextmanager
def live_service(settings: Settings, timeout: float = 60.0) -> Iterator[LiveService]:
    """The app for `settings` on a free loopback port, once /readyz says ready."""
    app = create_app(settings)
    engine = sa.create_engine(settings.database_url)
    try:
        with uvicorn_server(app) as base_url, httpx.Client(base_url=base_url, timeout=30) as http:
            deadline = time.monotonic() + timeout
            while http.get("/readyz").status_code != 200:
                if time.monotonic() > deadline:
                    raise AssertionError(f"not ready: {http.get('/readyz').text}")
                time.sleep(0.02)
            yield LiveService(base_url=base_url, http=http, engine=engine)
    finally:
        engine.dispose()


@dataclass
class PageProblems:
    """What went wrong inside the page: uncaught errors, and console errors other than the
    browser's own line for an HTTP error answer (a refused key is expected to answer 401)."""

    errors: list[str] = field(default_factory=list)

    def watch(self, page: Any) -> None:
        page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))
        page.on("console", self._console)

    def _console(self, message: Any) -> None:
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.errors.append(f"console: {message.text}")


def merged_runs(marks: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """Adjacent (start, end, text) pieces joined: one highlight can be cut at another code's
    boundary, so the page may draw it as several marks."""
    runs: list[tuple[int, int, str]] = []
    for start, end, text in sorted(marks):
        if runs and runs[-1][1] == start:
            first, _, joined = runs[-1]
            runs[-1] = (first, end, joined + text)
        else:
            runs.append((start, end, text))
    return runs


# WCAG 2 contrast of each element's text with the first opaque background behind it, in the page.
CONTRAST_JS = """
(selectors) => {
    const channel = (value) => {
        const c = value / 255;
        return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
    };
    const rgba = (text) => {
        const parts = text.match(/[\\d.]+/g).map(Number);
        return [parts[0], parts[1], parts[2], parts.length > 3 ? parts[3] : 1];
    };
    const luminance = ([r, g, b]) =>
        0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b);
    const background = (element) => {
        for (let node = element; node; node = node.parentElement) {
            const colour = rgba(getComputedStyle(node).backgroundColor);
            if (colour[3] > 0.99) return colour;
        }
        return [255, 255, 255, 1];
    };
    const result = {};
    for (const selector of selectors) {
        const element = document.querySelector(selector);
        if (!element) { result[selector] = null; continue; }
        const fore = luminance(rgba(getComputedStyle(element).color));
        const back = luminance(background(element));
        result[selector] = (Math.max(fore, back) + 0.05) / (Math.min(fore, back) + 0.05);
    }
    return result;
}
"""


# -- driving the review page ------------------------------------------------------------------


def sign_in(page: Any, role: str = "coder", coder_id: str = "") -> None:
    page.fill("#api-key", KEYS[role])
    page.fill("#coder-id", coder_id)
    page.click("#sign-in-form button[type=submit]")


def settle(page: Any) -> None:
    """Wait until the page has finished what the last action started (it marks the workspace
    aria-busy while it talks to the service)."""
    page.wait_for_selector("#review-view[aria-busy='false']:not([hidden])")


def open_note(page: Any, note_id: str) -> None:
    page.click(f"#queue-list button:has-text('Note {note_id}')")
    settle(page)
    assert page.inner_text("#note-heading") == f"Note {note_id}"


def marks(page: Any) -> list[tuple[int, int, str]]:
    found = page.eval_on_selector_all(
        "#note-text mark",
        "els => els.map(e => [Number(e.dataset.start), Number(e.dataset.end), e.textContent])",
    )
    return [(int(start), int(end), text) for start, end, text in found]


def code_row(page: Any, code: str) -> Any:
    return page.locator(f'#code-list li[data-code="{code}"]')
