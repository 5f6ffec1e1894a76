"""The ASGI application: routes, page handlers and templates.

Pages are rendered on the server (Jinja2) from ``kubekeep.api`` data read through
``catalog.Catalog``; ``static/ui.js`` only adds conveniences (live filtering, keyboard steps
through the timeline, the restore dialog). Handlers are synchronous and run in Starlette's
thread pool, since the API they call blocks on storage.
"""

from __future__ import annotations

import dataclasses
import math
import secrets
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, quote, urlencode

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from kubekeep import __version__, api, errors
from kubekeep.ui import rendering
from kubekeep.ui.access import AccessGuard, csrf_token
from kubekeep.ui.catalog import Catalog, DiffRow, Row
from kubekeep.ui.restoring import EXISTING, RestoreDisabled, RestoreRequest, RestoreRun, Restores

T = TypeVar("T")

HERE = Path(__file__).parent
SNAPSHOTS_PER_PAGE = 100
ENTRIES_PER_PAGE = 200
CHANGES_PER_PAGE = 200
NAMESPACES_PER_PAGE = 200
DRILLS_PER_PAGE = 100
TIMELINE_WINDOW = 7  # snapshots shown on each side of the current one
MAX_FORM_BYTES = 64 * 1024


class _Forbidden(errors.UsageError):
    """A request that fails the CSRF check (answered with a plain 403)."""


@dataclass(frozen=True)
class Page:
    """One page of a longer list."""

    items: Sequence[Any]
    number: int
    pages: int
    total: int

    @classmethod
    def of(cls, items: Sequence[T], number: int, size: int) -> Page:
        pages = max(1, math.ceil(len(items) / size))
        number = min(max(1, number), pages)
        return cls(items[(number - 1) * size : number * size], number, pages, len(items))


@dataclass(frozen=True)
class UISettings:
    """How the server was started (shown in the page header)."""

    location: str
    allow_restore: bool
    context: str = ""


