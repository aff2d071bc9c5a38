"""``imgclust review``: a local web app over an output folder, to rename, merge, split and move.

Starlette on uvicorn: a real ASGI framework and server, small enough to read (routing,
requests, file responses and a test client, nothing else), where a hand-rolled
``http.server`` would leave the parsing, the threading and the file serving to us. The page's
script is our own (``static/review.js``), nothing from a CDN.

Safety, as Jupyter Server does it:

* it listens on 127.0.0.1 only (a socket bound here, handed to uvicorn);
* every request needs the token: ``?token=`` once (it is then set as a cookie and the URL
  loses it), or the cookie; without it: 403;
* the Host header must be ``127.0.0.1:PORT`` or ``localhost:PORT`` (a DNS-rebinding page
  sends its own name): 403 otherwise;
* writes are POSTs with a JSON body whose Origin header is this app's own: 403 otherwise;
* it serves only OUT's report files (not ``.imgclust/``) and the photos of the clustering,
  each path resolved and compared, so nothing else is reachable (404);
* it holds the output folder's lock while it runs, so other commands on OUT are refused and
  it refuses to start while another holds it.

Every edit names the journal length the page saw; a stale one (another tab edited since) is
refused with 409 and the page reloads the state.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import threading
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..exceptions import ConfigError, ImgclustError
from .edits import EXCLUDED_REASON
from .session import Review

_HERE = Path(__file__).resolve().parent
INSTALL_HINT = "pip install 'imgclust[review]' (starlette and uvicorn)"
MAX_BODY = 16 * 2**20  # an edit's JSON (500 moved paths are ~50 kB)
PAGE_SIZE = 200
_STATIC = {"review.js": "text/javascript", "review.css": "text/css"}


def _require_web() -> None:
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise ConfigError(f"imgclust review needs starlette and uvicorn: {INSTALL_HINT}") from exc


def bind_loopback(port: int | None) -> socket.socket:
    """A listening TCP socket on 127.0.0.1 (a free port when ``port`` is ``None`` or 0).

    Raises:
        ConfigError: the port is taken or cannot be bound.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if os.name != "nt":  # a restart may reuse the port at once (Windows would share it)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port or 0))
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}; choose another --port "
            "or leave it out for a free one"
        ) from exc
    sock.listen(64)
    return sock


# -- the guard ------------------------------------------------------------------------------


class Guard:
    """ASGI middleware: Host, token and Origin checks before any route sees a request."""

    def __init__(self, app: Any, *, token: str, port: int) -> None:
        self.app = app
        self.token = token
        self.cookie = f"imgclust-review-{port}"
        self.hosts = {f"127.0.0.1:{port}", f"localhost:{port}"}
        self.origins = {f"http://{h}" for h in self.hosts}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        from starlette.requests import Request
        from starlette.responses import PlainTextResponse, RedirectResponse

        if scope["type"] != "http":
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        refusal = self._refusal(request)
        if refusal is not None:
            await PlainTextResponse(refusal[1], status_code=refusal[0])(scope, receive, send)
            return
        given = request.query_params.get("token")
        if given is not None and request.method == "GET":
            # Token once in the URL: set it as a cookie and drop it from the address bar.
            query = urllib.parse.urlencode(
                [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
            )
            response = RedirectResponse(request.url.path + (f"?{query}" if query else ""), 303)
            response.set_cookie(self.cookie, self.token, httponly=True, samesite="strict", path="/")
            await response(scope, receive, send)
            return

        async def secured(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"x-frame-options", b"DENY"),
                    (b"cache-control", b"no-store"),
                ]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, secured)

    def _refusal(self, request: Any) -> tuple[int, str] | None:
        """Why a request is refused (status, text), or ``None``."""
        if request.headers.get("host", "") not in self.hosts:
            return 403, "unknown Host: open the address imgclust review printed"
        if request.method not in ("GET", "HEAD", "POST"):
            return 405, "method not allowed"
        given = request.query_params.get("token") or request.cookies.get(self.cookie) or ""
        if not secrets.compare_digest(given.encode(), self.token.encode()):
            return 403, "missing or wrong token: open the address imgclust review printed"
        if request.method == "POST":
            if request.headers.get("origin") not in self.origins:
                return 403, "cross-origin write refused"
            if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
                return 415, "edits are JSON"
        return None


# -- the app --------------------------------------------------------------------------------


