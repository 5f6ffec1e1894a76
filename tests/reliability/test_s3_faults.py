"""A faulty network in front of the S3 server (tests/support/faultproxy.py): connection
resets before and after the server acted, 500 and 503 answers, late, dribbled, stalled and
truncated answers. Every operation is retried to success or fails cleanly (a one-line error,
a non-zero exit), a truncated answer is never taken for the object, and the repository always
passes ``check --read-data`` afterwards."""

from __future__ import annotations

import json
import random
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kubekeep import api, errors
from kubekeep.engine.repository import Repository
from kubekeep.storage.s3 import S3Backend
from tests.cli.helpers import FAST_KDF, KK, RepoSpec
from tests.reliability.campaign import (
    Campaign,
    Figures,
    fail,
    file_digests,
    make_dataset,
    missing_files,
    time_limit,
    wrong_files,
)
from tests.support.faultproxy import Fault, FaultProxy, FaultRates
from tests.support.s3server import S3Server

pytestmark = [pytest.mark.reliability, pytest.mark.s3]

PASSWORD = "correct horse"
CI_RUNS = 3


def spec(server: S3Server, bucket: str, prefix: str, endpoint: str) -> RepoSpec:
    return RepoSpec(
        location=f"s3://{bucket}/{prefix}",
        env={
            "AWS_ACCESS_KEY_ID": server.access_key,
            "AWS_SECRET_ACCESS_KEY": server.secret_key,
            "AWS_DEFAULT_REGION": server.region,
            "KUBEKEEP_S3_ENDPOINT": endpoint,
        },
        backend_options={**server.backend_options(), "endpoint_url": endpoint},
    )


@pytest.fixture
def proxy(s3_server: S3Server) -> Iterator[FaultProxy]:
    with FaultProxy(s3_server.endpoint_url, seed=1, stall_s=3.0) as p:
        yield p


@pytest.fixture
def backend(proxy: FaultProxy, s3_server: S3Server, s3_bucket: str) -> Iterator[S3Backend]:
    b = S3Backend(s3_bucket, "repo", **{**s3_server.backend_options(), "endpoint_url": proxy.url})
    yield b
    b.close()


# -- the backend, one fault at a time --------------------------------------------------------------


def test_a_lost_answer_to_an_exclusive_store_is_not_a_conflict(backend: S3Backend, proxy: FaultProxy) -> None:
    """The server stores the key file, the answer is lost, botocore retries with If-None-Match
    and the server refuses: the store happened, so it succeeded (init used to fail here and
    leave a config without a key)."""
    proxy.schedule(Fault.RESET_AFTER)
    backend.store("keys/k1", b"the key", exclusive=True)
    assert proxy.injected[Fault.RESET_AFTER] == 1
    assert backend.load("keys/k1") == b"the key"
    with pytest.raises(errors.StorageError, match="already exists"):
        backend.store("keys/k1", b"another writer's key", exclusive=True)


def test_init_survives_a_lost_answer(proxy: FaultProxy, s3_server: S3Server, s3_bucket: str) -> None:
    repo_spec = spec(s3_server, s3_bucket, "repo", proxy.url)
    proxy.schedule(None, None, Fault.RESET_AFTER, Fault.RESET_AFTER)  # config and key file stores
    Repository.init(repo_spec.backend(), PASSWORD, kdf=FAST_KDF, no_cache=True).close()
    assert proxy.injected[Fault.RESET_AFTER] == 2
    Repository.open(repo_spec.backend(), PASSWORD, no_cache=True).close()


def test_a_truncated_answer_is_never_taken_for_the_object(backend: S3Backend, proxy: FaultProxy) -> None:
    data = random.Random(3).randbytes(2_000_000)
    backend.store("data/ab/pack", data)
    proxy.schedule(Fault.TRUNCATE)
    assert backend.load("data/ab/pack") == data
    proxy.schedule(Fault.TRUNCATE)
    assert backend.load("data/ab/pack", 1000, 500_000) == data[1000:501_000]
    proxy.schedule(*[Fault.TRUNCATE] * 20)
    with pytest.raises(errors.StorageError) as info:
        backend.load("data/ab/pack")
    assert "\n" not in str(info.value) and "data/ab/pack" in str(info.value)
    assert proxy.injected[Fault.TRUNCATE] >= 7


