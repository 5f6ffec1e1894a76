"""Throw-away PKI for one test cluster, generated with ``cryptography``.

Two CAs, as kubeadm lays them out: one for etcd (server, peer and client certs)
and one for Kubernetes (apiserver serving cert, component and user client certs,
CSR signing). Plus the RSA key pair that signs ServiceAccount tokens.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = dt.timedelta(days=30)
_APISERVER_DNS = (
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)
_LOOPBACK_IPS = (ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"))


@dataclass(frozen=True)
class CertPair:
    """PEM files of one certificate and its private key."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class _Issuer:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def _name(common_name: str, orgs: tuple[str, ...] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attrs)


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _new_ca(common_name: str) -> _Issuer:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )  # fmt: skip
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return _Issuer(cert, key)


def _issue(
    issuer: _Issuer,
    common_name: str,
    *,
    orgs: tuple[str, ...] = (),
    server: bool = False,
    client: bool = False,
    dns: tuple[str, ...] = (),
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    usages = []
    if server:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    if client:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name, orgs))
        .issuer_name(issuer.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )  # fmt: skip
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
    )
    if server:
        names = dict.fromkeys(("localhost", *dns))
        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
        sans += [x509.IPAddress(ip) for ip in _LOOPBACK_IPS]
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(issuer.key, hashes.SHA256()), key


@dataclass(frozen=True)
class ClusterPKI:
    """Paths of every certificate and key of one test cluster."""

    directory: Path
    ca: CertPair
    etcd_ca: CertPair
    etcd_server: CertPair
    etcd_apiserver_client: CertPair
    etcd_client: CertPair
    apiserver: CertPair
    admin: CertPair
    readonly: CertPair
    controller_manager: CertPair
    scheduler: CertPair
    sa_private_key: Path
    sa_public_key: Path


#: Group and user name of the least-privilege identity.
READONLY_USER = "kubekeep-readonly"
READONLY_GROUP = "kubekeep:readonly"
ADMIN_USER = "kubekeep-admin"


def generate(directory: Path) -> ClusterPKI:
    """Create all certificates and keys for one cluster under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)

    def save_ca(name: str, issuer: _Issuer) -> CertPair:
        pair = CertPair(directory / f"{name}.crt", directory / f"{name}.key")
        pair.cert.write_bytes(_cert_pem(issuer.cert))
        _write_private(pair.key, _key_pem(issuer.key))
        return pair

    def save(name: str, issuer: _Issuer, cn: str, **kw: object) -> CertPair:
        cert, key = _issue(issuer, cn, **kw)  # type: ignore[arg-type]
        pair = CertPair(directory / f"{name}.crt", directory / f"{name}.key")
        pair.cert.write_bytes(_cert_pem(cert))
        _write_private(pair.key, _key_pem(key))
        return pair

    ca = _new_ca("kubekeep-testenv-ca")
    etcd_ca = _new_ca("kubekeep-testenv-etcd-ca")

    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    sa_private = directory / "sa.key"
    sa_public = directory / "sa.pub"
    _write_private(sa_private, _key_pem(sa_key))
    sa_public.write_bytes(
        sa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )

    return ClusterPKI(
        directory=directory,
        ca=save_ca("ca", ca),
        etcd_ca=save_ca("etcd-ca", etcd_ca),
        etcd_server=save("etcd-server", etcd_ca, "localhost", server=True, client=True),
        etcd_apiserver_client=save("apiserver-etcd-client", etcd_ca, "kube-apiserver", client=True),
        etcd_client=save("etcd-client", etcd_ca, "kubekeep-etcd-client", client=True),
        apiserver=save("apiserver", ca, "kube-apiserver", server=True, dns=_APISERVER_DNS),
        admin=save("admin", ca, ADMIN_USER, orgs=("system:masters",), client=True),
        readonly=save("readonly", ca, READONLY_USER, orgs=(READONLY_GROUP,), client=True),
        controller_manager=save("controller-manager", ca, "system:kube-controller-manager", client=True),
        scheduler=save("scheduler", ca, "system:kube-scheduler", client=True),
        sa_private_key=sa_private,
        sa_public_key=sa_public,
    )


@dataclass(frozen=True)
class ServerPKI:
    """A CA and one loopback server certificate it signed (a test server's TLS)."""

    ca: CertPair
    server: CertPair


def generate_server(directory: Path, common_name: str) -> ServerPKI:
    """A fresh CA and a server certificate for ``localhost``, 127.0.0.1 and ::1 under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    issuer = _new_ca(f"{common_name}-ca")
    ca = CertPair(directory / "ca.crt", directory / "ca.key")
    ca.cert.write_bytes(_cert_pem(issuer.cert))
    _write_private(ca.key, _key_pem(issuer.key))
    cert, key = _issue(issuer, common_name, server=True)
    server = CertPair(directory / "server.crt", directory / "server.key")
    server.cert.write_bytes(_cert_pem(cert))
    _write_private(server.key, _key_pem(key))
    return ServerPKI(ca, server)
