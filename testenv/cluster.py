"""A local Kubernetes control plane: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and kwok, all on free loopback ports with TLS.

Typical use::

    with Cluster() as cluster:            # builds binaries on first use
        client = cluster.api_client()
        ...

or ``python -m testenv up`` / ``env`` / ``down`` for a cluster that outlives
the process (found again through its state file).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shlex
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from testenv import bootstrap, build, health, kwok, pki, versions
from testenv.kubeconfig import api_client, write_kubeconfig
from testenv.processes import ManagedProcess, free_ports, stopping_on_error
from testenv.rest import RestClient

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

#: Environment variable naming the state file of a running cluster.
STATE_ENV = "KUBEKEEP_TESTENV_STATE"
#: Keep the run directory (logs, etcd data) after ``stop`` when set to 1.
KEEP_ENV = "KUBEKEEP_TESTENV_KEEP"

STATE_FORMAT = 1
SERVICE_CIDR = "10.96.0.0/16"
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"

#: kube-controller-manager controllers that need a cloud provider, turned off on the pinned
#: release. The newer release's kube-controller-manager does not have them any more (it refuses
#: to start when they are named), so it runs ``--controllers=*``.
_CLOUD_CONTROLLERS = ("cloud-node-lifecycle-controller", "node-route-controller", "service-lb-controller")


class ClusterError(RuntimeError):
    """The cluster could not be started, found or stopped."""


def default_state_path() -> Path:
    """``$KUBEKEEP_TESTENV_STATE`` or ``<cache root>/state.json``."""
    env = os.environ.get(STATE_ENV)
    return Path(env).expanduser() if env else build.cache_root() / "state.json"


@dataclass(frozen=True)
class EtcdAccess:
    """How to reach the cluster's etcd (TLS with client-certificate auth)."""

    endpoints: list[str]
    ca_file: Path
    cert_file: Path
    key_file: Path


