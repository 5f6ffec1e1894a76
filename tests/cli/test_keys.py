"""Passwords: add a key, open with it, remove the old one (never the one in use)."""

from __future__ import annotations

import base64
import json
import os
import pty
import select
import signal
import socket
import termios
import time
from pathlib import Path

import pytest

from tests.cli.helpers import KK, KUBEKEEP, init_fast, stderr_line


def test_key_add_list_remove(kk: KK, tmp_path: Path) -> None:
    init_fast(kk.repo, kk.password)
    [old] = kk.json("key", "list")
    assert old["current"] and len(old["id"]) == 32

    (tmp_path / "new-pw").write_text("a brand new password\n")
    added = kk.json("key", "add", "--new-password-file", str(tmp_path / "new-pw"))
    keys = {k["id"]: k for k in kk.json("key", "list")}
    assert set(keys) == {old["id"], added["id"]} and keys[added["id"]]["current"] is False

    new_env = {"KUBEKEEP_PASSWORD": "a brand new password"}
    as_new = {k["id"]: k["current"] for k in kk.json("key", "list", env=new_env)}
    assert as_new == {old["id"]: False, added["id"]: True}

    refused = kk.run("key", "remove", old["id"][:8], expect=2)
    assert "in use" in stderr_line(refused)
    kk.run("key", "remove", old["id"][:8], env=new_env)
    assert [k["id"] for k in kk.json("key", "list", env=new_env)] == [added["id"]]
    assert "wrong password" in stderr_line(kk.run("snapshots", expect=12))
    kk.run("snapshots", env=new_env)
    assert "no key" in stderr_line(kk.run("key", "remove", "ffff", env=new_env, expect=2))


# -- hostile and damaged key files (issue #11) -------------------------------------------------


def _key_names(kk: KK) -> list[str]:
    return sorted(o.name for o in kk.repo.backend().list("keys/"))


def _rewrite_key(kk: KK, name: str, change: dict[str, object]) -> None:
    backend = kk.repo.backend()
    body = json.loads(backend.load(name))
    body.update(change)
    backend.delete(name)
    backend.store(name, json.dumps(body).encode())


def _add_second_key(kk: KK, tmp_path: Path) -> str:
    """A second key for the same password, sorted before the first (so it is tried first)."""
    (tmp_path / "same-pw").write_text(kk.password)
    kk.run("key", "add", "--new-password-file", str(tmp_path / "same-pw"))
    first, second = _key_names(kk)
    return first


@pytest.mark.parametrize(
    "change",
    [
        {"kdf": {"algorithm": "argon2id", "time_cost": 1, "memory_kib": 4 * 1024 * 1024, "parallelism": 1}},
        {"kdf": {"algorithm": "argon2id", "time_cost": 10**6, "memory_kib": 8192, "parallelism": 1}},
        {"kdf": ["argon2id", 1, 8192, 1]},
        {"kdf": {"algorithm": "argon2id", "time_cost": "1", "memory_kib": 8192, "parallelism": 1}},
        {"kdf": {"algorithm": "scrypt", "n": 1}},
        {"salt": 5},
        {"data": "not base64 !"},
        {"data": base64.b64encode(b"short").decode()},
    ],
    ids=["argon2-4GiB", "time-cost", "kdf-list", "kdf-string", "kdf-other", "salt-int", "data-garbage", "data-short"],
)
def test_a_malformed_key_file_is_skipped_with_a_warning(kk: KK, tmp_path: Path, change: dict[str, object]) -> None:
    init_fast(kk.repo, kk.password)
    bad = _add_second_key(kk, tmp_path)
    _rewrite_key(kk, bad, change)
    proc = kk.run("snapshots")  # opens through the intact key
    err = proc.stderr.decode()
    assert "Traceback" not in err and f"key file {bad} is damaged" in err, err
    assert [k["damaged"] is not None for k in kk.json("key", "list")] == [True, False]


def test_a_key_file_that_is_not_an_object_is_skipped(kk: KK, tmp_path: Path) -> None:
    init_fast(kk.repo, kk.password)
    bad = _add_second_key(kk, tmp_path)
    backend = kk.repo.backend()
    backend.delete(bad)
    backend.store(bad, b'["a", "msgpack", "list"]')
    assert f"key file {bad} is damaged" in kk.run("snapshots").stderr.decode()