def create_app(review: Review, *, token: str, port: int) -> Any:
    """The Starlette app over ``review``, behind :class:`Guard` for ``127.0.0.1:port``."""
    _require_web()
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse, Response
    from starlette.routing import Route

    from ..decode import thumb_relpath
    from ..scan import display_path

    out = review.out.resolve()
    marker = (out / ".imgclust").resolve()
    latest: list[dict[str, Any]] = [{"of": None}]

    def photo_index() -> dict[str, Any]:
        """Per clustering: path → row, and the lower-case file names (for search). Built
        whole, then swapped in: requests run in threads and must never see half of it."""
        c = review.current
        entry = latest[0]
        if entry["of"] is not c:
            names = [os.path.basename(display_path(p)).lower() for p in c.paths]
            entry = {"of": c, "rows": {p: i for i, p in enumerate(c.paths)}, "names": names}
            latest[0] = entry
        return entry

    def photo(c: Any, i: int) -> dict[str, Any]:
        path = c.paths[i]
        return {
            "path": path,
            "name": os.path.basename(display_path(path)),
            "thumb": "report/" + thumb_relpath(path, c.report.thumb_size),
            "cluster": int(c.labels[i]),
            "rank": int(c.ranks[i]),
            "distance": round(float(c.distances[i]), 4),
            "outlier": bool(c.outliers[i]) if c.outliers is not None else False,
        }

    def summary() -> dict[str, Any]:
        c = review.current
        tree = c.tree
        return {
            "version": review.version,
            "published": review.published,
            "error": review.error,
            "can_undo": review.can_undo,
            "can_redo": review.can_redo,
            "history": [_describe(e) for e in review.history],
            "n_photos": len(c.paths),
            "n_excluded": sum(r.reason == EXCLUDED_REASON for r in c.rejected),
            "notes": review.notes,
            "clusters": [
                {
                    "id": s.cluster_id,
                    "name": s.name,
                    "size": s.size,
                    "classes": [d.split(",")[0] for d, _ in s.top_classes],
                    "group": tree.names[int(tree.groups[s.cluster_id])]
                    if tree is not None and s.cluster_id >= 0 and tree.groups[s.cluster_id] >= 0
                    else "",
                    "cover": [photo(c, int(i)) for i in s.members[:6]],
                }
                for s in sorted(c.clusters, key=lambda s: (s.cluster_id < 0, s.cluster_id))
            ],
        }

    def page(request: Request) -> Response:
        html = (_HERE / "static" / "review.html").read_text("utf-8")
        return Response(html, media_type="text/html; charset=utf-8", headers=_CSP)

    def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in _STATIC:
            return Response("not found", 404)
        return FileResponse(_HERE / "static" / name, media_type=_STATIC[name])

    def report_file(request: Request) -> Response:
        target = _inside(out, request.path_params["path"])
        if target is None or target == marker or target.is_relative_to(marker):
            return Response("not found", 404)
        return FileResponse(target)

    def original(request: Request) -> Response:
        path = request.query_params.get("path", "")
        if path not in photo_index()["rows"] or not os.path.isfile(path):
            return Response("not found", 404)  # only the clustering's own photos
        return FileResponse(path)

    def state(request: Request) -> Response:
        return JSONResponse(summary())

    def cluster(request: Request) -> Response:
        c = review.current
        raw = request.path_params["cid"]
        cid = _int(raw, -10)  # (no cluster has that id: the unclustered are -1, unsorted -2)
        found = [s for s in c.clusters if s.cluster_id == cid]
        if not found:
            return JSONResponse({"error": f"no cluster {raw!r}"}, 404)
        offset = max(0, _int(request.query_params.get("offset"), 0))
        limit = min(2000, max(1, _int(request.query_params.get("limit"), PAGE_SIZE)))
        s = found[0]
        members = s.members[offset : offset + limit]
        return JSONResponse({
            "id": cid, "name": s.name, "size": s.size, "offset": offset,
            "version": review.version,
            "photos": [photo(c, int(i)) for i in members],
        })  # fmt: skip

    def search(request: Request) -> Response:
        q = request.query_params.get("q", "").strip().lower()
        if not q:
            return JSONResponse({"clusters": [], "photos": []})
        c = review.current
        ids = [
            s.cluster_id
            for s in c.clusters
            if q in s.name.lower() or any(q in d.lower() for d, _ in s.top_classes)
        ]
        names = photo_index()["names"]
        hits = [i for i, name in enumerate(names) if q in name][:200]
        return JSONResponse({"clusters": ids, "photos": [photo(c, i) for i in hits]})

    async def edit(request: Request) -> Response:
        body = await request.body()
        if len(body) > MAX_BODY:
            return JSONResponse({"error": "edit too large"}, 413)
        try:
            import json

            data = json.loads(body)
            if not isinstance(data, dict) or not isinstance(data.get("seen"), int):
                raise ValueError("an edit is a JSON object with the journal length seen")
        except ValueError as exc:
            return JSONResponse({"error": f"bad edit: {exc}"}, 400)
        from starlette.concurrency import run_in_threadpool

        from .edits import EditConflict

        try:  # a split runs k-means and the journal is fsynced: off the event loop
            await run_in_threadpool(review.edit, data, seen=data["seen"])
        except EditConflict as exc:
            return JSONResponse({"error": str(exc), "version": review.version}, 409)
        except ImgclustError as exc:
            return JSONResponse({"error": str(exc)}, 400)
        return JSONResponse(await run_in_threadpool(summary))

    app = Starlette(
        routes=[
            Route("/", page),
            Route("/favicon.ico", lambda request: Response(status_code=204)),
            Route("/static/{name}", static),
            Route("/report/{path:path}", report_file),
            Route("/photo", original),
            Route("/api/state", state),
            Route("/api/cluster/{cid}", cluster),
            Route("/api/search", search),
            Route("/api/edit", edit, methods=["POST"]),
        ]
    )
    return Guard(app, token=token, port=port)