class UI:
    """The handlers, bound to one repository."""

    def __init__(self, repo: api.Repository, settings: UISettings, token: str, kubeconfig: str | None) -> None:
        self.settings = settings
        self.catalog = Catalog(repo)
        self.restores = Restores(repo, allowed=settings.allow_restore, kubeconfig=kubeconfig, context=settings.context)
        self.csrf = csrf_token(token)
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters.update(
            size=rendering.human_size,
            time=rendering.timestamp,
            urlpath=_urlpath,
            value=rendering.value_text,
            secret_value=rendering.secret_value,
            seconds=rendering.seconds,
        )
        self.env.globals.update(
            version=__version__, settings=settings, csrf=self.csrf, query=_query, chain_start=self.catalog.chain_start
        )
        self.css = rendering.pygments_css().encode()

    # -- helpers --------------------------------------------------------------------------------
    def render(self, template: str, code: int = 200, **context: Any) -> HTMLResponse:
        return HTMLResponse(self.env.get_template(template).render(**context), status_code=code)

    def error(self, request: Request, exc: Exception) -> Response:
        if isinstance(exc, RestoreDisabled):
            status = 403
        elif isinstance(exc, errors.SnapshotNotFound | errors.PathNotFound):
            status = 404
        elif isinstance(exc, errors.UsageError):
            status = 400
        elif isinstance(exc, errors.ConnectorError):
            status = 502  # the cluster refused or could not be reached
        else:
            status = 500
        if request.headers.get("x-fragment"):
            return self.render("_error.html", status, message=str(exc))
        return self.render("error.html", status, message=str(exc), title="Error")

    def _check_csrf(self, form: dict[str, str]) -> None:
        if not secrets.compare_digest(form.get("csrf", "").encode(), self.csrf.encode()):
            raise _Forbidden("the form's CSRF token is missing or wrong: reload the page and try again")

    # -- snapshot list ----------------------------------------------------------------------------
    def snapshots(self, request: Request) -> Response:
        q = request.query_params
        text = q.get("q", "").strip().lower()
        kind, tag = q.get("kind", ""), q.get("tag", "")
        show_all = q.get("all") == "1"
        every = list(reversed(self.catalog.snapshots()))
        kinds = sorted({s.kind for s in every if s.kind})
        tags = sorted({t for s in every for t in s.tags})
        # snapshots attached to another (etcd delta segments) are counted, not listed, unless
        # asked for or their layer is chosen, as `kubekeep snapshots` does
        snaps = every if show_all or kind else [s for s in every if s.extends is None]
        shown = [
            s
            for s in snaps
            if (not kind or s.kind == kind) and (not tag or tag in s.tags) and (not text or text in _search_text(s))
        ]
        page = Page.of(shown, _int(q.get("page")), SNAPSHOTS_PER_PAGE)
        self.catalog.warm_latest()
        windows: list[api.RecoveryWindow] = []
        windows_error = ""
        if page.number == 1:
            try:
                windows = self.catalog.recovery_windows()
            except errors.KubekeepError as exc:  # the list is still worth showing
                windows_error = str(exc)
        return self.render(
            "snapshots.html",
            title="Snapshots",
            page=page,
            q=q.get("q", ""),
            kind=kind,
            tag=tag,
            kinds=kinds,
            tags=tags,
            total=len(snaps),
            attached=sum(1 for s in every if s.extends is not None),
            show_all=show_all,
            windows=windows,
            windows_error=windows_error,
        )

    def compare(self, request: Request) -> Response:
        ids = request.query_params.getlist("s")
        if len(ids) != 2:
            raise errors.UsageError("select exactly two snapshots to compare")
        a, b = sorted((self.catalog.snapshot(i) for i in ids), key=lambda s: (s.time, s.id))
        return RedirectResponse(f"/diff?{urlencode({'a': a.id, 'b': b.id})}", status_code=303)

    # -- one snapshot -------------------------------------------------------------------------------
    def snapshot_home(self, request: Request) -> Response:
        snap = self.catalog.snapshot(request.path_params["snap"])
        return RedirectResponse(f"/s/{snap.id}/tree/", status_code=303)

    def tree(self, request: Request) -> Response:
        snap = self.catalog.snapshot(request.path_params["snap"])
        path = request.path_params.get("path", "").strip("/")
        self.catalog.warm(snap)
        row = self.catalog.stat(snap, path)
        if row.type == "dir":
            return self._directory(request, snap, path)
        return self._file(request, snap, row)

    def _directory(self, request: Request, snap: api.Snapshot, path: str) -> Response:
        q = request.query_params
        text = q.get("q", "").strip().lower()
        rows = self.catalog.listing(snap, path)
        shown = [r for r in rows if not text or text in r.name.lower() or text in r.kind.lower()]
        page = Page.of(shown, _int(q.get("page")), ENTRIES_PER_PAGE)
        namespace = _namespace_of_dir(snap, path)
        return self.render(
            "tree.html",
            title=f"/{path} · {snap.short_id}",
            snap=snap,
            path=path,
            crumbs=_crumbs(path),
            page=page,
            q=q.get("q", ""),
            total=len(rows),
            has_objects=any(r.kind for r in rows),
            namespace=namespace,
            tab="files",
        )

    def _file(self, request: Request, snap: api.Snapshot, row: Row) -> Response:
        if row.type == "symlink":
            return self.render(
                "file.html",
                title=f"/{row.path} · {snap.short_id}",
                snap=snap,
                row=row,
                crumbs=_crumbs(row.path),
                content=None,
                too_large=False,
                reveal=False,
                is_object=False,
                history=[],
                tab="files",
            )
        too_large = row.size > rendering.SHOW_LIMIT
        reveal = request.query_params.get("reveal") == "1"
        content = None
        if not too_large:
            data = self.catalog.read(snap, row.path, rendering.SHOW_LIMIT)
            content = rendering.render_file(row.name, data, secret=row.kind == "Secret", reveal=reveal)
        is_object = (
            snap.kind == api.SnapshotKind.MANIFESTS and api.parse_object_path(row.path) is not None and bool(row.kind)
        )
        history = [s for s in self.catalog.history(snap) if s.id != snap.id] if is_object else []
        return self.render(
            "file.html",
            title=f"{row.name} · {snap.short_id}",
            snap=snap,
            row=row,
            crumbs=_crumbs(row.path),
            content=content,
            too_large=too_large,
            reveal=reveal,
            is_object=is_object,
            history=list(reversed(history)),
            tab="files",
        )

    def raw(self, request: Request) -> Response:
        snap = self.catalog.snapshot(request.path_params["snap"])
        path = request.path_params["path"].strip("/")
        row = self.catalog.stat(snap, path)
        if row.type != "file":
            raise errors.UsageError(f"/{path} is a {row.type}, not a file")
        pieces: Iterator[bytes] = api.cat(self.catalog.repo, f"{snap.id}:{path}")
        filename = quote(row.name, safe="")
        return StreamingResponse(
            pieces,
            media_type="application/octet-stream",
            headers={
                "content-disposition": f"attachment; filename*=UTF-8''{filename}",
                "content-length": str(row.size),
            },
        )

    # -- cluster dashboard ------------------------------------------------------------------------------
    def cluster(self, request: Request) -> Response:
        snap = self.catalog.snapshot(request.path_params["snap"])
        if snap.kind != api.SnapshotKind.MANIFESTS:
            raise errors.UsageError(
                f"snapshot {snap.short_id} is a {snap.kind} snapshot: the cluster view "
                "needs a manifests snapshot (taken from k8s://)"
            )
        ns = request.query_params.get("ns", "")
        history = self.catalog.history(snap)
        at = next((i for i, s in enumerate(history) if s.id == snap.id), None)
        if at is None:  # deleted from the repository since the list was read
            history, at = [snap], 0
        previous = history[at - 1] if at > 0 else None
        following = history[at + 1] if at + 1 < len(history) else None
        self.catalog.warm(*(s for s in (previous, following) if s is not None))
        summary = self.catalog.summary(snap, ns)
        state = summary.namespaces.get(ns) if ns else None
        if ns and state is None:
            raise errors.PathNotFound(f"namespace {ns} is not in snapshot {snap.short_id}")
        namespaces = (
            [r.name for r in self.catalog.listing(snap, api.NAMESPACES_DIR) if r.type == "dir"]
            if _has_dir(self.catalog, snap, api.NAMESPACES_DIR)
            else []
        )
        overview = Page.of(
            list(summary.namespaces.values()), _int(request.query_params.get("page")), NAMESPACES_PER_PAGE
        )
        lo, hi = max(0, at - TIMELINE_WINDOW), min(len(history), at + TIMELINE_WINDOW + 1)
        return self.render(
            "cluster.html",
            title=f"Cluster · {snap.short_id}",
            snap=snap,
            summary=summary,
            ns=ns,
            state=state,
            namespaces=namespaces,
            overview=overview,
            timeline=history[lo:hi],
            timeline_first=history[0] if lo > 0 else None,
            timeline_last=history[-1] if hi < len(history) else None,
            position=at + 1,
            count=len(history),
            previous=previous,
            following=following,
            phases=api.pod_phase_totals(summary),
            tab="cluster",
        )

    # -- diff -------------------------------------------------------------------------------------------
    def diff(self, request: Request) -> Response:
        q = request.query_params
        older, newer = self.catalog.snapshot(_required(q, "a")), self.catalog.snapshot(_required(q, "b"))
        churn = q.get("churn") == "1"
        result = self.catalog.diff(older, newer, churn=churn)
        status, text = q.get("status", ""), q.get("q", "").strip().lower()
        rows = [r for r in result.rows if (not status or r.status == status) and (not text or text in _diff_text(r))]
        page = Page.of(rows, _int(q.get("page")), CHANGES_PER_PAGE)
        return self.render(
            "diff.html",
            title=f"{older.short_id} → {newer.short_id}",
            diff=result,
            older=older,
            newer=newer,
            churn=churn,
            status=status,
            q=q.get("q", ""),
            page=page,
            counts=result.counts(),
        )

    def diff_object(self, request: Request) -> Response:
        q = request.query_params
        older, newer = self.catalog.snapshot(_required(q, "a")), self.catalog.snapshot(_required(q, "b"))
        path = _required(q, "path").strip("/")
        churn = q.get("churn") == "1"
        row = next((r for r in self.catalog.diff(older, newer, churn=churn).rows if r.path == path), None)
        reveal = q.get("reveal") == "1"
        hidden_fields = 0
        if row is not None and not reveal:  # a Secret's values stay hidden until asked, as in the file view
            fields, hidden_fields = rendering.hide_secret_fields(row.kind, row.fields)
            row = dataclasses.replace(row, fields=fields)
        texts: list[str | None] = []
        binary = False
        for snap in (older, newer):
            try:
                entry = self.catalog.stat(snap, path)
            except errors.PathNotFound:
                texts.append(None)
                continue
            if entry.type != "file":
                raise errors.UsageError(f"/{path} is a {entry.type} in snapshot {snap.short_id}, not a file")
            data = self.catalog.read(snap, path, rendering.SHOW_LIMIT)
            binary = binary or rendering.classify(entry.name, data) == "binary"
            if entry.kind == "Secret" and not reveal:
                data, hidden = rendering.hide_secret_values(data)
                hidden_fields += hidden
            texts.append(data.decode("utf-8", "replace"))
        if texts == [None, None]:
            raise errors.PathNotFound(f"/{path} is in neither snapshot")
        lines = [] if binary else rendering.side_by_side(texts[0] or "", texts[1] or "")
        return self.render(
            "object_diff.html",
            title=f"{path.rsplit('/', 1)[-1]} · diff",
            older=older,
            newer=newer,
            path=path,
            row=row,
            churn=churn,
            lines=lines,
            binary=binary,
            in_older=texts[0] is not None,
            in_newer=texts[1] is not None,
            hidden_secrets=hidden_fields,
            reveal=reveal,
        )

    # -- restore drills ---------------------------------------------------------------------------------
    def drills(self, request: Request) -> Response:
        found, damaged = self.catalog.drills()
        newest = list(reversed(found))
        page = Page.of(newest, _int(request.query_params.get("page")), DRILLS_PER_PAGE)
        return self.render("drills.html", title="Restore drills", page=page, total=len(newest), damaged=damaged)

    def drill(self, request: Request) -> Response:
        d = self.catalog.drill(request.path_params["drill"])
        # what went wrong first, then the rest in the report's order
        objects = sorted(d.objects, key=lambda o: not (o.differences or o.action not in ("created", "skipped")))
        page = Page.of(objects, _int(request.query_params.get("page")), ENTRIES_PER_PAGE)
        return self.render("drill.html", title=f"Drill {d.short_id}", d=d, page=page)

    # -- restore ----------------------------------------------------------------------------------------
    def _restorable(self, ref: str) -> api.Snapshot:
        snap = self.catalog.snapshot(ref)
        if snap.kind != api.SnapshotKind.MANIFESTS:
            raise errors.UsageError(
                f"snapshot {snap.short_id} is a {snap.kind} snapshot: only manifests snapshots restore into a cluster"
            )
        return snap

    def restore_dialog(self, request: Request) -> Response:
        snap = self._restorable(request.path_params["snap"])
        q = request.query_params
        context = q.get("context", self.restores.default_context or str(snap.source.get("host", "")))
        req = RestoreRequest(
            snap.id,
            q.get("path", "").strip("/"),
            q.get("namespace", ""),
            context,
            q.get("existing", "skip"),
            q.get("target_namespace", ""),
        ).check()
        if req.path:
            self.catalog.stat(snap, req.path)
        template = "_restore_form.html" if request.headers.get("x-fragment") else "restore.html"
        return self.render(template, title="Restore", snap=snap, req=req, existing_choices=EXISTING)

    async def restore_dry_run(self, request: Request) -> Response:
        form = await _form(request)
        self._check_csrf(form)
        snap = await _in_thread(lambda: self._restorable(request.path_params["snap"]))
        req = RestoreRequest(
            snap.id,
            form.get("path", "").strip("/"),
            form.get("namespace", "").strip(),
            form.get("context", "").strip(),
            form.get("existing", "skip"),
            form.get("target_namespace", "").strip(),
        )
        run = await _in_thread(lambda: self.restores.dry_run(req))
        return self._restore_page(request, snap, run)

    async def restore_apply(self, request: Request) -> Response:
        form = await _form(request)
        self._check_csrf(form)
        if form.get("confirm") != "yes":
            raise errors.UsageError("tick the confirmation box to restore")
        run = await _in_thread(lambda: self.restores.apply(request.path_params["plan"]))
        return self._restore_page(request, self.catalog.snapshot(run.request.snapshot), run)

    def _restore_page(self, request: Request, snap: api.Snapshot, run: RestoreRun) -> Response:
        template = "_restore_result.html" if request.headers.get("x-fragment") else "restore.html"
        return self.render(template, title="Restore", snap=snap, req=run.request, run=run, existing_choices=EXISTING)

    def pygments_css(self, request: Request) -> Response:
        return Response(self.css, media_type="text/css", headers={"cache-control": "max-age=3600"})


