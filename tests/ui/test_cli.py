"""``kubekeep ui`` as a user starts it: the printed URL carries the token and reaches the UI on
loopback, Ctrl-C stops it, and bad or busy addresses are one-line usage errors."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from kubekeep import api
from kubekeep.engine.repository import Repository
from tests.cli.helpers import KUBEKEEP, clean_env

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def env(make_repo: Callable[[str], Repository], tmp_path: Path) -> dict[str, str]:
    repo = make_repo("repo")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "hello.txt").write_text("hello from the snapshot\n")
    api.backup(repo, str(tmp_path / "src"))
    return {
        **clean_env(),
        "KUBEKEEP_REPOSITORY": str(tmp_path / "repo"),
        "KUBEKEEP_PASSWORD": "pw",
        "KUBEKEEP_CACHE_DIR": str(tmp_path / "cli-cache"),
    }


def test_ui_prints_a_token_url_serves_it_and_stops_on_ctrl_c(env: dict[str, str]) -> None:
    proc = subprocess.Popen(
        [*KUBEKEEP, "ui", "--listen", "127.0.0.1:0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("open http://127.0.0.1:"), line
        url = line.split()[1]
        base, _, token = url.partition("/?token=")
        assert len(token) >= 40
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(base + "/s/latest/tree/hello.txt", timeout=30)
        assert refused.value.code == 403
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
        with opener.open(url, timeout=30) as first:  # redirect, cookie set
            assert first.url == base + "/" and b"Snapshots" in first.read()
        with opener.open(base + "/s/latest/tree/hello.txt", timeout=30) as page:
            assert b"hello from the snapshot" in page.read()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert "restores disabled" in err and "stopped" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_bad_and_busy_addresses(env: dict[str, str]) -> None:
    bad = subprocess.run(
        [*KUBEKEEP, "ui", "--listen", "127.0.0.1:70000"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2 and "port from 0 to 65535" in bad.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = subprocess.run(
            [*KUBEKEEP, "ui", "--listen", f"127.0.0.1:{port}"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert busy.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in busy.stderr


def test_open_keeps_the_token_off_the_browser_command_line(env: dict[str, str], tmp_path: Path) -> None:
    """Every local user can read a command line (``ps``): the browser gets a private local page
    that forwards to the token URL, never the token itself."""
    record = tmp_path / "browser-argv"
    browser = tmp_path / "browser.sh"
    browser.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {record}\n')
    browser.chmod(0o755)
    proc = subprocess.Popen(
        [*KUBEKEEP, "ui", "--listen", "127.0.0.1:0", "--open"],
        env={**env, "BROWSER": f"{browser} %s"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().split()[1]
        token = url.partition("/?token=")[2]
        for _ in range(300):
            if record.exists() and record.read_text():
                break
            time.sleep(0.05)
        argv = record.read_text()
        assert token not in argv and argv.startswith("file://"), argv
        page = Path(urllib.parse.urlparse(argv.strip()).path)
        assert page.stat().st_mode & 0o777 == 0o600 and page.parent.stat().st_mode & 0o777 == 0o700
        assert url in page.read_text()
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
        assert not page.exists()  # removed when the UI stops
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
