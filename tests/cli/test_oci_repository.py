"""A repository in a real OCI registry (tests/support/registry.py) through the CLI: the whole
cycle, copies from and to S3, and the one-line errors of wrong credentials, an unreachable
registry, a bad location and an unverified certificate."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from kubekeep.storage.oci import OciBackend
from tests.cli.conftest import s3_spec
from tests.cli.helpers import KK, RepoSpec, assert_same_tree, make_rich_tree, manifest, stderr_line
from tests.support.registry import Registry, running_registry
from tests.support.s3server import HOST, free_port

pytestmark = pytest.mark.oci


def oci_spec(registry: Registry, repository: str) -> RepoSpec:
    return RepoSpec(registry.location(repository), env=registry.env(), backend_options=registry.backend_options())


def test_backup_restore_prune_cycle(
    oci_registry: Registry, oci_repository: str, make_kk: Callable[..., KK], tmp_path: Path
) -> None:
    kk = make_kk(oci_spec(oci_registry, oci_repository))
    kk.run("init")
    src = tmp_path / "src"
    make_rich_tree(src, big_mib=3, small_files=60)
    first = kk.backup(src)
    before = manifest(src)
    (src / "big.bin").write_bytes((src / "big.bin").read_bytes()[: 1024 * 1024] + b"new tail" * 50_000)
    (src / "small" / "file_000.txt").unlink()
    second = kk.backup(src)
    after = manifest(src)
    assert {s["id"] for s in kk.json("snapshots")} == {first, second}

    out = tmp_path / "restore-first"
    kk.run("restore", first, "--to", str(out))
    assert_same_tree(before, manifest(out))

    data_before = kk.repo.size("data/")
    kk.run("forget", first)
    pruned = kk.run("prune", "--max-unused", "0%")
    assert "garbage collection" in pruned.stderr.decode()  # prune says the registry reclaims the space
    assert kk.repo.size("data/") < data_before
    oci_registry.garbage_collect()  # the registry now frees the blobs no manifest names

    kk.run("check", "--read-data")
    shutil.rmtree(kk.cache_dir)
    out = tmp_path / "restore-second"
    kk.run("restore", second, "--to", str(out), "--no-cache")
    assert_same_tree(after, manifest(out))


@pytest.mark.s3
def test_copy_s3_to_oci_and_back(
    oci_registry: Registry,
    oci_repository: str,
    make_kk: Callable[..., KK],
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    s3 = s3_spec(request.getfixturevalue("s3_server"), request.getfixturevalue("s3_bucket"))
    oci = oci_spec(oci_registry, oci_repository)
    back = s3_spec(request.getfixturevalue("s3_server"), request.getfixturevalue("s3_bucket"), "back")
    env = {**s3.env, **oci.env}
    src = tmp_path / "src"
    make_rich_tree(src, big_mib=2, small_files=20)
    at_s3, at_oci, at_back = (
        make_kk(spec, extra_env=env, cache=name) for spec, name in ((s3, "c1"), (oci, "c2"), (back, "c3"))
    )
    for runner in (at_s3, at_oci, at_back):
        runner.run("init")
    at_s3.backup(src)

    at_oci.run("copy", "--from-repo", s3.location, "--from-password-file", str(_password_file(tmp_path, at_s3)))
    at_back.run("copy", "--from-repo", oci.location, "--from-password-file", str(_password_file(tmp_path, at_oci)))
    for runner in (at_oci, at_back):
        assert len(runner.json("snapshots")) == 1
        out = tmp_path / f"restore-{runner.cache_dir.name}"
        runner.run("restore", "latest", "--to", str(out))
        assert_same_tree(manifest(src), manifest(out))


def _password_file(tmp_path: Path, runner: KK) -> Path:
    path = tmp_path / "source.pass"
    path.write_text(runner.password + "\n")
    return path


@pytest.mark.parametrize("which", ["oci_registry", "oci_token_registry"])
def test_wrong_credentials_are_one_line(
    which: str, oci_repository: str, make_kk: Callable[..., KK], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Basic credentials (htpasswd) and a token service's refusal alike: one line, non-zero."""
    registry: Registry = request.getfixturevalue(which)
    kk = make_kk(oci_spec(registry, oci_repository))
    proc = kk.run("init", expect=None, env={"KUBEKEEP_REGISTRY_PASSWORD": "not-the-password"})
    assert proc.returncode != 0
    line = stderr_line(proc)
    assert "refused the credentials" in line and registry.host in line
    proc = kk.run(
        "snapshots", expect=None, env={"KUBEKEEP_REGISTRY_USERNAME": None, "KUBEKEEP_REGISTRY_PASSWORD": None}
    )
    assert proc.returncode != 0
    assert ("needs credentials" if which == "oci_registry" else "refused the credentials") in stderr_line(proc)