def test_a_body_cut_short_without_framing_is_retried(backend: S3Backend, proxy: FaultProxy) -> None:
    """An answer without Content-Length, ended by closing the connection early, looks whole to
    the HTTP client; the backend compares it with Content-Range (or the object's size) and
    tries again instead of handing back a short object."""
    data = random.Random(4).randbytes(300_000)
    backend.store("data/cd/pack", data)
    proxy.schedule(Fault.CUT_UNFRAMED)
    assert backend.load("data/cd/pack", 5, 200_000) == data[5:200_005]
    proxy.schedule(Fault.CUT_UNFRAMED)
    assert backend.load("data/cd/pack") == data
    proxy.schedule(Fault.CUT_UNFRAMED)
    assert backend.load("data/cd/pack", 100_000) == data[100_000:]
    assert proxy.injected[Fault.CUT_UNFRAMED] == 3


@pytest.mark.parametrize(
    "fault",
    [Fault.RESET_BEFORE, Fault.RESET_AFTER, Fault.ERROR_500, Fault.ERROR_503, Fault.DELAY, Fault.SLOW, Fault.TRUNCATE],
)
def test_each_operation_is_retried(backend: S3Backend, proxy: FaultProxy, fault: Fault) -> None:
    payload = b"x" * 100_000
    proxy.schedule(fault)
    backend.store("index/one", payload)
    proxy.schedule(fault)
    assert backend.load("index/one") == payload
    proxy.schedule(fault)
    assert backend.exists("index/one")
    proxy.schedule(fault)
    assert [o.name for o in backend.list("index/")] == ["index/one"]
    proxy.schedule(fault)
    backend.delete("index/one")
    assert not backend.exists("index/one")
    assert proxy.injected[fault] >= 1


def test_a_stalled_answer_times_out_and_is_retried(proxy: FaultProxy, s3_server: S3Server, s3_bucket: str) -> None:
    b = S3Backend(s3_bucket, "repo", read_timeout=1.0, **{**s3_server.backend_options(), "endpoint_url": proxy.url})
    try:
        b.store("snapshots/s", b"snapshot")
        proxy.schedule(Fault.STALL)
        started = time.monotonic()
        assert b.load("snapshots/s") == b"snapshot"
        assert time.monotonic() - started < 3.0  # the timeout, not the stall, ended the first try
        assert proxy.injected[Fault.STALL] == 1
    finally:
        b.close()


# -- the campaign ----------------------------------------------------------------------------------


def clean_failure(proc: Any, what: str, figures: Figures) -> None:
    """A failed command must say why in one line, its last, with no traceback (what it did before
    failing, e.g. forget's list of removed snapshots before its prune, may come first)."""
    err = proc.stderr.decode(errors="replace")
    lines = [line for line in err.splitlines() if line.strip()]
    errors_said = [line for line in lines if line.startswith("error:")]
    if "Traceback" in err or len(errors_said) != 1 or lines[-1] != errors_said[0]:
        raise fail("other_failures", f"{what} exited {proc.returncode} without a clean one-line error: {err[-800:]}")
    figures.clean_failures += 1


