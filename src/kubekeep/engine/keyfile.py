"""Key files (``keys/<id>``): one password's wrapping of the master key, validated before use.

A key file is plaintext JSON that anyone with write access to the storage can change, and it is
read before any key is known: every field is type- and range-checked before it reaches Argon2id
(whose memory and time cost an attacker would otherwise choose), and a malformed key file is
skipped with a reason rather than stopping the others. Version 2 keeps the creator's host and
user name out of plaintext: they are sealed under the master key together with a digest of the
wrapping fields, so once any key opens the repository every key file can be verified
(docs/format.md, "Keys").
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NotRequired, TypedDict

import blake3
import msgpack

from kubekeep import errors
from kubekeep.engine.crypto import MASTER_KEY_SIZE, OVERHEAD, Cipher, MasterKey, derive_key

ALGORITHM = "argon2id"
#: Argon2id bounds a key file may ask for. The default costs 64 MiB and about 0.2 s on two
#: cores; these allow raising it 16x (1 GiB) while refusing what would exhaust a helper pod's or
#: a small node's memory or stall an open for minutes.
MAX_MEMORY_KIB = 1024 * 1024
MAX_TIME_COST = 64
MAX_PARALLELISM = 16
#: Argon2 needs at least this much memory per lane (KiB)
MIN_KIB_PER_LANE = 8
SALT_SIZES = range(16, 65)
#: nonce + master key + tag
WRAPPED_SIZE = OVERHEAD + MASTER_KEY_SIZE
#: a key file is a few hundred bytes; anything much larger is not one
MAX_KEY_FILE_BYTES = 64 * 1024
DETAILS_AAD = b"kubekeep key details"
WRAP_AAD = b"kubekeep master key"
_V1_DETAILS = ("created", "hostname", "username")
_FIELDS = {"kdf", "salt", "data", "details", *_V1_DETAILS}
#: bytes of random salt new key files get
SALT_SIZE = 16


class KdfBody(TypedDict):
    """A key file's ``kdf`` object."""

    algorithm: str
    time_cost: int
    memory_kib: int
    parallelism: int


class KeyFileBody(TypedDict):
    """A key file as written (JSON; binary fields in base64). Version 1 wrote no ``details``
    but the three fields of :class:`DetailsBody` in plaintext; they are read, never written."""

    kdf: KdfBody
    salt: str
    data: str
    #: version 2: :class:`DetailsBody` in msgpack, sealed under the master key
    details: NotRequired[str]


class DetailsBody(TypedDict):
    """The creator's details sealed in a version-2 key file."""

    created: str
    hostname: str
    username: str


@dataclass(frozen=True)
class KdfParams:
    time_cost: int
    memory_kib: int
    parallelism: int
    algorithm: str = ALGORITHM

    @classmethod
    def from_body(cls, body: object) -> KdfParams:
        """Validated parameters; :class:`errors.IntegrityError` saying what is wrong otherwise."""
        if not isinstance(body, dict):
            raise errors.IntegrityError("kdf is not an object")
        if body.get("algorithm") != ALGORITHM:
            raise errors.IntegrityError(f"unsupported key derivation {str(body.get('algorithm'))[:40]!r}")
        values: dict[str, int] = {}
        for k in ("time_cost", "memory_kib", "parallelism"):
            v = body.get(k)
            if type(v) is not int:
                raise errors.IntegrityError(f"kdf {k} is not an integer")
            values[k] = v
        params = cls(time_cost=values["time_cost"], memory_kib=values["memory_kib"], parallelism=values["parallelism"])
        params.validate()
        return params

    def validate(self) -> None:
        if not 1 <= self.parallelism <= MAX_PARALLELISM:
            raise errors.IntegrityError(f"kdf parallelism {self.parallelism} is outside 1..{MAX_PARALLELISM}")
        if not 1 <= self.time_cost <= MAX_TIME_COST:
            raise errors.IntegrityError(f"kdf time_cost {self.time_cost} is outside 1..{MAX_TIME_COST}")
        if not MIN_KIB_PER_LANE * self.parallelism <= self.memory_kib <= MAX_MEMORY_KIB:
            raise errors.IntegrityError(
                f"kdf memory_kib {self.memory_kib} is outside {MIN_KIB_PER_LANE * self.parallelism}..{MAX_MEMORY_KIB}"
            )

    def to_body(self) -> KdfBody:
        return {
            "algorithm": self.algorithm,
            "time_cost": self.time_cost,
            "memory_kib": self.memory_kib,
            "parallelism": self.parallelism,
        }


@dataclass(frozen=True)
class KeyDetails:
    """Who made a key and when (``key list``)."""

    created: str
    hostname: str
    username: str