def test_bearer_tokens_from_the_token_service(
    oci_token_registry: Registry, oci_repository: str, make_kk: Callable[..., KK], tmp_path: Path
) -> None:
    """The flow of Docker Hub, Harbor, GHCR: a 401 names the token service, which hands out a token."""
    assert oci_token_registry.token_requests is not None
    before = len(oci_token_registry.token_requests)
    kk = make_kk(oci_spec(oci_token_registry, oci_repository))
    kk.run("init")
    src = tmp_path / "src"
    make_rich_tree(src, big_mib=1, small_files=10)
    kk.backup(src)
    out = tmp_path / "out"
    kk.run("restore", "latest", "--to", str(out))
    assert_same_tree(manifest(src), manifest(out))
    asked = oci_token_registry.token_requests[before:]
    assert asked and set(asked) == {oci_token_registry.username}


def test_unreachable_bad_location_and_unverified_tls_are_one_line(
    oci_registry: Registry, oci_repository: str, make_kk: Callable[..., KK], tmp_path: Path
) -> None:
    nobody = make_kk(RepoSpec(f"oci://{HOST}:{free_port()}/backups/x", env={"KUBEKEEP_REGISTRY_USERNAME": "u"}))
    proc = nobody.run("snapshots", expect=None)
    assert proc.returncode != 0 and "cannot reach registry" in stderr_line(proc)

    for location in ("oci://", "oci://host", "oci://host/UPPER", "oci://bad_host!/repo", "oci://host/repo?x=1"):
        proc = make_kk(RepoSpec(location)).run("snapshots", expect=None)
        assert proc.returncode != 0 and location in stderr_line(proc)

    spec = oci_spec(oci_registry, oci_repository)
    no_ca = make_kk(RepoSpec(spec.location, env={k: v for k, v in spec.env.items() if k != "KUBEKEEP_REGISTRY_CA"}))
    proc = no_ca.run("snapshots", expect=None)
    assert proc.returncode != 0 and "TLS verification failed" in stderr_line(proc)


def test_plain_http_only_when_asked(make_kk: Callable[..., KK], tmp_path: Path) -> None:
    with running_registry(tls=False) as registry:
        spec = RepoSpec(registry.location("plain/repo"), env=registry.env())
        kk = make_kk(spec)
        proc = kk.run("init", expect=None)
        assert proc.returncode != 0 and "TLS" in stderr_line(proc)  # https is the default
        kk.run("--insecure-registry", "init")
        src = tmp_path / "src"
        make_rich_tree(src, big_mib=1, small_files=5)
        kk.backup(src, "--insecure-registry")
        assert len(kk.json("snapshots", env={"KUBEKEEP_INSECURE_REGISTRY": "1"})) == 1


def test_docker_config_credentials(oci_registry: Registry, oci_repository: str, tmp_path: Path) -> None:
    """Credentials from $DOCKER_CONFIG/config.json, as `docker login` leaves them."""
    import base64
    import json

    from kubekeep.storage.oci import credentials

    config = tmp_path / "docker"
    config.mkdir()
    auth = base64.b64encode(f"{oci_registry.username}:{oci_registry.password}".encode()).decode()
    (config / "config.json").write_text(json.dumps({"auths": {f"https://{oci_registry.host}/v1/": {"auth": auth}}}))
    found = credentials.from_docker_config(oci_registry.host, config / "config.json")
    assert (found.username, found.password) == (oci_registry.username, oci_registry.password)
    backend = OciBackend(oci_registry.host, oci_repository, ca_file=str(oci_registry.ca_file), credentials=found)
    try:
        backend.store("keys/k", b"key")
        assert backend.load("keys/k") == b"key"
    finally:
        backend.close()