class Cluster:
    """One local control plane. Attributes are set by :meth:`start` or :meth:`attach`."""

    run_dir: Path
    server: str
    ca_file: Path
    kubeconfig: Path
    readonly_kubeconfig: Path
    etcd: EtcdAccess
    binaries: dict[str, Path]
    node_names: list[str]
    versions: dict[str, str]

    def __init__(
        self,
        *,
        nodes: int = 3,
        run_dir: Path | None = None,
        keep_run_dir: bool | None = None,
        die_with_parent: bool = True,
        progress: build.Progress = build._stderr,
        newer: bool = False,
    ) -> None:
        """Configure (not start) a cluster.

        ``die_with_parent`` has the kernel stop the components if the thread that
        called :meth:`start` dies, even by SIGKILL; ``python -m testenv up``
        turns it off to leave the cluster running. ``newer`` runs the kube-apiserver,
        kube-controller-manager and kube-scheduler of ``versions.NEWER_KUBERNETES_VERSION``
        (built on first use) instead of the pinned ones; etcd, kwok and kubectl stay pinned.
        """
        self._requested_run_dir = run_dir
        self._keep = keep_run_dir if keep_run_dir is not None else os.environ.get(KEEP_ENV) == "1"
        self._progress = progress
        self._die_with_parent = die_with_parent
        self._newer = newer
        self._procs: list[ManagedProcess] = []
        self._owns_run_dir = False
        self._pki: pki.ClusterPKI | None = None
        # Client certificates of a cluster opened with attach() (no ClusterPKI then).
        self._attached_admin: tuple[Path, Path] | None = None
        self._attached_readonly: tuple[Path, Path] | None = None
        self.versions = versions.as_dict()
        if newer:
            self.versions["kubernetes"] = versions.NEWER_KUBERNETES_VERSION
        self.node_names = kwok.node_names(nodes)
        self.timings: dict[str, float] = {}

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> Cluster:
        """Build binaries if needed, start every component and wait until ready.

        Raises :class:`build.BuildError` if binaries cannot be built and
        :class:`ClusterError` (with the failing component's log tail) if a
        component does not come up; nothing is left running in either case.
        """
        t0 = time.monotonic()
        artifacts = build.ensure_all(self._progress)
        if self._newer:
            newer = build.ensure_newer_kubernetes(self._progress)
            artifacts = dataclasses.replace(artifacts, binaries={**artifacts.binaries, **newer})
        self.binaries = artifacts.binaries
        self.timings["build"] = time.monotonic() - t0
        self._prepare_run_dir()
        try:
            with stopping_on_error(self._procs):
                self._start_components(artifacts)
        except BaseException as err:
            self._cleanup_run_dir()
            if isinstance(err, Exception) and not isinstance(err, ClusterError):
                raise ClusterError(f"test cluster failed to start: {err}") from err
            raise
        self.timings["total"] = time.monotonic() - t0
        self.save_state(self.run_dir / "state.json")
        return self

    def stop(self) -> None:
        """Stop all components (reverse start order) and remove the run directory."""
        errors = []
        for proc in reversed(self._procs):
            try:
                proc.stop(timeout=10)
            except Exception as err:  # noqa: BLE001 - keep stopping the rest
                errors.append(f"{proc.name}: {err}")
        for proc in self._procs:
            if proc.alive():
                errors.append(f"{proc.name} (pid {proc.pid}) is still running")
        self._procs = []
        self._cleanup_run_dir()
        if errors:
            raise ClusterError("could not stop the test cluster cleanly: " + "; ".join(errors))

    def detach(self) -> None:
        """Leave the processes running after this interpreter exits (``testenv up``)."""
        for proc in self._procs:
            proc.detach()

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def is_running(self) -> bool:
        """Whether every component process is alive."""
        return bool(self._procs) and all(p.alive() for p in self._procs)

    # ----------------------------------------------------------------- state

    def save_state(self, path: Path) -> Path:
        """Write the JSON state file that :meth:`attach` reads."""
        assert self._pki is not None
        state = {
            "format": STATE_FORMAT,
            "run_dir": str(self.run_dir),
            "owns_run_dir": self._owns_run_dir,
            "server": self.server,
            "ca_file": str(self.ca_file),
            "kubeconfig": str(self.kubeconfig),
            "readonly_kubeconfig": str(self.readonly_kubeconfig),
            "admin_cert": str(self._pki.admin.cert),
            "admin_key": str(self._pki.admin.key),
            "readonly_cert": str(self._pki.readonly.cert),
            "readonly_key": str(self._pki.readonly.key),
            "etcd": {
                "endpoints": self.etcd.endpoints,
                "ca_file": str(self.etcd.ca_file),
                "cert_file": str(self.etcd.cert_file),
                "key_file": str(self.etcd.key_file),
            },
            "binaries": {k: str(v) for k, v in self.binaries.items()},
            "node_names": self.node_names,
            "versions": self.versions,
            "processes": [p.to_state() for p in self._procs],
            "started_at": time.time(),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        os.replace(tmp, path)
        return path

    @classmethod
    def attach(cls, state_file: Path) -> Cluster:
        """Re-open a cluster from its state file (to use, inspect or stop it)."""
        try:
            state = json.loads(Path(state_file).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ClusterError(f"cannot read testenv state file {state_file}: {err}") from err
        if state.get("format") != STATE_FORMAT:
            raise ClusterError(f"{state_file} has an unknown state format {state.get('format')!r}")
        self = cls(nodes=len(state["node_names"]), keep_run_dir=None)
        self.run_dir = Path(state["run_dir"])
        self._owns_run_dir = state["owns_run_dir"]
        self.server = state["server"]
        self.ca_file = Path(state["ca_file"])
        self.kubeconfig = Path(state["kubeconfig"])
        self.readonly_kubeconfig = Path(state["readonly_kubeconfig"])
        etcd = state["etcd"]
        self.etcd = EtcdAccess(
            endpoints=list(etcd["endpoints"]),
            ca_file=Path(etcd["ca_file"]),
            cert_file=Path(etcd["cert_file"]),
            key_file=Path(etcd["key_file"]),
        )
        self.binaries = {k: Path(v) for k, v in state["binaries"].items()}
        self.node_names = list(state["node_names"])
        self.versions = dict(state["versions"])
        self._procs = [ManagedProcess.from_state(p) for p in state["processes"]]
        self._attached_admin = (Path(state["admin_cert"]), Path(state["admin_key"]))
        self._attached_readonly = (Path(state["readonly_cert"]), Path(state["readonly_key"]))
        return self

    # ----------------------------------------------------------------- access

    def env(self) -> dict[str, str]:
        """Environment variables describing this cluster (``python -m testenv env``)."""
        return {
            "KUBECONFIG": str(self.kubeconfig),
            STATE_ENV: str(self.run_dir / "state.json"),
            "KUBEKEEP_TESTENV_SERVER": self.server,
            "KUBEKEEP_TESTENV_CA_FILE": str(self.ca_file),
            "KUBEKEEP_TESTENV_READONLY_KUBECONFIG": str(self.readonly_kubeconfig),
            "KUBEKEEP_TESTENV_RUN_DIR": str(self.run_dir),
            "KUBEKEEP_TESTENV_BIN": str(self.binaries["kubectl"].parent),
            "KUBEKEEP_TESTENV_ETCD_ENDPOINTS": ",".join(self.etcd.endpoints),
            "KUBEKEEP_TESTENV_ETCD_CACERT": str(self.etcd.ca_file),
            "KUBEKEEP_TESTENV_ETCD_CERT": str(self.etcd.cert_file),
            "KUBEKEEP_TESTENV_ETCD_KEY": str(self.etcd.key_file),
            "ETCDCTL_ENDPOINTS": ",".join(self.etcd.endpoints),
            "ETCDCTL_CACERT": str(self.etcd.ca_file),
            "ETCDCTL_CERT": str(self.etcd.cert_file),
            "ETCDCTL_KEY": str(self.etcd.key_file),
        }

    def shell_exports(self) -> str:
        """``export NAME=value`` lines for a POSIX shell (plus the binaries on PATH)."""
        lines = [f"export {k}={shlex.quote(v)}" for k, v in self.env().items()]
        bin_dir = shlex.quote(str(self.binaries["kubectl"].parent))
        lines.append(f'export PATH={bin_dir}:"$PATH"')
        return "\n".join(lines) + "\n"

    def _client_cert(self, readonly: bool) -> tuple[Path, Path]:
        if self._pki is not None:
            pair = self._pki.readonly if readonly else self._pki.admin
            return pair.cert, pair.key
        attached = self._attached_readonly if readonly else self._attached_admin
        if attached is None:
            raise ClusterError("the cluster is not started (call start() or Cluster.attach())")
        return attached

    def rest(self, *, readonly: bool = False, maxsize: int = 16) -> RestClient:
        """A pooled JSON REST client (admin, or the least-privilege user)."""
        cert, key = self._client_cert(readonly)
        return RestClient(self.server, ca_file=self.ca_file, cert_file=cert, key_file=key, maxsize=maxsize)

    def api_client(self, *, readonly: bool = False) -> ApiClient:
        """A ``kubernetes`` ApiClient for the admin (or least-privilege) kubeconfig."""
        return api_client(self.readonly_kubeconfig if readonly else self.kubeconfig)

    def kubectl(
        self, *args: str, readonly: bool = False, check: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the pinned kubectl against this cluster."""
        kubeconfig = self.readonly_kubeconfig if readonly else self.kubeconfig
        cmd = [str(self.binaries["kubectl"]), f"--kubeconfig={kubeconfig}", *args]
        return subprocess.run(cmd, capture_output=True, text=True, check=check, input=input, timeout=120)

    def etcdctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run the pinned etcdctl against this cluster's etcd (client-cert auth)."""
        cmd = [
            str(self.binaries["etcdctl"]),
            f"--endpoints={','.join(self.etcd.endpoints)}",
            f"--cacert={self.etcd.ca_file}",
            f"--cert={self.etcd.cert_file}",
            f"--key={self.etcd.key_file}",
            *args,
        ]
        return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=120)

    def logs(self) -> dict[str, Path]:
        """Log file of every component, by name."""
        return {p.name: p.log_path for p in self._procs}

    # ----------------------------------------------------------------- internals

    def _prepare_run_dir(self) -> None:
        if self._requested_run_dir is None:
            self.run_dir = Path(tempfile.mkdtemp(prefix="kubekeep-testenv-"))
            self._owns_run_dir = True
        else:
            self.run_dir = self._requested_run_dir.resolve()
            self._owns_run_dir = not self.run_dir.exists()
            self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "logs").mkdir(exist_ok=True)

    def _cleanup_run_dir(self) -> None:
        if not hasattr(self, "run_dir"):
            return
        if self._keep:
            self._progress(f"keeping run directory {self.run_dir} ({KEEP_ENV}=1)")
            return
        if self._owns_run_dir:
            shutil.rmtree(self.run_dir, ignore_errors=True)
        else:
            for name in ("pki", "etcd-data", "logs", "certs", "kwok-home"):
                shutil.rmtree(self.run_dir / name, ignore_errors=True)
            for path in self.run_dir.glob("*.kubeconfig"):
                path.unlink(missing_ok=True)
            for name in ("state.json", "kwok.yaml"):
                (self.run_dir / name).unlink(missing_ok=True)

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> ManagedProcess:
        proc = ManagedProcess(
            name=name,
            argv=argv,
            log_path=self.run_dir / "logs" / f"{name}.log",
            env=env,
            die_with_parent=self._die_with_parent,
        )
        self._procs.append(proc)
        proc.start()
        return proc

    def _lap(self, name: str, since: float) -> float:
        now = time.monotonic()
        self.timings[name] = now - since
        return now

    def _start_components(self, artifacts: build.Artifacts) -> None:
        run = self.run_dir
        bins = artifacts.binaries
        t = time.monotonic()
        self._pki = p = pki.generate(run / "pki")
        etcd_port, peer_port, api_port, kcm_port, sched_port = free_ports(5)
        self.server = f"https://127.0.0.1:{api_port}"
        self.ca_file = p.ca.cert
        self.etcd = EtcdAccess(
            endpoints=[f"https://127.0.0.1:{etcd_port}"],
            ca_file=p.etcd_ca.cert,
            cert_file=p.etcd_client.cert,
            key_file=p.etcd_client.key,
        )
        self.kubeconfig = write_kubeconfig(
            run / "admin.kubeconfig",
            server=self.server,
            ca_cert=p.ca.cert,
            client=p.admin,
            user=pki.ADMIN_USER,
        )
        self.readonly_kubeconfig = write_kubeconfig(
            run / "readonly.kubeconfig", server=self.server, ca_cert=p.ca.cert, client=p.readonly,
            user=pki.READONLY_USER,
        )  # fmt: skip
        kcm_kubeconfig = write_kubeconfig(
            run / "controller-manager.kubeconfig", server=self.server, ca_cert=p.ca.cert,
            client=p.controller_manager, user="system:kube-controller-manager",
        )  # fmt: skip
        sched_kubeconfig = write_kubeconfig(
            run / "scheduler.kubeconfig", server=self.server, ca_cert=p.ca.cert, client=p.scheduler,
            user="system:kube-scheduler",
        )  # fmt: skip
        t = self._lap("pki", t)

        etcd = self._spawn("etcd", self._etcd_argv(bins["etcd"], etcd_port, peer_port))
        etcd_ctx = health.tls_context(p.etcd_ca.cert, p.etcd_client.cert, p.etcd_client.key)

        def etcd_healthy() -> bool | None:
            status, body = health.https_get(f"{self.etcd.endpoints[0]}/health", etcd_ctx)
            return True if status == 200 and '"health":"true"' in body.replace(" ", "") else None

        health.wait_for("etcd /health", etcd_healthy, timeout=60, watch=[etcd])
        t = self._lap("etcd", t)

        apiserver = self._spawn("kube-apiserver", self._apiserver_argv(bins["kube-apiserver"], api_port, etcd_port))
        api_ctx = health.tls_context(p.ca.cert, p.admin.cert, p.admin.key)

        def api_ready() -> bool | None:
            status, _ = health.https_get(f"{self.server}/readyz", api_ctx)
            return True if status == 200 else None

        health.wait_for("kube-apiserver /readyz", api_ready, timeout=120, watch=[apiserver, etcd])
        t = self._lap("kube-apiserver", t)

        kcm = self._spawn(
            "kube-controller-manager",
            self._kcm_argv(bins["kube-controller-manager"], kcm_port, kcm_kubeconfig),
        )
        sched = self._spawn(
            "kube-scheduler", self._scheduler_argv(bins["kube-scheduler"], sched_port, sched_kubeconfig)
        )
        kwok_config = kwok.write_config(run / "kwok.yaml", artifacts.kwok_stages)
        kwok_proc = kwok.process(bins["kwok"], self.kubeconfig, kwok_config, run)
        kwok_proc.die_with_parent = self._die_with_parent
        self._procs.append(kwok_proc)
        kwok_proc.start()
        everyone = [apiserver, etcd, kcm, sched, kwok_proc]

        client = self.rest()
        try:
            bootstrap.create_no_proxy_policy(client)
            crd_names = bootstrap.create_crds(client, bootstrap.load_manifests(artifacts.snapshot_crds))
            bootstrap.create_storage_class(client)
            bootstrap.create_nodes(client, self.node_names)
            health.wait_for(
                "VolumeSnapshot CRDs Established",
                lambda: True if bootstrap.crds_established(client, crd_names) else None,
                timeout=60, watch=[apiserver, *everyone],
            )  # fmt: skip
            bootstrap.create_snapshot_class(client)
            bootstrap.sync_readonly_role(client)
            t = self._lap("bootstrap", t)

            insecure = health.tls_context(None)
            for proc, port in ((kcm, kcm_port), (sched, sched_port)):

                def healthz(port: int = port) -> bool | None:
                    status, _ = health.https_get(f"https://127.0.0.1:{port}/healthz", insecure)
                    return True if status == 200 else None

                health.wait_for(f"{proc.name} /healthz", healthz, timeout=90, watch=[proc, *everyone])
            health.wait_for(
                f"{len(self.node_names)} kwok nodes Ready",
                lambda: True if bootstrap.nodes_ready(client, self.node_names) else None,
                timeout=90, watch=[kwok_proc, *everyone],
            )  # fmt: skip
            health.wait_for(
                "ServiceAccount default/default",
                lambda: True if bootstrap.default_service_account_exists(client) else None,
                timeout=90, watch=[kcm, *everyone],
            )  # fmt: skip
            self._lap("controllers", t)
        finally:
            client.close()

    def _etcd_argv(self, binary: Path, port: int, peer_port: int) -> list[str]:
        assert self._pki is not None
        p = self._pki
        client_url = f"https://127.0.0.1:{port}"
        peer_url = f"https://127.0.0.1:{peer_port}"
        return [
            str(binary),
            "--name=testenv",
            f"--data-dir={self.run_dir / 'etcd-data'}",
            f"--listen-client-urls={client_url}",
            f"--advertise-client-urls={client_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=testenv={peer_url}",
            "--initial-cluster-state=new",
            "--initial-cluster-token=kubekeep-testenv",
            f"--cert-file={p.etcd_server.cert}",
            f"--key-file={p.etcd_server.key}",
            f"--trusted-ca-file={p.etcd_ca.cert}",
            "--client-cert-auth=true",
            f"--peer-cert-file={p.etcd_server.cert}",
            f"--peer-key-file={p.etcd_server.key}",
            f"--peer-trusted-ca-file={p.etcd_ca.cert}",
            "--peer-client-cert-auth=true",
            # Throw-away data on a shared CI box: durability is not worth the latency.
            "--unsafe-no-fsync=true",
            "--quota-backend-bytes=4294967296",
        ]

    def _apiserver_argv(self, binary: Path, port: int, etcd_port: int) -> list[str]:
        assert self._pki is not None
        p = self._pki
        return [
            str(binary),
            "--bind-address=127.0.0.1",
            # The apiserver's own address for the "kubernetes" Service; with the
            # endpoint reconciler off nothing ever connects to it.
            "--advertise-address=127.0.0.1",
            "--endpoint-reconciler-type=none",
            f"--secure-port={port}",
            f"--cert-dir={self.run_dir / 'certs'}",
            f"--tls-cert-file={p.apiserver.cert}",
            f"--tls-private-key-file={p.apiserver.key}",
            f"--client-ca-file={p.ca.cert}",
            f"--etcd-servers=https://127.0.0.1:{etcd_port}",
            f"--etcd-cafile={p.etcd_ca.cert}",
            f"--etcd-certfile={p.etcd_apiserver_client.cert}",
            f"--etcd-keyfile={p.etcd_apiserver_client.key}",
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            f"--service-account-issuer={SA_ISSUER}",
            f"--service-account-key-file={p.sa_public_key}",
            f"--service-account-signing-key-file={p.sa_private_key}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--allow-privileged=true",
            # Fake nodes have loopback InternalIPs; never resolve their hostnames.
            "--kubelet-preferred-address-types=InternalIP",
            "--profiling=false",
            "--anonymous-auth=false",
        ]

    def _kcm_argv(self, binary: Path, port: int, kubeconfig: Path) -> list[str]:
        assert self._pki is not None
        p = self._pki
        controllers = ",".join(["*", *(() if self._newer else (f"-{c}" for c in _CLOUD_CONTROLLERS))])
        return [
            str(binary),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            f"--cert-dir={self.run_dir / 'certs' / 'kube-controller-manager'}",
            "--leader-elect=false",
            f"--controllers={controllers}",
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={p.sa_private_key}",
            f"--root-ca-file={p.ca.cert}",
            f"--cluster-signing-cert-file={p.ca.cert}",
            f"--cluster-signing-key-file={p.ca.key}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--kube-api-qps=100",
            "--kube-api-burst=200",
            "--profiling=false",
        ]

    def _scheduler_argv(self, binary: Path, port: int, kubeconfig: Path) -> list[str]:
        return [
            str(binary),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            f"--cert-dir={self.run_dir / 'certs' / 'kube-scheduler'}",
            "--leader-elect=false",
            "--kube-api-qps=200",
            "--kube-api-burst=400",
            "--profiling=false",
        ]


def running_cluster(state_file: Path | None = None) -> Cluster | None:
    """The cluster described by ``state_file`` (default :func:`default_state_path`) if it is up."""
    path = state_file or default_state_path()
    if not path.is_file():
        return None
    with contextlib.suppress(ClusterError, KeyError):
        cluster = Cluster.attach(path)
        if cluster.is_running():
            return cluster
    return None


def describe(cluster: Cluster) -> dict[str, Any]:
    """Summary for humans and ``python -m testenv status``."""
    return {
        "server": cluster.server,
        "run_dir": str(cluster.run_dir),
        "kubeconfig": str(cluster.kubeconfig),
        "readonly_kubeconfig": str(cluster.readonly_kubeconfig),
        "etcd": cluster.etcd.endpoints,
        "nodes": cluster.node_names,
        "versions": cluster.versions,
        "logs": {k: str(v) for k, v in cluster.logs().items()},
    }
