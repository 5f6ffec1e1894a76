"""A real S3-compatible server (MinIO, built from its pinned Go module) on loopback, as a subprocess.

Used by the ``s3_*`` fixtures in ``tests.support.s3_fixtures``; usable on its own::

    with running_s3_server() as server:
        client = s3_client(server)
        bucket = create_lock_bucket(client)             # versioning + Object Lock
        backup = server.with_user("backup", policy)     # credentials scoped by an IAM policy
        prune = create_user(server, "prune", policy)    # the same, as a function

The server is ``testenv.build.ensure_minio()``'s ``minio`` (single node, single drive, in a
temporary directory, console off), started with root credentials; it always checks signatures,
so made-up keys are refused with ``InvalidAccessKeyId`` as on AWS. Users with IAM policies are
created through MinIO's admin API by ``minio-users``, built with it. Why MinIO: testenv/README.md.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import ClientError

from testenv import build
from testenv.processes import ManagedProcess

HOST = "127.0.0.1"
ACCESS_KEY = "kubekeep-test-access"
SECRET_KEY = "kubekeep-test-secret"
REGION = "us-east-1"


@dataclass(frozen=True)
class S3Server:
    """Where the server answers and with which credentials (the root's, or a user's from
    :meth:`with_user`)."""

    endpoint_url: str
    access_key: str
    secret_key: str
    region: str
    #: True: the server checks every request's signature (MinIO always does)
    require_auth: bool = True
    #: the root credentials and the ``minio-users`` tool, which :meth:`with_user` needs
    root_access_key: str = ""
    root_secret_key: str = ""
    users_tool: Path | None = None

    def backend_options(self) -> dict[str, Any]:
        """Keyword arguments for ``S3Backend`` / ``open_backend`` pointing at this server."""
        return {
            "endpoint_url": self.endpoint_url,
            "region": self.region,
            "access_key": self.access_key,
            "secret_key": self.secret_key,
        }

    @property
    def host_port(self) -> str:
        """``127.0.0.1:PORT`` of the endpoint."""
        return self.endpoint_url.removeprefix("http://")

    def with_user(self, name: str, policy: str | Mapping[str, Any]) -> S3Server:
        """Create the user ``name`` (a fresh secret) whose only access is ``policy`` (an IAM
        policy document, JSON text or a mapping); return this server with its credentials.

        The policy is stored under the user's name; calling again with the same name replaces
        the policy and the secret. MinIO's users need ``name`` of 3 or more characters.
        """
        if self.users_tool is None or not self.root_access_key:
            raise RuntimeError("with_user needs the server's root credentials (an S3Server from running_s3_server)")
        document = policy if isinstance(policy, str) else json.dumps(policy)
        secret = secrets.token_hex(16)
        env = {
            **_clean_env(),
            "MINIO_ROOT_USER": self.root_access_key,
            "MINIO_ROOT_PASSWORD": self.root_secret_key,
        }
        proc = subprocess.run(
            [str(self.users_tool), self.host_port, name, secret],
            input=document,
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"creating S3 user {name!r} failed: {proc.stderr.strip() or proc.stdout.strip()}")
        return replace(self, access_key=name, secret_key=secret)


def create_user(server: S3Server, name: str, policy: str | Mapping[str, Any]) -> S3Server:
    """``server.with_user(name, policy)``: the user ``name`` limited by the IAM ``policy``."""
    return server.with_user(name, policy)


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _clean_env() -> dict[str, str]:
    """The environment without the caller's AWS and MinIO settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MINIO_", "MC_"))}


#: Straight to loopback, whatever ``http_proxy`` says.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _ready(endpoint: str) -> bool:
    try:
        with _DIRECT.open(f"{endpoint}/minio/health/ready", timeout=1) as answer:
            return int(answer.status) == 200
    except (urllib.error.HTTPError, OSError):
        return False


@contextlib.contextmanager
def running_s3_server(*, timeout_s: float = 60.0, workdir: Path | None = None) -> Iterator[S3Server]:
    """Start MinIO on a free loopback port (data and log in a temporary directory, or in
    ``workdir``); stop it (SIGTERM, then SIGKILL) on exit. The pinned MinIO is built first
    if the cache has none (``testenv.build.ensure_minio``).

    No region is configured, so the server takes requests signed for any region.
    """
    tools = build.ensure_minio()
    with contextlib.ExitStack() as stack:
        base = workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="kubekeep-minio-")))
        env = {
            **_clean_env(),
            "MINIO_ROOT_USER": ACCESS_KEY,
            "MINIO_ROOT_PASSWORD": SECRET_KEY,
            "MINIO_BROWSER": "off",
            "MINIO_UPDATE": "off",
        }
        last_error = "did not start"
        for attempt in range(3):  # the port may be taken between free_port() and bind
            port = free_port()
            data = base / f"data-{attempt}"
            data.mkdir(parents=True, exist_ok=True)
            proc = ManagedProcess(
                name="minio",
                argv=[str(tools["minio"]), "server", "--quiet", "--address", f"{HOST}:{port}", str(data)],
                log_path=base / f"minio-{attempt}.log",
                env=env,
                die_with_parent=True,
            )
            proc.start()
            try:
                endpoint = f"http://{HOST}:{port}"
                deadline = time.monotonic() + timeout_s
                while proc.alive() and time.monotonic() < deadline:
                    if _ready(endpoint):
                        yield S3Server(
                            endpoint,
                            ACCESS_KEY,
                            SECRET_KEY,
                            REGION,
                            root_access_key=ACCESS_KEY,
                            root_secret_key=SECRET_KEY,
                            users_tool=tools["minio-users"],
                        )
                        return
                    time.sleep(0.05)
                last_error = proc.log_tail() or ("timed out" if proc.alive() else f"exit code {proc.exit_code()}")
            finally:
                proc.stop()
    raise RuntimeError(f"the S3 test server (MinIO) did not start: {last_error}")