@dataclass(frozen=True)
class KeyFile:
    kdf: KdfParams
    salt: bytes
    wrapped: bytes
    #: version 2: the details sealed under the master key (None in version-1 key files)
    sealed_details: bytes | None
    #: version 1 wrote the details in plaintext (unauthenticated: shown, never trusted)
    plaintext_details: KeyDetails | None

    @classmethod
    def parse(cls, raw: bytes) -> KeyFile:
        """A validated key file; :class:`errors.IntegrityError` with the reason otherwise."""
        if len(raw) > MAX_KEY_FILE_BYTES:
            raise errors.IntegrityError(f"{len(raw)} bytes is too large for a key file")
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise errors.IntegrityError("not valid JSON") from None
        if not isinstance(body, dict):
            raise errors.IntegrityError("not a JSON object")
        unknown = set(body) - _FIELDS
        if unknown:
            raise errors.IntegrityError(f"unknown field {sorted(unknown)[0][:40]!r}")
        kdf = KdfParams.from_body(body.get("kdf"))
        salt = _b64(body, "salt")
        if len(salt) not in SALT_SIZES:
            raise errors.IntegrityError(f"salt of {len(salt)} bytes")
        wrapped = _b64(body, "data")
        if len(wrapped) != WRAPPED_SIZE:
            raise errors.IntegrityError(f"wrapped key of {len(wrapped)} bytes, not {WRAPPED_SIZE}")
        sealed = _b64(body, "details") if "details" in body else None
        plain = None
        if sealed is None:  # version 1 wrote these three in plaintext, always
            if not all(isinstance(body.get(k), str) for k in _V1_DETAILS):
                raise errors.IntegrityError("neither sealed details nor version 1's plaintext ones")
            plain = KeyDetails(body["created"][:64], body["hostname"][:256], body["username"][:256])
        return cls(kdf, salt, wrapped, sealed, plain)

    def unwrap(self, password: bytes) -> MasterKey | None:
        """The master key if ``password`` opens this key file, else None."""
        kek = derive_key(
            password,
            self.salt,
            time_cost=self.kdf.time_cost,
            memory_kib=self.kdf.memory_kib,
            parallelism=self.kdf.parallelism,
        )
        try:
            raw = Cipher(kek).decrypt(self.wrapped, WRAP_AAD, "key file")
        except errors.IntegrityError:
            return None
        return MasterKey.from_bytes(raw)

    def wrapping_digest(self) -> bytes:
        """BLAKE3 of the fields that wrap the master key: what the sealed details vouch for."""
        canonical = json.dumps(
            {
                "kdf": self.kdf.to_body(),
                "salt": base64.b64encode(self.salt).decode(),
                "data": base64.b64encode(self.wrapped).decode(),
            },
            sort_keys=True,
        )
        return blake3.blake3(canonical.encode()).digest()

    def details(self, master: MasterKey) -> KeyDetails | None:
        """The sealed details, verified under ``master``: this key file is then known to be the
        one its creator wrote. :class:`errors.IntegrityError` if they do not verify; None for a
        version-1 key file, which has nothing to verify."""
        if self.sealed_details is None:
            return None
        plain = master.cipher().decrypt(self.sealed_details, DETAILS_AAD + self.wrapping_digest(), "key file")
        try:
            d = msgpack.unpackb(plain)
            return KeyDetails(str(d["created"]), str(d["hostname"]), str(d["username"]))
        except (ValueError, KeyError, TypeError, msgpack.UnpackException):
            raise errors.IntegrityError("key file: its sealed details are malformed") from None

    def to_json(self) -> bytes:
        body: KeyFileBody = {
            "kdf": self.kdf.to_body(),
            "salt": base64.b64encode(self.salt).decode(),
            "data": base64.b64encode(self.wrapped).decode(),
        }
        if self.sealed_details is not None:
            body["details"] = base64.b64encode(self.sealed_details).decode()
        return json.dumps(body, indent=1).encode()

    def with_details(self, master: MasterKey, details: KeyDetails) -> KeyFile:
        sealed_body: DetailsBody = {
            "created": details.created,
            "hostname": details.hostname,
            "username": details.username,
        }
        packed = msgpack.packb(sealed_body)
        sealed = bytes(Cipher(master.encryption).encrypt(packed, DETAILS_AAD + self.wrapping_digest()))
        return KeyFile(self.kdf, self.salt, self.wrapped, sealed, None)


#: Argon2id defaults: about 0.1-0.3 s and 64 MiB on a 2-core machine (OWASP's second profile)
DEFAULT_KDF = KdfParams(time_cost=3, memory_kib=65536, parallelism=2)


def wrap(master: MasterKey, password: bytes, kdf: KdfParams = DEFAULT_KDF) -> KeyFile:
    """A new key file holding ``master`` under ``password`` (no details yet: :meth:`KeyFile.with_details`)."""
    kdf.validate()
    salt = secrets.token_bytes(SALT_SIZE)
    kek = derive_key(password, salt, time_cost=kdf.time_cost, memory_kib=kdf.memory_kib, parallelism=kdf.parallelism)
    return KeyFile(kdf, salt, bytes(Cipher(kek).encrypt(master.to_bytes(), WRAP_AAD)), None, None)


def kdf_params(value: KdfParams | dict[str, int | str] | None) -> KdfParams:
    """``value`` as validated parameters (a caller's choice: out of bounds is a usage error)."""
    if value is None:
        return DEFAULT_KDF
    if isinstance(value, KdfParams):
        value.validate()
        return value
    try:
        return KdfParams.from_body(value)
    except errors.IntegrityError as exc:
        raise errors.UsageError(f"key derivation parameters: {exc}") from None


def _b64(body: Mapping[str, object], field: str) -> bytes:
    value = body.get(field)
    if not isinstance(value, str):
        raise errors.IntegrityError(f"{field} is missing or not a string")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise errors.IntegrityError(f"{field} is not base64") from None
    if base64.b64encode(raw).decode() != value:  # unused bits set: not what a writer wrote
        raise errors.IntegrityError(f"{field} is not canonical base64")
    return raw
