"""Names that carry terminal escape sequences reach the terminal escaped (issue #11); --json
keeps them exact."""

from __future__ import annotations

from pathlib import Path

from kubekeep.cli.terminal import safe
from tests.cli.helpers import KK, init_fast

NAMES = ["\x1b[31mred", "\x1b]0;owned\x07title", "rtl\u202etxt.exe", "new\nline"]


def test_safe_escapes_controls_and_bidi() -> None:
    assert safe("\x1b[31mred") == "\\x1b[31mred"
    assert safe("a\u202eb\x9bc\x7f") == "a\\u202eb\\x9bc\\x7f"
    assert safe("plain name ünïcode.txt") == "plain name ünïcode.txt"
    assert safe("not-utf8-\udcff") == "not-utf8-\\xff"


def test_ls_and_diff_escape_names(kk: KK, tmp_path: Path) -> None:
    init_fast(kk.repo, kk.password)
    src = tmp_path / "src"
    src.mkdir()
    first = kk.backup(src)
    for name in NAMES:
        (src / name).write_text("x")
    (src / "link").symlink_to("\x1b[2Jtarget")
    second = kk.backup(src)
    for args in (["ls", second, "-l"], ["ls", second], ["diff", first, second], ["snapshots"]):
        out = kk.run(*args).stdout
        assert b"\x1b" not in out and "\u202e".encode() not in out, (args, out)
    listed = kk.out("ls", second)
    assert "\\x1b[31mred" in listed and "new\\x0aline" in listed and "-> \\x1b[2Jtarget" in listed
    assert {e["path"] for e in kk.json("ls", second)} >= {f"/{n}" for n in NAMES}


def test_errors_quoting_a_name_escape_it(kk: KK, tmp_path: Path) -> None:
    init_fast(kk.repo, kk.password)
    src = tmp_path / "src"
    src.mkdir()
    snap = kk.backup(src)
    err = kk.run("ls", f"{snap}:/\x1b[2Jgone", expect=14).stderr
    assert b"\x1b[2J" not in err and b"\\x1b[2Jgone" in err, err


def test_summary_lines_escape_names(capsys: object) -> None:
    from kubekeep.cli.summary_cmd import _say

    _say("\nnamespace \x1b]0;owned\x07shop (3 objects)")
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    assert out == "\nnamespace \\x1b]0;owned\\x07shop (3 objects)\n"