def s3_client(server: S3Server) -> Any:
    """A boto3 S3 client (untyped) with the server's credentials."""
    return boto3.client(
        "s3",
        endpoint_url=server.endpoint_url,
        region_name=server.region,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
    )


def create_lock_bucket(
    client: Any,
    name: str | None = None,
    *,
    default_mode: str | None = None,
    default_days: int | None = None,
) -> str:
    """Create a bucket with Object Lock enabled (so versioning on); return its name.

    ``default_mode`` (``"GOVERNANCE"`` or ``"COMPLIANCE"``) with ``default_days`` sets a
    default retention for new object versions; without, versions are locked only when a
    request asks for it (``ObjectLockMode`` / ``ObjectLockRetainUntilDate`` or
    ``put_object_retention``).
    """
    bucket = name or f"kk-lock-{uuid.uuid4().hex[:16]}"
    client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    if default_mode is not None:
        if default_days is None:
            raise ValueError("default_mode needs default_days")
        client.put_object_lock_configuration(
            Bucket=bucket,
            ObjectLockConfiguration={
                "ObjectLockEnabled": "Enabled",
                "Rule": {"DefaultRetention": {"Mode": default_mode, "Days": default_days}},
            },
        )
    return bucket


def remove_bucket(client: Any, bucket: str) -> bool:
    """Delete every object version and delete marker (bypassing governance retention; versions
    under compliance retention or a legal hold stay), then the bucket.

    Returns whether the bucket is gone. A bucket left behind (still locked) disappears with
    the server's temporary directory at the end of the session.
    """
    try:
        paginator = client.get_paginator("list_object_versions")
        for page in paginator.paginate(Bucket=bucket):
            for item in (*page.get("Versions", ()), *page.get("DeleteMarkers", ())):
                with contextlib.suppress(ClientError):
                    client.delete_object(
                        Bucket=bucket, Key=item["Key"], VersionId=item["VersionId"], BypassGovernanceRetention=True
                    )
        client.delete_bucket(Bucket=bucket)
    except ClientError:
        return False
    return True


def _arn(bucket: str, path: str = "") -> str:
    return f"arn:aws:s3:::{bucket}{'/' + path if path else ''}"


#: What neither the backup nor the prune credentials may do to the bucket: weaken its
#: protection (versioning, Object Lock configuration, policy) or remove it.
BUCKET_ADMIN_ACTIONS: tuple[str, ...] = (
    "s3:PutBucketVersioning",
    "s3:PutBucketObjectLockConfiguration",
    "s3:PutBucketPolicy",
    "s3:DeleteBucketPolicy",
    "s3:DeleteBucket",
)


def backup_policy(bucket: str, prefix: str) -> dict[str, Any]:
    """The "backup" credentials of a repository at ``s3://bucket/prefix``: read, write, list
    (versions too), read and set object retention, read the bucket's Object Lock configuration;
    delete only lock files (``<prefix>/locks/*``); never bypass governance retention nor change
    the bucket's versioning, lock configuration or policy (denied outright)."""
    prefix = prefix.strip("/")
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": [
                    "s3:ListBucket",
                    "s3:ListBucketVersions",
                    "s3:GetBucketLocation",
                    "s3:GetBucketVersioning",
                    "s3:GetBucketObjectLockConfiguration",
                ],
                "Resource": [_arn(bucket)],
            },
            {
                "Effect": "Allow",
                "Action": [
                    "s3:GetObject",
                    "s3:GetObjectVersion",
                    "s3:PutObject",
                    "s3:GetObjectRetention",
                    "s3:PutObjectRetention",
                    "s3:GetObjectLegalHold",
                ],
                "Resource": [_arn(bucket, f"{prefix}/*")],
            },
            {
                "Effect": "Allow",
                "Action": ["s3:DeleteObject", "s3:DeleteObjectVersion"],
                "Resource": [_arn(bucket, f"{prefix}/locks/*")],
            },
            {
                "Effect": "Deny",
                "Action": ["s3:BypassGovernanceRetention", *BUCKET_ADMIN_ACTIONS],
                "Resource": [_arn(bucket), _arn(bucket, "*")],
            },
        ],
    }


def prune_policy(bucket: str, prefix: str) -> dict[str, Any]:
    """The "prune" credentials: the backup credentials' rights, and deleting any object or
    version under ``<prefix>/`` (which Object Lock still refuses while a version is retained);
    still no governance bypass and no change to the bucket's protection."""
    policy = backup_policy(bucket, prefix)
    policy["Statement"][2]["Resource"] = [_arn(bucket, f"{prefix.strip('/')}/*")]
    return policy