def test_only_malformed_key_files_is_a_clear_error(kk: KK) -> None:
    init_fast(kk.repo, kk.password)
    [only] = _key_names(kk)
    _rewrite_key(kk, only, {"kdf": {"algorithm": "argon2id", "time_cost": 1, "memory_kib": 2**32, "parallelism": 1}})
    line = stderr_line(kk.run("snapshots", expect=13))
    assert "no key file" in line and "memory_kib" in line, line


def test_key_files_keep_host_and_user_out_of_plaintext(kk: KK, tmp_path: Path) -> None:
    init_fast(kk.repo, kk.password)
    (tmp_path / "pw2").write_text("another password")
    kk.run("key", "add", "--new-password-file", str(tmp_path / "pw2"))
    backend = kk.repo.backend()
    for name in _key_names(kk):
        raw = backend.load(name).decode()
        body = json.loads(raw)
        assert set(body) == {"kdf", "salt", "data", "details"}, body
        # who and when are sealed in "details": no field names them, and the one plaintext
        # structure (the KDF parameters) does not hold them (the base64 fields are random bytes,
        # in which a short host name can turn up by chance)
        assert not [w for w in ("hostname", "username", "created") if f'"{w}"' in raw], raw
        assert socket.gethostname() not in json.dumps(body["kdf"])
    listed = kk.json("key", "list")
    assert {k["hostname"] for k in listed} == {socket.gethostname()} and all(k["created"] for k in listed)


def test_damaged_details_of_a_key_are_noticed(kk: KK) -> None:
    init_fast(kk.repo, kk.password)
    [only] = _key_names(kk)
    body = json.loads(kk.repo.backend().load(only))
    sealed = bytearray(base64.b64decode(body["details"]))
    sealed[-1] ^= 1
    _rewrite_key(kk, only, {"details": base64.b64encode(bytes(sealed)).decode()})
    err = kk.run("snapshots").stderr.decode()  # the master key itself is intact
    assert f"key file {only} is damaged" in err and "does not verify" in err, err


def test_version_1_key_files_still_open(kk: KK) -> None:
    """kubekeep 0.1 wrote host, user and time in plaintext and no sealed details."""
    init_fast(kk.repo, kk.password)
    [only] = _key_names(kk)
    backend = kk.repo.backend()
    body = json.loads(backend.load(only))
    del body["details"]
    body.update(created="2026-11-25T10:00:00.000000Z", hostname="oldhost", username="olduser")
    backend.delete(only)
    backend.store(only, json.dumps(body, indent=1).encode())
    proc = kk.run("snapshots")
    assert "warning" not in proc.stderr.decode()
    [listed] = kk.json("key", "list")
    assert (listed["hostname"], listed["username"], listed["damaged"]) == ("oldhost", "olduser", None)


def _run_on_a_terminal(kk: KK, args: list[str], env: dict[str, str], answers: list[bytes]) -> tuple[int, bytes]:
    """Run ``kubekeep ARGS`` with a pseudo-terminal as its controlling terminal, answering each
    password prompt in turn; the exit status and everything it wrote."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: kubekeep on the terminal
        try:
            os.execve(KUBEKEEP[0], [*KUBEKEEP, *args], env)
        finally:
            os._exit(127)
    out = b""
    pending = list(answers)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 1)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
        if pending and out.rstrip().endswith(b":"):
            _wait_for_no_echo(fd)  # a password prompt turns echo off (and flushes input) first
            os.write(fd, pending.pop(0) + b"\n")
            out += b"\n"
    done, status = os.waitpid(pid, os.WNOHANG)
    if not done:  # still waiting for input: the test fails rather than hangs
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), out


def _wait_for_no_echo(fd: int) -> None:
    deadline = time.monotonic() + 10
    while termios.tcgetattr(fd)[3] & termios.ECHO and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.05)


def test_key_add_on_a_terminal_asks_for_the_new_password(kk: KK, tmp_path: Path) -> None:
    """With the repository password in a file, ``key add`` on a terminal must ask for the new
    one (it used to add the file's password again)."""
    init_fast(kk.repo, kk.password)
    (tmp_path / "pw").write_text(kk.password)
    env = {k: v for k, v in kk.env.items() if k != "KUBEKEEP_PASSWORD"}
    env["KUBEKEEP_PASSWORD_FILE"] = str(tmp_path / "pw")
    code, out = _run_on_a_terminal(kk, ["key", "add"], env, [b"typed new password"] * 2)
    assert code == 0, out
    assert out.count(b"new password") == 2, out
    as_new = {k["current"] for k in kk.json("key", "list", env={"KUBEKEEP_PASSWORD": "typed new password"})}
    assert as_new == {True, False}
