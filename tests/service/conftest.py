"""Fixtures for the service tests: a tiny real bundle, migrated databases on SQLite and on a real
PostgreSQL (a fresh schema per test, dropped after), and started apps with keys for every role.

PostgreSQL is 127.0.0.1:5432 database `test` (override with PLANT_ICD_TEST_POSTGRES_URL); its
tests are skipped, with the reason, only when it cannot be reached.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from service.core.config import Settings
from service.db import admin
from tests.model.bundle_factory import build_tiny_bundle
from tests.service.browser_testing import (
    CHROMIUM,
    CHROMIUM_ARGS,
    LAPTOP_VIEWPORT,
    LiveService,
    PageProblems,
    browser_missing_reason,
    live_service,
)
from tests.service.service_testing import (
    API_KEYS,
    Service,
    TcpProxy,
    drop_session_schemas,
    postgres_schema,
    reachable_postgres,
    running_service,
    with_search_path,
)


@pytest.fixture(scope="session")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny real bundle (ICD-10-CM codes R50.9, R05, I10, E11.9, R07.9, J18.9; top K 3)."""
    return build_tiny_bundle(tmp_path_factory.mktemp("service") / "bundle")


# Per-code thresholds (DEFAULT_CODES order) that put R50.9 and R05 above and I10 below for a note
# with fever, cough and hypertension: two suggestions to decide, one to leave.
REVIEW_THRESHOLDS = (0.2, 0.3, 0.5, 0.6, 0.3, 0.4)


@pytest.fixture(scope="session")
def review_bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny bundle with REVIEW_THRESHOLDS: several suggestions above threshold per note."""
    return build_tiny_bundle(
        tmp_path_factory.mktemp("service") / "review-bundle",
        per_code_thresholds=REVIEW_THRESHOLDS,
    )


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium under Playwright; the test is skipped, with the reason, without it."""
    reason = browser_missing_reason()
    if reason is not None:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def open_page(browser: Any) -> Iterator[Callable[..., Any]]:
    """New pages, each in its own browser context (its own sessionStorage), on a laptop screen
    unless `viewport=` says otherwise; any uncaught error or console error (a CSP violation
    included) fails the test."""
    contexts: list[Any] = []
    problems = PageProblems()

    def open_(url: str, **options: Any) -> Any:
        options.setdefault("viewport", LAPTOP_VIEWPORT)
        context = browser.new_context(**options)
        context.set_default_timeout(10_000)
        contexts.append(context)
        page = context.new_page()
        problems.watch(page)
        page.goto(url)
        return page

    yield open_
    for context in contexts:
        context.close()
    assert problems.errors == []


@pytest.fixture
def make_live(
    make_settings: Callable[..., Settings],
) -> Iterator[Callable[..., LiveService]]:
    started: list[Any] = []

    def start(database_url: str, **overrides: Any) -> LiveService:
        # Three suggestions per note, so a fourth code can be added from the catalogue.
        overrides.setdefault("default_top_k", 3)
        manager = live_service(make_settings(database_url, **overrides))
        started.append(manager)
        return manager.__enter__()

    yield start
    for manager in reversed(started):
        manager.__exit__(None, None, None)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """The server's URL (database `test`); schemas this session leaves behind are dropped."""
    url, reason = reachable_postgres()
    if url is None:
        pytest.skip(
            f"PostgreSQL is unreachable ({reason}): start it, or point "
            "PLANT_ICD_TEST_POSTGRES_URL at one"
        )
    yield url
    drop_session_schemas(url)


@pytest.fixture
def proxied_postgres(postgres_url: str) -> Iterator[tuple[str, str, TcpProxy]]:
    """(direct URL, URL through the proxy, proxy) for a fresh migrated schema."""
    server = make_url(postgres_url)
    proxy = TcpProxy(server.host or "127.0.0.1", server.port or 5432)
    proxy.start()
    with postgres_schema(postgres_url) as schema:
        direct = with_search_path(postgres_url, schema)
        admin.upgrade(direct)
        try:
            yield direct, with_search_path(postgres_url, schema, port=proxy.port), proxy
        finally:
            proxy.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database on each backend: a SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'audit.db'}"
        return
    server_url: str = request.getfixturevalue("postgres_url")
    with postgres_schema(server_url) as schema:
        yield with_search_path(server_url, schema)


@pytest.fixture
def database_url(empty_database_url: str) -> str:
    """A database migrated to head, on each backend."""
    admin.upgrade(empty_database_url)
    return empty_database_url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A migrated SQLite database, for tests whose subject is HTTP behaviour, not storage."""
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    admin.upgrade(url)
    return url


@pytest.fixture
def make_settings(bundle_dir: Path) -> Callable[..., Settings]:
    def build(database_url: str, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "bundle_dir": bundle_dir,
            "database_url": database_url,
            "api_keys": API_KEYS,
            "log_level": "WARNING",
        }
        values.update(overrides)
        return Settings(**values)

    return build


@pytest.fixture
def service(make_settings: Callable[..., Settings], database_url: str) -> Iterator[Service]:
    """The app on each backend, ready, with keys for every role."""
    with running_service(make_settings(database_url)) as started:
        yield started


@pytest.fixture
def sqlite_service(make_settings: Callable[..., Settings], sqlite_url: str) -> Iterator[Service]:
    """The app on SQLite only."""
    with running_service(make_settings(sqlite_url)) as started:
        yield started