def one_run(server: S3Server, bucket: str, sources: list[Path], tmp: Path) -> Callable[[random.Random, Figures], None]:
    def run(rng: random.Random, figures: Figures) -> None:
        rate = rng.choice([0.05, 0.1, 0.2, 0.3])
        # with 1 or 2 attempts instead of 5 commands give up mid-way, which must leave a sound repository
        attempts = rng.choice([1, 2, 5])
        prefix = f"run-{figures.runs}-{rng.randrange(10**6)}"
        work = tmp / prefix
        with FaultProxy(
            server.endpoint_url, seed=rng.randrange(2**32), rates=FaultRates.uniform(rate), max_delay_s=0.3
        ) as proxy:
            faulty = spec(server, bucket, prefix, proxy.url)
            direct = spec(server, bucket, prefix, server.endpoint_url)
            try:
                Repository.init(faulty.backend(), PASSWORD, kdf=FAST_KDF, no_cache=True).close()
            except errors.KubekeepError:
                figures.faults += proxy.faults
                proxy.injected.clear()
                prefix += "-again"
                faulty = spec(server, bucket, prefix, proxy.url)
                direct = spec(server, bucket, prefix, server.endpoint_url)
                with proxy.paused():
                    Repository.init(faulty.backend(), PASSWORD, kdf=FAST_KDF, no_cache=True).close()
            kk = KK(faulty, password=PASSWORD, cache_dir=work / "cache", extra_env={"AWS_MAX_ATTEMPTS": str(attempts)})
            created: list[str] = []
            latest: Path | None = None  # the source of the newest snapshot
            for src in sources:
                proc = kk.run("--json", "backup", str(src), expect=None)
                if proc.returncode == 0:
                    created.append(str(json.loads(proc.stdout)["id"]))
                    latest = src
                else:
                    clean_failure(proc, f"backup at fault rate {rate}, {attempts} attempts", figures)
            out = work / "out"
            proc = kk.run("restore", "latest", "--to", str(out), expect=None)
            if proc.returncode != 0:
                clean_failure(proc, f"restore at fault rate {rate}, {attempts} attempts", figures)
            if latest is not None and out.exists():
                digests = file_digests(latest)
                if wrong := wrong_files(digests, out):
                    raise fail("wrong_restores", f"restore at fault rate {rate} wrote wrong bytes to {wrong[:5]}")
                if proc.returncode == 0 and (missing := missing_files(digests, out)):
                    raise fail("other_failures", f"restore at fault rate {rate} succeeded without {missing[:5]}")
            forgotten: set[str] = set()
            if len(created) > 1:
                proc = kk.run("forget", created[0], "--prune", expect=None)
                forgotten.add(created[0])
                if proc.returncode != 0:
                    clean_failure(proc, f"forget --prune at fault rate {rate}, {attempts} attempts", figures)
            proc = kk.run("check", "--read-data", expect=None)
            if proc.returncode != 0:
                clean_failure(proc, f"check at fault rate {rate}, {attempts} attempts", figures)
            figures.faults += proxy.faults

        repo = Repository.open(direct.backend(), PASSWORD, no_cache=True)
        try:
            report = api.check(repo, read_data=True)
            if not report.ok:
                raise fail(
                    "check_failures",
                    f"fault rate {rate}, {attempts} attempts: check --read-data: {'; '.join(report.errors[:3])}",
                )
            lost = set(created) - forgotten - set(repo.snapshot_ids())
            if lost:
                raise fail(
                    "other_failures", f"fault rate {rate}, {attempts} attempts: snapshot(s) lost: {sorted(lost)}"
                )
        finally:
            repo.close()
        shutil.rmtree(work, ignore_errors=True)

    return run


@pytest.mark.campaign
@pytest.mark.timeout(time_limit(CI_RUNS, setup_s=60, per_run_s=90))
def test_s3_fault_campaign(s3_server: S3Server, s3_bucket: str, tmp_path: Path, campaign_id: str) -> None:
    src0 = make_dataset(tmp_path / "src0", seed=51, big_kib=1024)
    src1 = tmp_path / "src1"
    shutil.copytree(src0, src1, symlinks=True)
    make_dataset(src1, seed=51, variant=1, big_kib=1024)
    Campaign("faulty network in front of S3", CI_RUNS, campaign_id).run(
        one_run(s3_server, s3_bucket, [src0, src1], tmp_path)
    )
