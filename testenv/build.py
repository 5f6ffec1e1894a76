"""Build the pinned control-plane binaries from Go modules into a shared cache.

Layout (``KUBEKEEP_TESTENV_CACHE`` overrides the root)::

    ~/.cache/kubekeep-testenv/
        go-build/                 GOCACHE, shared by every version and CI run
        <cache_key>/bin/          etcd etcdctl etcdutl kube-apiserver ... kwok
        <cache_key>/build/<mod>/  generated go.mod + build log per Go module
        <cache_key>/crds/         VolumeSnapshot CRD manifests
        helm-<version>/bin/helm   Helm, in a directory of its own (not part of <cache_key>:
                                  bumping Helm rebuilds nothing else)
        kubernetes-<version>/bin/ the second cluster's newer kube-apiserver,
                                  kube-controller-manager and kube-scheduler
                                  (versions.NEWER_KUBERNETES_VERSION), also apart
        minio-<version>/bin/      the tests' S3 server (``minio``) and ``minio-users``, a small
                                  admin client that creates users with IAM policies
                                  (versions.MINIO_VERSION), also apart; minio-users, whose
                                  source is in this file, is rebuilt alone when it changes

Only the Go module proxy is used: every source comes in through ``go build`` /
``go mod download`` of a generated module.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from testenv import versions

#: Every binary the test environment needs, by name.
BINARIES: tuple[str, ...] = (
    "etcd",
    "etcdctl",
    "etcdutl",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "kwok",
)

#: VolumeSnapshot CRD manifests taken from the external-snapshotter client module.
SNAPSHOT_CRD_FILES: tuple[str, ...] = (
    "snapshot.storage.k8s.io_volumesnapshotclasses.yaml",
    "snapshot.storage.k8s.io_volumesnapshotcontents.yaml",
    "snapshot.storage.k8s.io_volumesnapshots.yaml",
)

SNAPSHOTTER_CLIENT_MODULE = "github.com/kubernetes-csi/external-snapshotter/client/v8"

Progress = Callable[[str], None]


class BuildError(RuntimeError):
    """A binary or manifest could not be built or fetched."""


def _stderr(msg: str) -> None:
    print(f"[testenv] {msg}", file=sys.stderr, flush=True)


def cache_root() -> Path:
    """Root of the testenv cache (``$KUBEKEEP_TESTENV_CACHE`` or ``~/.cache/kubekeep-testenv``)."""
    env = os.environ.get("KUBEKEEP_TESTENV_CACHE")
    if env:
        return Path(env).expanduser().resolve()
    return Path.home() / ".cache" / "kubekeep-testenv"


def version_dir() -> Path:
    """Cache directory for the currently pinned versions."""
    return cache_root() / versions.cache_key()


def bin_dir() -> Path:
    """Directory holding the built binaries."""
    return version_dir() / "bin"


def crd_dir() -> Path:
    """Directory holding the fetched VolumeSnapshot CRD manifests."""
    return version_dir() / "crds"


def go_binary() -> str:
    """Path of the ``go`` tool (``$KUBEKEEP_TESTENV_GO``, ``PATH`` or /usr/local/go/bin/go)."""
    candidates = [os.environ.get("KUBEKEEP_TESTENV_GO"), shutil.which("go"), "/usr/local/go/bin/go"]
    for cand in candidates:
        if cand and os.access(cand, os.X_OK):
            return cand
    raise BuildError(
        "the Go toolchain was not found (looked at $KUBEKEEP_TESTENV_GO, PATH and "
        "/usr/local/go/bin/go); install Go >= " + versions.GO_DIRECTIVE
    )


def go_env() -> dict[str, str]:
    """Environment for every ``go`` invocation: proxy-only, cache under the testenv root."""
    env = dict(os.environ)
    env.update(
        GOCACHE=str(cache_root() / "go-build"),
        GOFLAGS="-mod=mod -buildvcs=false",
        GOTOOLCHAIN="local",
        GOWORK="off",
        CGO_ENABLED="0",
    )
    # Never let a stray GOOS/GOARCH from the caller produce foreign binaries.
    env.pop("GOOS", None)
    env.pop("GOARCH", None)
    return env


def _check_go_version(go: str) -> None:
    out = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, env=go_env(), check=False)
    match = re.match(r"go(\d+)\.(\d+)", out.stdout.strip())
    if out.returncode != 0 or not match:
        raise BuildError(f"cannot determine the Go version from {go}: {out.stderr.strip()}")
    have = (int(match[1]), int(match[2]))
    need = tuple(int(p) for p in versions.GO_DIRECTIVE.split(".")[:2])
    if have < need:
        raise BuildError(
            f"Go {versions.GO_DIRECTIVE} or newer is needed to build the pinned versions, "
            f"found {out.stdout.strip()} at {go}"
        )


def _go_mod_download(module: str, version: str, workdir: Path) -> dict[str, str]:
    """``go mod download -json module@version`` and return its JSON record."""
    proc = subprocess.run(
        [go_binary(), "mod", "download", "-json", f"{module}@{version}"],
        cwd=workdir,
        capture_output=True,
        text=True,
        env=go_env(),
        check=False,
    )
    try:
        info = json.loads(proc.stdout) if proc.stdout.strip() else {}
    except json.JSONDecodeError:
        info = {}
    if proc.returncode != 0 or "Error" in info or not info.get("Dir"):
        detail = info.get("Error") or proc.stderr.strip() or proc.stdout.strip()
        raise BuildError(f"go mod download {module}@{version} failed: {detail}")
    return info


@dataclass(frozen=True)
class GoBuild:
    """One generated Go module and the binaries one ``go build`` makes from it."""

    name: str
    binaries: tuple[str, ...]
    packages: tuple[str, ...]
    go_mod: Callable[[Path], str]
    ldflags: tuple[str, ...] = ("-s", "-w")
    extra_files: dict[str, str] = field(default_factory=dict)


def _etcd_go_mod(_workdir: Path) -> str:
    v = versions.ETCD_VERSION
    return (
        "module kubekeep.test/testenv/build/etcd\n\n"
        f"go {versions.GO_DIRECTIVE}\n\n"
        "require (\n"
        f"\tgo.etcd.io/etcd/server/v3 {v}\n"
        f"\tgo.etcd.io/etcd/etcdctl/v3 {v}\n"
        f"\tgo.etcd.io/etcd/etcdutl/v3 {v}\n"
        ")\n"
    )


_ETCD_MAIN = """// Command etcd is upstream's etcd main (go.etcd.io/etcd/v3/main.go), which
// cannot be built directly from its module because of its replace directives.
package main

