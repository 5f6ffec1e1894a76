"""Registry credentials, found the way container tools find them.

In order: ``KUBEKEEP_REGISTRY_USERNAME`` with ``KUBEKEEP_REGISTRY_PASSWORD`` (or
``KUBEKEEP_REGISTRY_PASSWORD_FILE``); then the Docker config file
(``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``): a credential helper named for
the registry in ``credHelpers``, else an ``auths`` entry (``auth``, ``username``/``password`` or
``identitytoken``), else the ``credsStore`` helper; else none (anonymous). Helpers are the
``docker-credential-NAME`` programs on PATH, asked with ``get``.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubekeep.errors import StorageError, UsageError

USERNAME_ENV = "KUBEKEEP_REGISTRY_USERNAME"
PASSWORD_ENV = "KUBEKEEP_REGISTRY_PASSWORD"
PASSWORD_FILE_ENV = "KUBEKEEP_REGISTRY_PASSWORD_FILE"
#: a credential helper that answers with this user name hands out an identity (refresh) token
_TOKEN_USER = "<token>"
_HELPER_TIMEOUT_S = 30.0
#: Docker Hub's names: `docker login` files its credentials under index.docker.io
DOCKER_HUB = ("docker.io", "index.docker.io", "registry-1.docker.io")


@dataclass(frozen=True, slots=True)
class Credentials:
    """A user name and password, or an identity token (an OAuth2 refresh token); ``source``
    says where they came from, for error messages."""

    username: str = ""
    password: str = ""
    identity_token: str = ""
    source: str = "none"

    def __repr__(self) -> str:  # never print secrets
        return f"Credentials(username={self.username!r}, source={self.source!r})"

    @property
    def anonymous(self) -> bool:
        return not (self.username or self.identity_token)


ANONYMOUS = Credentials()


def docker_config_path() -> Path:
    base = os.environ.get("DOCKER_CONFIG")
    return Path(base) / "config.json" if base else Path.home() / ".docker" / "config.json"


def _host_key(key: str) -> str:
    """``https://host:5000/v1/`` -> ``host:5000``: how ``auths`` keys name a registry."""
    key = key.strip()
    for scheme in ("https://", "http://"):
        if key.startswith(scheme):
            key = key[len(scheme) :]
    return key.split("/", 1)[0].lower()


def find(host: str) -> Credentials:
    """The credentials for the registry ``host`` (``name[:port]``)."""
    username = os.environ.get(USERNAME_ENV, "")
    if username:
        password = os.environ.get(PASSWORD_ENV, "")
        path = os.environ.get(PASSWORD_FILE_ENV, "")
        if path:
            try:
                password = Path(path).read_text().splitlines()[0] if Path(path).stat().st_size else ""
            except OSError as exc:
                raise UsageError(f"cannot read {PASSWORD_FILE_ENV} {path}: {exc.strerror}") from None
        return Credentials(username, password, source=USERNAME_ENV)
    return from_docker_config(host, docker_config_path())


def from_docker_config(host: str, path: Path) -> Credentials:
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        return ANONYMOUS
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read the Docker config {path}: {exc}") from None
    if not isinstance(config, dict):
        raise UsageError(f"the Docker config {path} is not a JSON object")
    host = host.lower()
    names = DOCKER_HUB if host in DOCKER_HUB else (host,)
    helpers = config.get("credHelpers")
    if isinstance(helpers, dict):
        for name in names:
            if isinstance(helpers.get(name), str):
                return from_helper(str(helpers[name]), name)
    auths = config.get("auths")
    if isinstance(auths, dict):
        for key, entry in auths.items():
            if isinstance(key, str) and _host_key(key) in names and isinstance(entry, dict):
                found = _from_auth_entry(entry, f"{path} ({key})")
                if not found.anonymous:
                    return found
    store = config.get("credsStore")
    if isinstance(store, str) and store:
        return from_helper(store, host, missing_ok=True)
    return ANONYMOUS


def _from_auth_entry(entry: dict[str, Any], source: str) -> Credentials:
    if isinstance(entry.get("identitytoken"), str) and entry["identitytoken"]:
        return Credentials(identity_token=entry["identitytoken"], source=source)
    auth = entry.get("auth")
    if isinstance(auth, str) and auth:
        try:
            user, sep, password = base64.b64decode(auth, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise UsageError(f"the 'auth' of {source} is not base64 of user:password") from None
        if not sep:
            raise UsageError(f"the 'auth' of {source} is not base64 of user:password")
        return Credentials(user, password, source=source)
    name, secret = entry.get("username"), entry.get("password")
    if isinstance(name, str) and name and isinstance(secret, str):
        return Credentials(name, secret, source=source)
    return ANONYMOUS


def from_helper(name: str, host: str, *, missing_ok: bool = False) -> Credentials:
    """Ask ``docker-credential-NAME get`` for ``host``'s credentials."""
    program = shutil.which(f"docker-credential-{name}")
    if program is None:
        if missing_ok:
            return ANONYMOUS  # a credsStore of the desktop that is not here: anonymous, as docker
        raise UsageError(f"the credential helper docker-credential-{name} named for {host} is not on PATH")
    try:
        done = subprocess.run(
            [program, "get"], input=host, capture_output=True, text=True, timeout=_HELPER_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise StorageError(f"the credential helper docker-credential-{name} failed for {host}: {exc}") from None
    if done.returncode != 0:
        if "credentials not found" in done.stdout.lower() + done.stderr.lower():
            return ANONYMOUS
        detail = " ".join((done.stderr or done.stdout).split())[:200]
        raise StorageError(f"the credential helper docker-credential-{name} failed for {host}: {detail}")
    try:
        answer = json.loads(done.stdout)
        user, secret = str(answer["Username"]), str(answer["Secret"])
    except (ValueError, KeyError, TypeError):
        raise StorageError(f"the credential helper docker-credential-{name} gave no credentials for {host}") from None
    source = f"docker-credential-{name}"
    if user == _TOKEN_USER:
        return Credentials(identity_token=secret, source=source)
    return Credentials(user, secret, source=source)
