"""Fast tests of the testenv building blocks (no cluster, no Go build)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from testenv import build, kwok, pki, processes, seed, versions
from testenv.__main__ import parser


def test_versions_are_pinned_exactly() -> None:
    for name, value in versions.as_dict().items():
        assert value.startswith("v") and value.count(".") == 2, (name, value)
    assert versions.staging_version("v1.34.4") == "v0.34.4"
    assert versions.KUBERNETES_VERSION in versions.cache_key()


def test_helm_is_pinned_apart_from_the_control_plane(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert versions.HELM_VERSION.startswith("v") and versions.HELM_VERSION.count(".") == 2
    assert versions.HELM_VERSION not in versions.cache_key()  # bumping Helm rebuilds Helm only
    monkeypatch.setenv("KUBEKEEP_TESTENV_CACHE", str(tmp_path))
    assert build.helm_path() == tmp_path / f"helm-{versions.HELM_VERSION}" / "bin" / "helm"
    spec = build.helm_build()
    major = versions.HELM_VERSION.lstrip("v").split(".")[0]
    assert spec.packages == (f"helm.sh/helm/v{major}/cmd/helm",)
    assert f"require helm.sh/helm/v{major} {versions.HELM_VERSION}" in spec.go_mod(tmp_path)


def test_the_newer_kubernetes_is_pinned_apart_from_the_control_plane(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    newer = versions.NEWER_KUBERNETES_VERSION
    assert newer.startswith("v1.") and newer.count(".") == 2
    assert int(newer.split(".")[1]) > int(versions.KUBERNETES_VERSION.split(".")[1])  # another minor
    assert newer not in versions.cache_key()  # bumping it rebuilds it only
    monkeypatch.setenv("KUBEKEEP_TESTENV_CACHE", str(tmp_path))
    assert build.newer_kubernetes_dir() == tmp_path / f"kubernetes-{newer}"
    spec = build.newer_kubernetes_build()
    assert spec.binaries == ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
    assert spec.packages == tuple(f"k8s.io/kubernetes/cmd/{b}" for b in spec.binaries)
    assert f"k8s.io/component-base/version.gitVersion={newer}" in spec.ldflags
    assert parser().parse_args(["up", "--newer"]).newer and not parser().parse_args(["up"]).newer


def test_cache_dir_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KUBEKEEP_TESTENV_CACHE", str(tmp_path))
    assert build.bin_dir() == tmp_path / versions.cache_key() / "bin"
    assert build.go_env()["GOCACHE"] == str(tmp_path / "go-build")
    assert "-mod=mod" in build.go_env()["GOFLAGS"]


def test_failed_build_is_reported_with_log_tail(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake_go = tmp_path / "go"
    fake_go.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = env ]; then echo go1.99.0; exit 0; fi\n'
        'echo "compile: something broke in $PWD" >&2\nexit 3\n'
    )
    fake_go.chmod(0o755)
    monkeypatch.setenv("KUBEKEEP_TESTENV_GO", str(fake_go))
    monkeypatch.setenv("KUBEKEEP_TESTENV_CACHE", str(tmp_path / "cache"))
    with pytest.raises(build.BuildError) as info:
        build.ensure_binaries(progress=lambda _m: None)
    message = str(info.value)
    assert "building etcd" in message and "exit code 3" in message
    assert "something broke" in message  # the log tail
    assert not (build.bin_dir() / "etcd").exists()


def test_cli_build_failure_exits_non_zero(tmp_path: Path) -> None:
    fake_go = tmp_path / "go"
    fake_go.write_text("#!/bin/sh\necho 'no such toolchain' >&2\nexit 1\n")
    fake_go.chmod(0o755)
    env = dict(os.environ, KUBEKEEP_TESTENV_GO=str(fake_go), KUBEKEEP_TESTENV_CACHE=str(tmp_path / "c"))
    proc = subprocess.run([sys.executable, "-m", "testenv", "build"], capture_output=True, text=True, env=env)
    assert proc.returncode == 2
    assert "error:" in proc.stderr and "Go version" in proc.stderr


def test_pki_certificates(tmp_path: Path) -> None:
    p = pki.generate(tmp_path / "pki")
    ca = x509.load_pem_x509_certificate(p.ca.cert.read_bytes())
    server = x509.load_pem_x509_certificate(p.apiserver.cert.read_bytes())
    admin = x509.load_pem_x509_certificate(p.admin.cert.read_bytes())
    readonly = x509.load_pem_x509_certificate(p.readonly.cert.read_bytes())
    etcd_server = x509.load_pem_x509_certificate(p.etcd_server.cert.read_bytes())

    server.verify_directly_issued_by(ca)
    admin.verify_directly_issued_by(ca)
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in sans.get_values_for_type(x509.DNSName)
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)][0] == "127.0.0.1"
    orgs = [a.value for a in admin.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    assert orgs == ["system:masters"]
    ro_orgs = [a.value for a in readonly.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    assert ro_orgs == [pki.READONLY_GROUP]
    eku = etcd_server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku and ExtendedKeyUsageOID.CLIENT_AUTH in eku
    assert etcd_server.issuer != server.issuer  # separate etcd CA
    assert oct(p.admin.key.stat().st_mode & 0o777) == "0o600"
    assert p.sa_public_key.read_text().startswith("-----BEGIN PUBLIC KEY-----")


def test_free_ports_are_bindable() -> None:
    ports = processes.free_ports(4)
    assert len(set(ports)) == 4
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_process_stop_escalates_to_sigkill(tmp_path: Path) -> None:
    script = (
        "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('up', flush=True)\ntime.sleep(60)\n"
    )
    proc = processes.ManagedProcess("stubborn", [sys.executable, "-c", script], tmp_path / "stubborn.log")
    proc.start()
    deadline = time.monotonic() + 10
    while "up" not in proc.log_tail() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.alive()
    assert proc.pid is not None and os.getpgid(proc.pid) == proc.pid  # own process group
    start = time.monotonic()
    proc.stop(timeout=0.5)
    assert not proc.alive()
    assert proc.exit_code() == -signal.SIGKILL
    assert time.monotonic() - start < 5


def test_detached_process_is_found_and_stopped_by_state(tmp_path: Path) -> None:
    proc = processes.ManagedProcess("sleeper", ["sleep", "60"], tmp_path / "sleeper.log")
    proc.start()
    state = proc.to_state()
    proc.detach()
    again = processes.ManagedProcess.from_state(state)
    assert again.alive()
    # A recycled pid with another start time is not mistaken for ours.
    impostor = processes.ManagedProcess.from_state({**state, "start_time": (state["start_time"] or 0) + 1})
    assert not impostor.alive()
    again.stop(timeout=5)
    deadline = time.monotonic() + 5
    while again.alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not again.alive()


def test_kwok_node_manifest_is_managed_and_untainted() -> None:
    node = kwok.node_manifest("kwok-node-7")
    assert node["metadata"]["annotations"][kwok.NODE_ANNOTATION] == kwok.NODE_ANNOTATION_VALUE
    assert "taints" not in node["spec"]


def test_seed_scale_mix_has_101_objects_per_namespace() -> None:
    ns, objs = seed.namespace_objects("bench-000", seed.SCALE_MIX)
    assert ns["kind"] == "Namespace"
    assert len(objs) + 1 == 101
    kinds = {o["kind"] for o in objs}
    assert {"Deployment", "StatefulSet", "Service", "ConfigMap", "Secret", "ServiceAccount", "Role",
            "RoleBinding", "Ingress", "PersistentVolumeClaim", "Widget"} <= kinds  # fmt: skip
    types = {o["spec"].get("type", "ClusterIP") for o in objs if o["kind"] == "Service"}
    assert {"ClusterIP", "NodePort"} <= types
    assert all(seed.collection_path(o).startswith(("/api/v1/namespaces/bench-000/", "/apis/")) for o in objs)
    # Deterministic content.
    assert seed.namespace_objects("bench-000", seed.SCALE_MIX)[1] == objs


def test_cli_parser_commands() -> None:
    p = parser()
    for cmd in ("build", "up", "down", "env", "status", "seed"):
        assert p.parse_args([cmd]).command == cmd
    assert p.parse_args(["seed", "--scale", "100"]).scale == 100


def test_components_die_with_a_sigkilled_owner(tmp_path: Path) -> None:
    code = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from testenv.processes import ManagedProcess\n"
        f"p = ManagedProcess('sleeper', ['sleep', '60'], Path({str(tmp_path / 's.log')!r}), die_with_parent=True)\n"
        "p.start()\n"
        "print(p.pid, p.start_time, flush=True)\n"
        "time.sleep(60)\n"
    )
    owner = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert owner.stdout is not None
    pid, start_time = (int(x) for x in owner.stdout.readline().split())
    child = processes.ManagedProcess.from_state({"name": "sleeper", "pid": pid, "start_time": start_time,
                                                 "log": str(tmp_path / "s.log")})  # fmt: skip
    assert child.alive()
    owner.kill()
    owner.wait()
    deadline = time.monotonic() + 10
    while child.alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not child.alive()