import (
\t"os"

\t"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
\tetcdmain.Main(os.Args)
}
"""


def _kubernetes_go_mod(workdir: Path, version: str = versions.KUBERNETES_VERSION) -> str:
    """go.mod requiring k8s.io/kubernetes ``version`` with every staging module mapped to v0.X.Y."""
    info = _go_mod_download("k8s.io/kubernetes", version, workdir)
    upstream = Path(info["GoMod"]).read_text()
    staging = sorted(set(re.findall(r"^\s*(k8s\.io/[\w.-]+)\s*=>\s*\./staging/", upstream, re.M)))
    if not staging:
        raise BuildError("no staging replace directives found in k8s.io/kubernetes go.mod")
    godebug = re.search(r"^godebug\s+.*$", upstream, re.M)
    sv = versions.staging_version(version)
    lines = [
        "module kubekeep.test/testenv/build/kubernetes",
        "",
        f"go {versions.GO_DIRECTIVE}",
        "",
    ]
    if godebug:
        lines += [godebug.group(0), ""]
    lines += [f"require k8s.io/kubernetes {version}", "", "replace ("]
    lines += [f"\t{mod} => {mod} {sv}" for mod in staging]
    lines += [")", ""]
    return "\n".join(lines)


def _kubernetes_ldflags(v: str = versions.KUBERNETES_VERSION) -> tuple[str, ...]:
    major, minor = v.lstrip("v").split(".")[:2]
    flags = ["-s", "-w"]
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            "-X",
            f"{pkg}.gitVersion={v}",
            "-X",
            f"{pkg}.gitMajor={major}",
            "-X",
            f"{pkg}.gitMinor={minor}",
            "-X",
            f"{pkg}.gitTreeState=clean",
            "-X",
            f"{pkg}.buildDate=1970-01-01T00:00:00Z",
        ]
    return tuple(flags)


def _kwok_go_mod(workdir: Path) -> str:
    """go.mod requiring sigs.k8s.io/kwok, carrying over any replace directives it has."""
    info = _go_mod_download("sigs.k8s.io/kwok", versions.KWOK_VERSION, workdir)
    upstream = Path(info["GoMod"]).read_text()
    replaces = re.findall(r"^replace\s+\(\n(.*?)^\)", upstream, re.M | re.S)
    single = re.findall(r"^replace\s+([^(\n].*)$", upstream, re.M)
    body = "".join(replaces) + "".join(f"\t{r}\n" for r in single)
    # Only version replacements make sense outside kwok's own repository.
    kept = [ln for ln in body.splitlines() if "=>" in ln and not ln.split("=>")[1].strip().startswith(".")]
    text = (
        "module kubekeep.test/testenv/build/kwok\n\n"
        f"go {versions.GO_DIRECTIVE}\n\n"
        f"require sigs.k8s.io/kwok {versions.KWOK_VERSION}\n"
    )
    if kept:
        text += "\nreplace (\n" + "\n".join(kept) + "\n)\n"
    return text


def go_builds() -> tuple[GoBuild, ...]:
    """The three Go modules, in build order (smallest first)."""
    kwok_v = versions.KWOK_VERSION.lstrip("v")
    return (
        GoBuild(
            name="etcd",
            binaries=("etcd", "etcdctl", "etcdutl"),
            packages=("./cmd/etcd", "go.etcd.io/etcd/etcdctl/v3", "go.etcd.io/etcd/etcdutl/v3"),
            go_mod=_etcd_go_mod,
            extra_files={"cmd/etcd/main.go": _ETCD_MAIN},
        ),
        GoBuild(
            name="kubernetes",
            binaries=("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"),
            packages=(
                "k8s.io/kubernetes/cmd/kube-apiserver",
                "k8s.io/kubernetes/cmd/kube-controller-manager",
                "k8s.io/kubernetes/cmd/kube-scheduler",
                "k8s.io/kubernetes/cmd/kubectl",
            ),
            go_mod=_kubernetes_go_mod,
            ldflags=_kubernetes_ldflags(),
        ),
        GoBuild(
            name="kwok",
            binaries=("kwok",),
            packages=("sigs.k8s.io/kwok/cmd/kwok",),
            go_mod=_kwok_go_mod,
            ldflags=("-s", "-w", "-X", f"sigs.k8s.io/kwok/pkg/consts.Version={kwok_v}"),
        ),
    )


@contextlib.contextmanager
def _build_lock(progress: Progress, root: Path | None = None) -> Iterator[None]:
    """Serialize builds into one cache directory (``root``, default the pinned versions')
    between processes (pytest-xdist, parallel CI jobs)."""
    vdir = root or version_dir()
    vdir.mkdir(parents=True, exist_ok=True)
    with open(vdir / ".lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress(f"waiting for another process building into {vdir} ...")
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _run_go_build(spec: GoBuild, progress: Progress, root: Path | None = None) -> float:
    """Generate the module for ``spec`` and build its binaries into ``<root>/bin/`` (``root``
    defaults to the pinned versions' directory); return seconds."""
    go = go_binary()
    root = root or version_dir()
    workdir = root / "build" / spec.name
    out_dir = workdir / "out"
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out_dir, ignore_errors=True)
    (workdir / "go.mod").write_text(spec.go_mod(workdir))
    for rel, content in spec.extra_files.items():
        target = workdir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
    log_path = workdir.parent / f"{spec.name}.log"
    cmd = [
        go, "build", "-v", "-trimpath",
        "-ldflags=" + " ".join(spec.ldflags),
        "-o", str(out_dir) + os.sep,
        *spec.packages,
    ]  # fmt: skip
    progress(f"building {', '.join(spec.binaries)} (log: {log_path}) ...")
    start = time.monotonic()
    with open(log_path, "w") as log:
        log.write("$ " + " ".join(cmd) + "\n")
        log.flush()
        proc = subprocess.Popen(
            cmd, cwd=workdir, env=go_env(), stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        done = threading.Event()

        def heartbeat() -> None:
            while not done.wait(60):
                progress(f"  still building {spec.name} ({time.monotonic() - start:.0f}s) ...")

        threading.Thread(target=heartbeat, daemon=True).start()
        try:
            rc = proc.wait()
        except BaseException:
            os.killpg(proc.pid, 15)
            proc.wait()
            raise
        finally:
            done.set()
    elapsed = time.monotonic() - start
    if rc != 0:
        raise BuildError(
            f"building {spec.name} ({', '.join(spec.binaries)}) failed with exit code {rc} "
            f"after {elapsed:.0f}s; full log: {log_path}\n--- last lines ---\n{_tail(log_path)}"
        )
    bdir = root / "bin"
    bdir.mkdir(parents=True, exist_ok=True)
    for name in spec.binaries:
        built = out_dir / name
        if not built.is_file():
            raise BuildError(f"go build of {spec.name} succeeded but produced no {built}")
        os.replace(built, bdir / name)
    shutil.rmtree(out_dir, ignore_errors=True)
    progress(f"built {', '.join(spec.binaries)} in {elapsed:.0f}s")
    return elapsed


def _have(name: str) -> bool:
    path = bin_dir() / name
    return path.is_file() and os.access(path, os.X_OK)


def ensure_crds(progress: Progress = _stderr) -> list[Path]:
    """Fetch the VolumeSnapshot CRD manifests into the cache; return their paths."""
    target = crd_dir()
    paths = [target / name for name in SNAPSHOT_CRD_FILES]
    if all(p.is_file() for p in paths):
        return paths
    vdir = version_dir()
    vdir.mkdir(parents=True, exist_ok=True)
    progress(f"fetching {SNAPSHOTTER_CLIENT_MODULE}@{versions.SNAPSHOTTER_CLIENT_VERSION} CRDs ...")
    info = _go_mod_download(SNAPSHOTTER_CLIENT_MODULE, versions.SNAPSHOTTER_CLIENT_VERSION, vdir)
    source = Path(info["Dir"]) / "config" / "crd"
    target.mkdir(parents=True, exist_ok=True)
    for name in SNAPSHOT_CRD_FILES:
        src = source / name
        if not src.is_file():
            raise BuildError(f"{src} is missing from {SNAPSHOTTER_CLIENT_MODULE}")
        tmp = target / (name + ".tmp")
        shutil.copyfile(src, tmp)
        os.replace(tmp, target / name)
    return paths


#: kwok's default Stages (what ``kwokctl`` configures), relative to the kwok module root.
KWOK_STAGE_FILES: tuple[str, ...] = (
    "kustomize/stage/node/fast/node-initialize.yaml",
    "kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
    "kustomize/stage/pod/fast/pod-ready.yaml",
    "kustomize/stage/pod/fast/pod-complete.yaml",
    "kustomize/stage/pod/fast/pod-delete.yaml",
)


def kwok_stages_path() -> Path:
    """Cached multi-document YAML with kwok's default node and pod Stages."""
    return version_dir() / "kwok" / "stages.yaml"


def ensure_kwok_stages(progress: Progress = _stderr) -> Path:
    """Extract kwok's default Stages from the pinned kwok module into the cache."""
    target = kwok_stages_path()
    if target.is_file():
        return target
    vdir = version_dir()
    vdir.mkdir(parents=True, exist_ok=True)
    progress(f"fetching kwok {versions.KWOK_VERSION} default stages ...")
    info = _go_mod_download("sigs.k8s.io/kwok", versions.KWOK_VERSION, vdir)
    docs = []
    for rel in KWOK_STAGE_FILES:
        src = Path(info["Dir"]) / rel
        if not src.is_file():
            raise BuildError(f"{src} is missing from sigs.k8s.io/kwok {versions.KWOK_VERSION}")
        docs.append(f"# {rel}\n" + src.read_text().strip() + "\n")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    tmp.write_text("---\n".join(docs))
    os.replace(tmp, target)
    return target


def ensure_binaries(progress: Progress = _stderr) -> dict[str, Path]:
    """Build whatever pinned binary is missing from the cache; return ``{name: path}``.

    Raises :class:`BuildError` with the tail of the build log if a build fails.
    """
    if not all(_have(name) for name in BINARIES):
        with _build_lock(progress):
            missing = [spec for spec in go_builds() if not all(_have(b) for b in spec.binaries)]
            if missing:
                go = go_binary()
                _check_go_version(go)
                (cache_root() / "go-build").mkdir(parents=True, exist_ok=True)
                for spec in missing:
                    _run_go_build(spec, progress)
    return {name: bin_dir() / name for name in BINARIES}


def helm_dir() -> Path:
    """Cache directory of the pinned Helm, apart from the control plane's (see the module docstring)."""
    return cache_root() / f"helm-{versions.HELM_VERSION}"


def helm_path() -> Path:
    """Where the pinned ``helm`` binary is (built by :func:`ensure_helm`)."""
    return helm_dir() / "bin" / "helm"


def helm_build() -> GoBuild:
    """Helm's ``cmd/helm`` from ``helm.sh/helm/vN`` at the pinned version, stamped as its Makefile does."""
    version = versions.HELM_VERSION
    module = f"helm.sh/helm/v{version.lstrip('v').split('.')[0]}"
    go_mod = f"module kubekeep.test/testenv/build/helm\n\ngo {versions.GO_DIRECTIVE}\n\nrequire {module} {version}\n"
    stamp = f"{module}/internal/version"
    return GoBuild(
        name="helm",
        binaries=("helm",),
        packages=(f"{module}/cmd/helm",),
        go_mod=lambda _workdir: go_mod,
        ldflags=(
            "-s",
            "-w",
            "-X",
            f"{stamp}.version={version}",
            "-X",
            f"{stamp}.metadata=",
            "-X",
            f"{stamp}.gitTreeState=clean",
        ),  # fmt: skip
    )


def ensure_helm(progress: Progress = _stderr) -> Path:
    """Build the pinned Helm into its cache directory if it is missing; return its path."""
    path = helm_path()
    if not (path.is_file() and os.access(path, os.X_OK)):
        with _build_lock(progress, helm_dir()):
            if not (path.is_file() and os.access(path, os.X_OK)):
                go = go_binary()
                _check_go_version(go)
                (cache_root() / "go-build").mkdir(parents=True, exist_ok=True)
                _run_go_build(helm_build(), progress, helm_dir())
    return path


def restic_dir() -> Path:
    """Cache directory of the pinned restic (``restic-<version>/``), for the benchmark only."""
    return cache_root() / f"restic-{versions.RESTIC_VERSION}"


def restic_path() -> Path:
    """Where the pinned ``restic`` binary is (built by :func:`ensure_restic`)."""
    return restic_dir() / "bin" / "restic"


def restic_build() -> GoBuild:
    """restic's ``cmd/restic`` at the pinned version, stamped as its build.go does
    (``-X main.version=<version without v>``)."""
    version = versions.RESTIC_VERSION
    go_mod = (
        f"module kubekeep.test/testenv/build/restic\n\ngo {versions.GO_DIRECTIVE}\n\n"
        f"require github.com/restic/restic {version}\n"
    )
    return GoBuild(
        name="restic",
        binaries=("restic",),
        packages=("github.com/restic/restic/cmd/restic",),
        go_mod=lambda _workdir: go_mod,
        ldflags=("-s", "-w", "-X", f"main.version={version.lstrip('v')}"),
    )


def ensure_restic(progress: Progress = _stderr) -> Path:
    """Build the pinned restic into its cache directory if it is missing; return its path."""
    path = restic_path()
    if not (path.is_file() and os.access(path, os.X_OK)):
        with _build_lock(progress, restic_dir()):
            if not (path.is_file() and os.access(path, os.X_OK)):
                go = go_binary()
                _check_go_version(go)
                (cache_root() / "go-build").mkdir(parents=True, exist_ok=True)
                _run_go_build(restic_build(), progress, restic_dir())
    return path


#: What the second (newer) cluster builds from its Kubernetes release; etcd, kwok and kubectl
#: are the pinned control plane's.
NEWER_KUBERNETES_BINARIES: tuple[str, ...] = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")


def newer_kubernetes_dir() -> Path:
    """Cache directory of the newer Kubernetes (``kubernetes-<version>/``), apart from the
    control plane's: bumping ``versions.NEWER_KUBERNETES_VERSION`` rebuilds only it."""
    return cache_root() / f"kubernetes-{versions.NEWER_KUBERNETES_VERSION}"


def newer_kubernetes_build() -> GoBuild:
    """kube-apiserver, kube-controller-manager and kube-scheduler of the newer release."""
    version = versions.NEWER_KUBERNETES_VERSION
    return GoBuild(
        name="kubernetes",
        binaries=NEWER_KUBERNETES_BINARIES,
        packages=tuple(f"k8s.io/kubernetes/cmd/{name}" for name in NEWER_KUBERNETES_BINARIES),
        go_mod=lambda workdir: _kubernetes_go_mod(workdir, version),
        ldflags=_kubernetes_ldflags(version),
    )


def ensure_newer_kubernetes(progress: Progress = _stderr) -> dict[str, Path]:
    """Build the newer Kubernetes' binaries into their cache directory if any is missing;
    return ``{name: path}``."""
    bdir = newer_kubernetes_dir() / "bin"

    def have_all() -> bool:
        return all((bdir / n).is_file() and os.access(bdir / n, os.X_OK) for n in NEWER_KUBERNETES_BINARIES)

    if not have_all():
        with _build_lock(progress, newer_kubernetes_dir()):
            if not have_all():
                go = go_binary()
                _check_go_version(go)
                (cache_root() / "go-build").mkdir(parents=True, exist_ok=True)
                _run_go_build(newer_kubernetes_build(), progress, newer_kubernetes_dir())
    return {name: bdir / name for name in NEWER_KUBERNETES_BINARIES}


MINIO_MODULE = "github.com/minio/minio"

#: What :func:`ensure_minio` builds: the server and the tests' user-and-policy admin client.
MINIO_BINARIES: tuple[str, ...] = ("minio", "minio-users")

_MINIO_USERS_MAIN = """// Command minio-users creates a MinIO user whose access is a policy of its own, through
// MinIO's admin API with github.com/minio/madmin-go (the version the pinned MinIO requires):
// the kubekeep tests' way to get credentials scoped by an IAM policy (allow, deny, resource
// prefixes). The root credentials come from MINIO_ROOT_USER and MINIO_ROOT_PASSWORD, the
// policy document (IAM JSON) from standard input. The policy is named after the user; run
// again for the same user, it replaces the policy and the secret.
//
//	minio-users HOST:PORT USER SECRET < policy.json
package main

import (
\t"context"
\t"fmt"
\t"io"
\t"os"
\t"time"

\t"github.com/minio/madmin-go/v3"
)

func fail(format string, args ...any) {
\tfmt.Fprintf(os.Stderr, "minio-users: "+format+"\\n", args...)
\tos.Exit(1)
}

func main() {
\tif len(os.Args) != 4 {
\t\tfail("usage: minio-users HOST:PORT USER SECRET < policy.json")
\t}
\tendpoint, user, secret := os.Args[1], os.Args[2], os.Args[3]
\troot, rootSecret := os.Getenv("MINIO_ROOT_USER"), os.Getenv("MINIO_ROOT_PASSWORD")
\tif root == "" || rootSecret == "" {
\t\tfail("MINIO_ROOT_USER and MINIO_ROOT_PASSWORD must be set")
\t}
\tpolicy, err := io.ReadAll(os.Stdin)
\tif err != nil {
\t\tfail("reading the policy from standard input: %v", err)
\t}
\tadm, err := madmin.New(endpoint, root, rootSecret, false)
\tif err != nil {
\t\tfail("%v", err)
\t}
\tctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
\tdefer cancel()
\tif err := adm.AddCannedPolicy(ctx, user, policy); err != nil {
\t\tfail("adding policy %s: %v", user, err)
\t}
\tif err := adm.AddUser(ctx, user, secret); err != nil {
\t\tfail("adding user %s: %v", user, err)
\t}
\treq := madmin.PolicyAssociationReq{Policies: []string{user}, User: user}
\tif _, err := adm.AttachPolicy(ctx, req); err != nil {
\t\t// Again for the same user: the policy (replaced above) is attached already.
\t\tif madmin.ToErrorResponse(err).Code != "XMinioAdminPolicyChangeAlreadyApplied" {
\t\t\tfail("attaching policy %s to user %s: %v", user, user, err)
\t\t}
\t}
}
"""


def minio_dir() -> Path:
    """Cache directory of the pinned MinIO (``minio-<version>/``), apart from the control plane's."""
    return cache_root() / f"minio-{versions.MINIO_VERSION}"


def minio_paths() -> dict[str, Path]:
    """``{"minio": ..., "minio-users": ...}``: where :func:`ensure_minio` puts the binaries."""
    return {name: minio_dir() / "bin" / name for name in MINIO_BINARIES}


def _minio_ldflags(version: str = versions.MINIO_VERSION) -> tuple[str, ...]:
    """Stamp the release as MinIO's buildscripts/gen-ldflags.go does, from the pseudo-version
    (``v0.0.0-YYYYmmddHHMMSS-<12 hex>``: the commit's time and short id)."""
    match = re.fullmatch(r"v0\.0\.0-(\d{4})(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)-([0-9a-f]{12})", version)
    if not match:
        raise BuildError(f"unexpected MinIO pseudo-version {version!r}")
    y, mo, d, h, mi, s, commit = match.groups()
    pkg = f"{MINIO_MODULE}/cmd"
    return (
        "-s", "-w",
        "-X", f"{pkg}.Version={y}-{mo}-{d}T{h}:{mi}:{s}Z",
        "-X", f"{pkg}.ReleaseTag=DEVELOPMENT.{y}-{mo}-{d}T{h}-{mi}-{s}Z",
        "-X", f"{pkg}.CommitID={commit}",
        "-X", f"{pkg}.ShortCommitID={commit}",
        "-X", f"{pkg}.CopyrightYear={y}",
    )  # fmt: skip


def _minio_go_mod(name: str) -> str:
    return (
        f"module kubekeep.test/testenv/build/{name}\n\n"
        f"go {versions.GO_DIRECTIVE}\n\n"
        f"require {MINIO_MODULE} {versions.MINIO_VERSION}\n"
    )


def minio_build() -> GoBuild:
    """``minio``, the module's main package."""
    return GoBuild(
        name="minio",
        binaries=("minio",),
        packages=(MINIO_MODULE,),
        go_mod=lambda _workdir: _minio_go_mod("minio"),
        ldflags=_minio_ldflags(),
    )


def minio_users_build() -> GoBuild:
    """``minio-users`` (source above), in a module requiring the pinned MinIO so that it gets the
    ``madmin-go`` MinIO requires."""
    return GoBuild(
        name="minio-users",
        binaries=("minio-users",),
        packages=("./cmd/minio-users",),
        go_mod=lambda _workdir: _minio_go_mod("minio-users"),
        extra_files={"cmd/minio-users/main.go": _MINIO_USERS_MAIN},
    )


def _minio_users_stamp() -> tuple[Path, str]:
    """Where the built ``minio-users`` records its source's digest, and the current digest: its
    source lives here, not in a pinned module, so editing it must rebuild it (only it)."""
    digest = hashlib.sha256(_MINIO_USERS_MAIN.encode()).hexdigest()
    return minio_dir() / "bin" / "minio-users.source-sha256", digest


def ensure_minio(progress: Progress = _stderr) -> dict[str, Path]:
    """Build the pinned MinIO into its cache directory if it is missing, and ``minio-users`` if
    it is missing or was built from another source; return :func:`minio_paths`."""
    paths = minio_paths()
    stamp, digest = _minio_users_stamp()

    def runnable(path: Path) -> bool:
        return path.is_file() and os.access(path, os.X_OK)

    def missing() -> list[GoBuild]:
        todo = [] if runnable(paths["minio"]) else [minio_build()]
        fresh = runnable(paths["minio-users"]) and stamp.is_file() and stamp.read_text().strip() == digest
        return todo if fresh else [*todo, minio_users_build()]

    if missing():
        with _build_lock(progress, minio_dir()):
            todo = missing()
            if todo:
                go = go_binary()
                _check_go_version(go)
                (cache_root() / "go-build").mkdir(parents=True, exist_ok=True)
                for spec in todo:
                    _run_go_build(spec, progress, minio_dir())
                stamp.write_text(digest + "\n")
    return paths


@dataclass(frozen=True)
class Artifacts:
    """Everything a cluster start needs from the cache."""

    binaries: dict[str, Path]
    snapshot_crds: list[Path]
    kwok_stages: Path


def ensure_all(progress: Progress = _stderr) -> Artifacts:
    """Binaries, CRD manifests and kwok stages, built/fetched as needed."""
    return Artifacts(
        binaries=ensure_binaries(progress),
        snapshot_crds=ensure_crds(progress),
        kwok_stages=ensure_kwok_stages(progress),
    )


REGISTRY_MODULE = "github.com/distribution/distribution/v3"

#: What :func:`ensure_registry` builds: the registry and a bcrypt htpasswd line maker for its
#: basic-auth tests (no Python bcrypt package, no apache2-utils needed).
REGISTRY_BINARIES: tuple[str, ...] = ("registry", "registry-htpasswd")

_REGISTRY_MAIN = """// Command registry is upstream's cmd/registry with only what kubekeep's tests use linked in:
// the filesystem storage driver and the htpasswd and token access controllers (upstream's
// main also links the Azure, GCS and S3 drivers and the pull-through proxy).
package main

import (
\t"github.com/distribution/distribution/v3/registry"
\t_ "github.com/distribution/distribution/v3/registry/auth/htpasswd"
\t_ "github.com/distribution/distribution/v3/registry/auth/token"
\t_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
)

func main() {
\t// nolint:errcheck
\tregistry.RootCmd.Execute()
}
"""

_REGISTRY_HTPASSWD_MAIN = """// Command registry-htpasswd prints one htpasswd line (bcrypt, as the registry's htpasswd
// access controller requires) for USER with the password read from standard input.
//
//\tregistry-htpasswd USER < password
package main

import (
\t"fmt"
\t"io"
\t"os"
\t"strings"

\t"golang.org/x/crypto/bcrypt"
)

func main() {
\tif len(os.Args) != 2 {
\t\tfmt.Fprintln(os.Stderr, "usage: registry-htpasswd USER < password")
\t\tos.Exit(2)
\t}
\tpassword, err := io.ReadAll(os.Stdin)
\tif err != nil {
\t\tfmt.Fprintln(os.Stderr, err)
\t\tos.Exit(1)
\t}
\thash, err := bcrypt.GenerateFromPassword([]byte(strings.TrimRight(string(password), "\\n")), bcrypt.MinCost)
\tif err != nil {
\t\tfmt.Fprintln(os.Stderr, err)
\t\tos.Exit(1)
\t}
\tfmt.Printf("%s:%s\\n", os.Args[1], hash)
}
"""


def registry_dir() -> Path:
    """Cache directory of the pinned registry (``registry-<version>/``), apart from the control plane's."""
    return cache_root() / f"registry-{versions.REGISTRY_VERSION}"


def registry_paths() -> dict[str, Path]:
    """``{"registry": ..., "registry-htpasswd": ...}``: where :func:`ensure_registry` puts them."""
    return {name: registry_dir() / "bin" / name for name in REGISTRY_BINARIES}


def registry_build() -> GoBuild:
    """Both binaries from one generated module requiring the pinned distribution (so that
    ``golang.org/x/crypto`` is the version it pins), stamped as its Makefile does."""
    version = versions.REGISTRY_VERSION
    go_mod = (
        f"module kubekeep.test/testenv/build/registry\n\ngo {versions.GO_DIRECTIVE}\n\n"
        f"require {REGISTRY_MODULE} {version}\n"
    )
    return GoBuild(
        name="registry",
        binaries=REGISTRY_BINARIES,
        packages=("./cmd/registry", "./cmd/registry-htpasswd"),
        go_mod=lambda _workdir: go_mod,
        ldflags=("-s", "-w", "-X", f"{REGISTRY_MODULE}/version.version={version}"),
        extra_files={
            "cmd/registry/main.go": _REGISTRY_MAIN,
            "cmd/registry-htpasswd/main.go": _REGISTRY_HTPASSWD_MAIN,
        },
    )


def _registry_stamp() -> tuple[Path, str]:
    """The built binaries' source digest beside them: our mains live here, so editing them rebuilds."""
    digest = hashlib.sha256((versions.REGISTRY_VERSION + _REGISTRY_MAIN + _REGISTRY_HTPASSWD_MAIN).encode()).hexdigest()
    return registry_dir() / "bin" / "source-sha256", digest


def ensure_registry(progress: Progress = _stderr) -> dict[str, Path]:
    """Build the pinned registry and ``registry-htpasswd`` into their cache directory if either
    is missing or was built from other sources; return :func:`registry_paths`."""
    paths = registry_paths()
    stamp, digest = _registry_stamp()

    def fresh() -> bool:
        runnable = all(p.is_file() and os.access(p, os.X_OK) for p in paths.values())
        return runnable and stamp.is_file() and stamp.read_text().strip() == digest

    if not fresh():
        with _build_lock(progress, registry_dir()):
            if not fresh():
                go = go_binary()
                _check_go_version(go)
                (cache_root() / "go-build").mkdir(parents=True, exist_ok=True)
                _run_go_build(registry_build(), progress, registry_dir())
                stamp.write_text(digest + "\n")
    return paths
