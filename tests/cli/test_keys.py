"""Passwords: add a key, open with it, remove the old one (never the one in use)."""

from __future__ import annotations

from pathlib import Path

from tests.cli.helpers import KK, init_fast, stderr_line


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
