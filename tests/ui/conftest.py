"""Fixtures for the web UI tests: a UI server on a free loopback port over a test repository,
and headless Chromium (Debian's ``chromium`` driven by Playwright; no browser download)."""

from __future__ import annotations

import shutil
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from kubekeep.engine.repository import Repository
from kubekeep.ui import Server, bind, create_app

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "docs" / "screenshots"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
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
TOKEN = "test-token-0123456789abcdefghijklmnop"


@dataclass
class UIServer:
    """A running UI: ``base`` URL, the token, and helpers for plain HTTP requests."""

    base: str
    token: str
    server: Server
    app: Any
    cookie: str = field(default="kubekeep_ui")

    @property
    def login_url(self) -> str:
        return f"{self.base}/?token={self.token}"

    def get(
        self, path: str, *, token: bool = True, headers: dict[str, str] | None = None, data: bytes | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        """``(status, headers, body)`` of one request, redirects not followed."""
        request = urllib.request.Request(self.base + path, data=data, headers=dict(headers or {}))
        if token:
            request.add_header("Cookie", f"{self.cookie}={self.token}")
        opener = urllib.request.build_opener(_NoRedirect)
        try:
            with opener.open(request, timeout=60) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


@pytest.fixture
def ui_server() -> Iterator[Callable[..., UIServer]]:
    """``ui_server(repo, allow_restore=False, kubeconfig=None)``: a UI on a free loopback port."""
    started: list[UIServer] = []

    def start(
        repo: Repository, *, allow_restore: bool = False, kubeconfig: str | None = None, location: str = "test-repo"
    ) -> UIServer:
        sock = bind("127.0.0.1:0")
        port = sock.getsockname()[1]
        app = create_app(repo, token=TOKEN, location=location, allow_restore=allow_restore, kubeconfig=kubeconfig)
        ui = UIServer(f"http://127.0.0.1:{port}", TOKEN, Server(app, sock).start(), app)
        started.append(ui)
        return ui

    yield start
    for ui in started:
        ui.server.stop()
        ui.app.state.ui.catalog.close()


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Headless Chromium from the Debian package (scripts/system-deps.sh installs it)."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: install Debian's chromium (scripts/system-deps.sh)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def open_ui(browser: Browser) -> Iterator[Callable[[UIServer], Page]]:
    """``open_ui(server)``: a fresh browser page logged in through the token URL."""
    contexts = []

    def open_(ui: UIServer) -> Page:
        context = browser.new_context(viewport={"width": 1280, "height": 860})
        contexts.append(context)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(ui.login_url)
        assert page.url == ui.base + "/", "the token URL should redirect to the page without the token"
        page.js_errors = errors  # type: ignore[attr-defined]
        return page

    yield open_
    for context in contexts:
        context.close()


def screenshot(page: Page, name: str, *, full_page: bool = False) -> None:
    """Save the page as docs/screenshots/NAME.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=full_page)


@pytest.fixture
def synthetic(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register the ``synthetic://`` importer (tests/ui/synthetic.py) for this test."""
    from kubekeep import connectors

    monkeypatch.setitem(connectors.IMPORTERS, "synthetic", "tests.ui.synthetic")


@pytest.fixture
def make_repo(tmp_path: Path) -> Iterator[Callable[[str], Repository]]:
    """``make_repo(name)``: a new repository under tmp_path, closed after the test."""
    from kubekeep import api
    from tests.cli.helpers import FAST_KDF

    made: list[Repository] = []

    def make(name: str = "repo") -> Repository:
        opts = api.RepositoryOptions(str(tmp_path / name), "pw", cache_dir=tmp_path / f"{name}-cache")
        repo = api.init_repository(opts, kdf=FAST_KDF)
        made.append(repo)
        return repo

    yield make
    for repo in made:
        repo.close()