def create_app(
    repo: api.Repository,
    *,
    token: str,
    location: str = "",
    allow_restore: bool = False,
    kubeconfig: str | None = None,
    context: str | None = None,
    cookie: str = "kubekeep_ui",
    loopback_only: bool = True,
) -> Starlette:
    """The UI over an open repository. ``token`` guards every request (``access``); restores
    into a cluster need ``allow_restore``; ``kubeconfig``/``context`` choose the target cluster."""
    ui = UI(repo, UISettings(location, allow_restore, context or ""), token, kubeconfig)

    routes = [
        Route("/", ui.snapshots),
        Route("/compare", ui.compare),
        Route("/diff", ui.diff),
        Route("/diff/object", ui.diff_object),
        Route("/s/{snap}", ui.snapshot_home),
        Route("/s/{snap}/tree/{path:path}", ui.tree),
        Route("/s/{snap}/raw/{path:path}", ui.raw),
        Route("/s/{snap}/cluster", ui.cluster),
        Route("/s/{snap}/restore", ui.restore_dialog),
        Route("/s/{snap}/restore", ui.restore_dry_run, methods=["POST"]),
        Route("/restore/{plan}/apply", ui.restore_apply, methods=["POST"]),
        Route("/drills", ui.drills),
        Route("/drills/{drill}", ui.drill),
        Route("/static/pygments.css", ui.pygments_css),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]

    async def on_error(request: Request, exc: Exception) -> Response:
        if isinstance(exc, _Forbidden):
            return Response(f"403: {exc}\n", status_code=403, media_type="text/plain")
        return ui.error(request, exc)

    async def on_crash(request: Request, exc: Exception) -> Response:
        return ui.render(
            "error.html",
            500,
            message=f"internal error ({type(exc).__name__}: {exc}); the server log has the details",
            title="Error",
        )

    app = Starlette(
        routes=routes,
        exception_handlers={errors.KubekeepError: on_error, Exception: on_crash},
        middleware=[Middleware(AccessGuard, token=token, cookie=cookie, loopback_only=loopback_only)],
    )
    app.state.ui = ui
    ui.catalog.warm_latest()
    return app