_CSP = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    )
}


def _inside(root: Path, relative: str) -> Path | None:
    """``root/relative`` resolved, when it is a file inside ``root`` (links followed)."""
    try:
        target = (root / relative).resolve(strict=True)
    except (OSError, RuntimeError, ValueError):
        return None
    if not target.is_relative_to(root) or not target.is_file():
        return None
    return target


def _int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _describe(edit: dict[str, Any]) -> str:
    """An edit in a few words, for the page's history."""
    op = edit.get("op")
    if op == "rename":
        return f"rename #{edit.get('cluster')} to {edit.get('name')!r}"
    if op == "merge":
        return "merge " + ", ".join(f"#{c}" for c in edit.get("clusters", []))
    if op == "split":
        return f"split #{edit.get('cluster')}" + (f" in {edit['k']}" if edit.get("k") else "")
    from ..steps import plural

    paths = edit.get("paths", [])
    photos = plural(len(set(paths)) if isinstance(paths, list) else 0, "photo")
    if op == "move":
        to = edit.get("to")
        return f"move {photos} to " + ("a new cluster" if to in (None, "new") else f"#{to}")
    return f"{op} {photos}"


# -- the server -----------------------------------------------------------------------------


class ReviewServer:
    """The app on a loopback socket, holding the output folder's lock (a context manager).

    Args:
        out: the output folder of an earlier run.
        port: the port to listen on; ``None``: a free one.

    Raises:
        ConfigError: starlette/uvicorn are missing, or the port cannot be bound.
        InputError, OutputError: ``out`` holds no results, or another command holds it.
    """

    def __init__(self, out: Path, *, port: int | None = None) -> None:
        _require_web()
        self.out = Path(out).resolve()
        self.port_wanted = port
        self.token = secrets.token_urlsafe(32)
        self._stack = contextlib.ExitStack()
        self._thread: threading.Thread | None = None
        self.review: Review
        self.sock: socket.socket
        self.server: Any = None

    @property
    def port(self) -> int:
        """The port it listens on."""
        return int(self.sock.getsockname()[1])

    @property
    def url(self) -> str:
        """The address to open, with the token."""
        return f"http://127.0.0.1:{self.port}/?token={self.token}"

    def __enter__(self) -> ReviewServer:
        import uvicorn

        from ..steps import output_folder

        try:
            marker = self._stack.enter_context(output_folder(self.out, "review", create=False))
            # The port first: one in use is refused before the review writes its journal.
            self.sock = bind_loopback(self.port_wanted)
            self._stack.callback(self.sock.close)
            self.review = Review.open(marker)
            self._stack.callback(self.review.close)
            app = create_app(self.review, token=self.token, port=self.port)
            config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
            self.server = uvicorn.Server(config)
            self.review.start_publisher()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self._stack.close()

    def serve(self) -> None:
        """Serve until Ctrl-C (uvicorn's signal handling, in the main thread)."""
        self.server.run(sockets=[self.sock])

    def start(self) -> None:
        """Serve from a background thread (tests, the benchmark); :meth:`stop` ends it."""
        self._thread = threading.Thread(target=self.serve, name="imgclust-review", daemon=True)
        self._thread.start()
        while not self.server.started and self._thread.is_alive():
            threading.Event().wait(0.01)

    def stop(self) -> None:
        """Stop a server started with :meth:`start`."""
        if self._thread is not None:
            self.server.should_exit = True
            self._thread.join()
            self._thread = None


def review(
    out: Path,
    *,
    port: int | None = None,
    open_browser: bool = True,
    on_ready: Callable[[str], None] = print,
) -> None:
    """Serve the review app of ``out`` until Ctrl-C; edits are written as they are made.

    Raises:
        ConfigError, InputError, OutputError: see :class:`ReviewServer`.
    """
    with ReviewServer(out, port=port) as server:
        on_ready(server.url)
        for note in server.review.notes:
            on_ready(f"note: {note}")
        if open_browser:
            import webbrowser

            webbrowser.open(server.url)
        with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises the Ctrl-C it handled
            server.serve()
