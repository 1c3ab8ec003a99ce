"""The API docs work on a closed network: /docs and /redoc load Swagger UI and ReDoc from files the
package ships (vendored with their licences), and render in Chromium with every request to a
host other than 127.0.0.1 blocked."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from service.api.routes.docs import DOCS_DIR
from tests.service.browser_testing import LAPTOP_VIEWPORT, PageProblems, live_service, save_artifact
from tests.service.service_testing import REPO, Service

VENDORED = ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js")
LICENCES = (
    "swagger-ui-LICENSE.txt",
    "swagger-ui-NOTICE.txt",
    "swagger-ui-bundle-THIRD-PARTY.txt",
    "redoc-LICENSE.txt",
    "redoc-THIRD-PARTY.txt",
)


class _References(HTMLParser):
    """Every src and href in a page."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        wanted = ("src", "href", "spec-url")
        self.urls += [value for name, value in attrs if name in wanted and value]


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_only_their_own_files(sqlite_service: Service, page: str) -> None:
    response = sqlite_service.http.get(page)
    assert response.status_code == 200
    assert "default-src 'none'" in response.headers["content-security-policy"]
    references = _References()
    references.feed(response.text)
    assert references.urls
    for url in references.urls:
        assert not urlsplit(url).netloc and not url.startswith("/"), url  # relative, same host
        asset = sqlite_service.http.get(f"/{url}")
        assert asset.status_code == 200, url
    assert "cdn" not in response.text.lower()
    assert sqlite_service.http.get("/docs-assets/VERSIONS.txt").status_code == 404
    assert sqlite_service.http.get("/docs-assets/..%2Fdocs.py").status_code == 404


def test_vendored_assets_carry_licences_and_their_recorded_sums() -> None:
    import hashlib

    versions = (DOCS_DIR / "VERSIONS.txt").read_text()
    assert re.search(r"^swagger-ui-dist \S+ Apache-2.0$", versions, re.MULTILINE)
    assert re.search(r"^redoc \S+ MIT$", versions, re.MULTILINE)
    for name in VENDORED:
        digest = hashlib.sha256((DOCS_DIR / name).read_bytes()).hexdigest()
        assert f"{digest}  {name}" in versions, f"{name} differs from VERSIONS.txt: re-vendor it"
    for name in LICENCES:
        assert (DOCS_DIR / name).stat().st_size > 0
    assert (REPO / "scripts" / "vendor-docs-assets.sh").is_file()


def test_the_wheel_ships_the_docs_assets(tmp_path: Path) -> None:
    built = subprocess.run(
        [
            *(sys.executable, "-m", "pip", "wheel", str(REPO)),
            *("--no-deps", "--no-build-isolation", "--quiet", "--wheel-dir", str(tmp_path)),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("plant_icd-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in (*VENDORED, *LICENCES, "swagger-init.js"):
        assert f"service/static/docs/{name}" in names


# -- in a browser, offline -------------------------------------------------------------------------


def _offline_page(browser: Any, problems: PageProblems) -> tuple[Any, Any, list[str]]:
    """A page whose every request outside 127.0.0.1 is aborted (and recorded)."""
    blocked: list[str] = []
    context = browser.new_context(viewport=LAPTOP_VIEWPORT)
    context.set_default_timeout(20_000)

    def gate(route: Any) -> None:
        url = route.request.url
        if urlsplit(url).hostname == "127.0.0.1":
            route.continue_()
        else:
            blocked.append(url)
            route.abort()

    context.route("**/*", gate)
    page = context.new_page()
    problems.watch(page)
    return context, page, blocked


def test_docs_render_with_the_network_blocked(
    browser: Any, make_settings: Any, sqlite_url: str, tmp_path: Path
) -> None:
    problems = PageProblems()
    with live_service(make_settings(sqlite_url)) as live:
        context, page, blocked = _offline_page(browser, problems)
        try:
            page.goto(f"{live.base_url}/docs")
            page.wait_for_selector(".swagger-ui .info .title")
            assert "PLANT-ICD coding service" in page.inner_text(".swagger-ui .info .title")
            page.wait_for_selector(".opblock-summary-path[data-path='/v1/predictions']")
            operations = page.locator(".opblock").count()
            assert operations >= 10
            save_artifact(page, tmp_path, "docs-swagger-offline.png")

            page.goto(f"{live.base_url}/redoc")
            page.wait_for_selector("h1:has-text('PLANT-ICD coding service')")
            assert page.locator("text=Code one note").count() >= 1
            save_artifact(page, tmp_path, "docs-redoc-offline.png")
        finally:
            context.close()
    assert blocked == []  # the pages asked nothing of another host
    assert problems.errors == []