async def _in_thread(fn: Callable[[], T]) -> T:
    return await run_in_threadpool(fn)


async def _form(request: Request) -> dict[str, str]:
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        raise errors.UsageError("expected a form (application/x-www-form-urlencoded)")
    body = b""
    async for piece in request.stream():
        body += piece
        if len(body) > MAX_FORM_BYTES:
            raise errors.UsageError("form too large")
    return {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items()}


def _int(value: str | None) -> int:
    try:
        return int(value or 1)
    except ValueError:
        return 1


def _required(params: Any, name: str) -> str:
    value = params.get(name, "")
    if not value:
        raise errors.UsageError(f"missing parameter {name!r}")
    return str(value)


def _urlpath(path: str) -> str:
    return quote(path, safe="/")


def _query(**params: Any) -> str:
    return urlencode({k: v for k, v in params.items() if v not in (None, "", False, 0)})


def _search_text(s: api.Snapshot) -> str:
    return " ".join([s.id, s.uri, s.kind, str(s.source.get("host", "")), s.hostname, *s.tags]).lower()


def _diff_text(r: DiffRow) -> str:
    return " ".join([r.path, r.kind, r.namespace, r.name, *(f.path for f in r.fields)]).lower()


def _crumbs(path: str) -> list[tuple[str, str]]:
    parts = [p for p in path.split("/") if p]
    return [(p, "/".join(parts[: i + 1])) for i, p in enumerate(parts)]


def _namespace_of_dir(snap: api.Snapshot, path: str) -> str:
    parts = path.split("/")
    if snap.kind == api.SnapshotKind.MANIFESTS and len(parts) == 2 and parts[0] == api.NAMESPACES_DIR:
        return parts[1]
    return ""


def _has_dir(catalog: Catalog, snap: api.Snapshot, path: str) -> bool:
    try:
        return catalog.stat(snap, path).type == "dir"
    except errors.PathNotFound:
        return False
