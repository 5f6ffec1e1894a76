"""The YAML emitter: every value survives a round trip through libyaml and PyYAML's pure
loader, and the output reads like ``kubectl get -o yaml``."""

from __future__ import annotations

import random
from typing import Any

import pytest
import yaml

from kubekeep.manifests import serialization, yaml_reader

TRICKY_STRINGS = [
    "",
    " ",
    "  lead",
    "trail ",
    "yes",
    "No",
    "on",
    "OFF",
    "y",
    "n",
    "null",
    "~",
    "true",
    "False",
    "0755",
    "1.5",
    "1e3",
    ".5",
    ".inf",
    "-.inf",
    ".nan",
    "0x1f",
    "1_000",
    "12:30",
    "2026-01-01",
    "2026-01-01T00:00:00Z",
    "-",
    "- item",
    "? q",
    ": c",
    "a: b",
    "a:",
    "a #b",
    "#c",
    "&a",
    "*a",
    "!tag",
    "|",
    ">",
    "'",
    '"',
    "%x",
    "@x",
    "`x",
    "{a}",
    "[a]",
    "a,b",
    "<<",
    "=",
    "a\tb",
    "multi\nline\n",
    "multi\nline",
    "\nleading newline",
    "  indented\nblock\n",
    "\tindented\n",
    "trailing blank\n\n",
    "ends with spaces   \nnext\n",
    "line\n   \nwith blank-ish\n",
    "cr\r\nlf",
    "nel\x85x",
    "ls\u2028x",
    "ps\u2029x",
    "bom\ufeffx",
    "del\x7fx",
    "c1\x9bx",
    "nul\x00x",
    "bell\x07",
    "nonchar\ufffex",
    "unicode é ✓ 😀",
    "back\\slash",
    'quote"d',
    'k:{"port":80}',
    "registry.example/app:1.0",
    "system:masters",
    "f:metadata",
    "app.kubernetes.io/name",
    "/etc/x",
    "x" * 2000,
    "word with  two spaces",
    "a - b",
    "-1",
    "+1",
    "0",
    "00",
    "0o17",
    "0b101",
    "1:2:3",
]
KEYS = [
    "a",
    "app.kubernetes.io/name",
    "f:spec",
    ".",
    'k:{"port":80,"protocol":"TCP"}',
    "yes",
    "1",
    "",
    " sp",
    "with space",
    "x" * 1500,
    "line\nbreak",
    "é",
]


def _random_value(rng: random.Random, depth: int) -> Any:
    kind = rng.randrange(9 if depth < 4 else 6)
    if kind == 0:
        return rng.choice(TRICKY_STRINGS)
    if kind == 1:
        return "".join(rng.choice("ab \n\t:#-'\"\\é\x85\u2028") for _ in range(rng.randrange(12)))
    if kind == 2:
        return rng.choice([0, -1, 7, 2**63, -(2**70), 1.5, -0.0, 1e20, 1e-7, 3.0, 123456789.125])
    if kind == 3:
        return rng.choice([True, False, None])
    if kind == 4:
        return rng.choice([{}, []])
    if kind == 5:
        return rng.choice(KEYS)
    if kind in (6, 7):
        return {
            rng.choice(KEYS + TRICKY_STRINGS[:20]): _random_value(rng, depth + 1) for _ in range(rng.randrange(1, 5))
        }
    return [_random_value(rng, depth + 1) for _ in range(rng.randrange(1, 4))]


@pytest.mark.parametrize("value", TRICKY_STRINGS)
def test_every_tricky_string_round_trips(value: str) -> None:
    for doc in ({"k": value}, [value], {value: 1} if "\n" not in value else {"k": [value]}):
        text = serialization.dump(doc)
        assert serialization.load(text) == doc, text
        assert yaml.load(text, Loader=yaml.SafeLoader) == doc, text  # the pure-Python reader too


def test_random_documents_round_trip() -> None:
    rng = random.Random(20261125)
    for _ in range(3000):
        doc = _random_value(rng, 0)
        text = serialization.dump(doc)
        assert serialization.load(text) == doc, text


def test_output_reads_like_kubectl() -> None:
    obj = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "app", "labels": {"app.kubernetes.io/name": "web", "enabled": "true"}},
        "data": {"app.properties": "a = 1\nb = 2\n", "LOG": "info", "empty": ""},
        "spec": {"ports": [{"port": 80, "name": "http"}], "tags": [], "sel": {}},
    }
    assert serialization.dump(obj).decode() == (
        "apiVersion: v1\n"
        "kind: ConfigMap\n"
        "metadata:\n"
        "  name: app\n"
        "  labels:\n"
        "    app.kubernetes.io/name: web\n"
        '    enabled: "true"\n'
        "data:\n"
        "  app.properties: |\n"
        "    a = 1\n"
        "    b = 2\n"
        "  LOG: info\n"
        '  empty: ""\n'
        "spec:\n"
        "  ports:\n"
        "  - port: 80\n"
        "    name: http\n"
        "  tags: []\n"
        "  sel: {}\n"
    )


def test_scalars_at_top_level_and_refusal_of_non_json_types() -> None:
    assert serialization.load(serialization.dump("yes")) == "yes"
    assert serialization.load(serialization.dump(None)) is None
    with pytest.raises(TypeError):
        serialization.dump({"when": object()})


def test_the_fast_reader_agrees_with_libyaml_on_what_dump_writes() -> None:
    rng = random.Random(7)
    read = 0
    for _ in range(3000):
        doc = _random_value(rng, 0)
        text = serialization.dump(doc).decode()
        try:
            value = yaml_reader.read(text)
        except yaml_reader.NotOurs:
            continue  # load() falls back to libyaml (top-level scalars, very long keys)
        read += 1
        assert repr(value) == repr(yaml.load(text, Loader=yaml.CSafeLoader)), text
    assert read > 800  # the rest are mostly top-level scalars


@pytest.mark.parametrize(
    "text",
    [
        "a:\n  - 1\n  - 2\n",  # indented sequence (kubectl writes these)
        "a: {b: 1}\n",  # flow mapping
        "# comment\na: 1\n",
        "a: 2026-01-01\n",  # a date: libyaml makes it a date, we must not say "str"
        "a: 0o17\n",
        "a: yes\n",
        "a: 'single'\n",
        "a: >\n  folded\n",
        "a: &x 1\nb: *x\n",
        "a: 1",
        'a: "\\/"\n',
        "---\na: 1\n",
    ],
)
def test_other_yaml_is_left_to_libyaml(text: str) -> None:
    with pytest.raises(yaml_reader.NotOurs):
        yaml_reader.read(text)
    assert serialization.load(text) == yaml.load(text, Loader=yaml.CSafeLoader)
