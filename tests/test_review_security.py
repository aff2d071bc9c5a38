"""`imgclust review`'s safety: token, Host, Origin, what it serves, loopback, the folder's lock.

The app's checks through Starlette's TestClient, then the same on a real uvicorn server on a
free port (its bound socket, raw requests, a non-loopback address)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="pip install 'imgclust[review]'")
import httpx
from test_review import BASE, ORIGIN, PORT, Session, make_out

from imgclust.assign import assign_folder
from imgclust.exceptions import OutputError
from imgclust.review.app import ReviewServer
from imgclust.steps import output_folder


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_out(tmp_path_factory.mktemp("sec"))[0]


@pytest.fixture
def session(out: Path) -> Iterator[Session]:
    s = Session(out)
    yield s
    s.close()


def fresh_client(session: Session, **kw: object) -> object:
    from starlette.testclient import TestClient

    return TestClient(session.client.app, **kw)  # type: ignore[arg-type]


def test_no_token_no_access(session: Session) -> None:
    bare = fresh_client(session, base_url=BASE)
    for url in ("/", "/api/state", "/report/index.html", "/static/review.js", "/api/cluster/0"):
        assert bare.get(url).status_code == 403, url  # type: ignore[attr-defined]
    assert bare.get("/?token=wrong").status_code == 403  # type: ignore[attr-defined]
    r = bare.get("/api/state?token=t0k", follow_redirects=False)  # type: ignore[attr-defined]
    assert r.status_code == 303 and r.headers["location"] == "/api/state"  # token leaves the URL
    assert "httponly" in r.headers["set-cookie"].lower()
    assert "samesite=strict" in r.headers["set-cookie"].lower()
    assert bare.get("/api/state").status_code == 200  # type: ignore[attr-defined]  # the cookie


def test_foreign_host_is_refused_even_with_the_token(session: Session) -> None:
    for host in ("evil.example", f"evil.example:{PORT}", "127.0.0.1:1", f"127.0.0.2:{PORT}"):
        r = session.client.get("/api/state", headers={"host": host})
        assert r.status_code == 403 and "Host" in r.text, host
    assert (
        session.client.get("/api/state", headers={"host": f"localhost:{PORT}"}).status_code == 200
    )


def test_cross_origin_and_non_json_writes_are_refused(session: Session) -> None:
    body = {"op": "rename", "cluster": 0, "name": "pwned", "seen": 0}
    c = session.client
    assert c.post("/api/edit", json=body).status_code == 403  # no Origin
    assert (
        c.post("/api/edit", json=body, headers={"origin": "http://evil.example"}).status_code == 403
    )
    other = f"http://127.0.0.1:{PORT + 1}"
    assert c.post("/api/edit", json=body, headers={"origin": other}).status_code == 403
    form = c.post(
        "/api/edit", content="op=rename", headers={**ORIGIN, "content-type": "text/plain"}
    )
    assert form.status_code == 415
    assert c.request("PUT", "/api/edit", json=body, headers=ORIGIN).status_code == 405
    assert (
        session.state()["clusters"][0]["name"] == "red things" and session.state()["version"] == 0
    )
    assert c.post("/api/edit", json=body, headers=ORIGIN).status_code == 200


def test_only_out_and_the_collection_are_served(session: Session, tmp_path: Path) -> None:
    c, out = session.client, session.out
    secret = tmp_path / "secret.txt"
    secret.write_text("secret", "utf-8")
    (out / "link-out.txt").symlink_to(secret)
    photo = next(p for p in session.review.current.paths)
    assert c.get("/report/index.html").status_code == 200
    thumb = session.state()["clusters"][0]["cover"][0]["thumb"]
    assert thumb.startswith("report/thumbs/") and c.get("/" + thumb).status_code == 200
    for url in (
        "/report/../secret.txt",
        "/report/%2e%2e/%2e%2e/etc/passwd",
        "/report/..%2f..%2fetc%2fpasswd",
        "/report//etc/passwd",
        "/report/.imgclust/model.npz",
        "/report/.imgclust/edits.jsonl",
        "/report/link-out.txt",
        "/report/thumbs",
        "/static/../app.py",
        "/static/review.html",
    ):
        assert c.get(url).status_code == 404, url
    assert c.get("/photo", params={"path": photo}).status_code == 200
    for path in (str(secret), "/etc/passwd", photo + "/../../" + os.path.basename(photo),
                 f"{Path(photo).parent}/./{Path(photo).name}"):  # fmt: skip
        assert c.get("/photo", params={"path": path}).status_code == 404, path


def test_the_folder_lock_keeps_cli_commands_and_a_second_app_out(out: Path, tmp_path: Path) -> None:
    with ReviewServer(out):
        with pytest.raises(OutputError, match="in use by `imgclust review`"):
            assign_folder([tmp_path], out, workers=0)
        with pytest.raises(OutputError, match="in use by `imgclust review`"), ReviewServer(out):
            pass
    with (
        output_folder(out, "assign", create=False),
        pytest.raises(OutputError, match="in use by `imgclust assign`"),
        ReviewServer(out),
    ):
        pass


def _outbound_address() -> str | None:
    """This machine's address on a non-loopback interface, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))  # no packet is sent: picks the route's address
            addr = s.getsockname()[0]
        except OSError:
            return None
    return None if addr.startswith("127.") or addr == "0.0.0.0" else addr


def test_a_real_server_on_loopback_only(out: Path) -> None:
    with ReviewServer(out) as server:
        server.start()
        assert server.sock.getsockname()[0] == "127.0.0.1"
        assert server.port > 0
        url = f"http://127.0.0.1:{server.port}"
        with httpx.Client(base_url=url, follow_redirects=True) as client:
            assert client.get("/api/state").status_code == 403
            assert client.get("/api/state", headers={"host": "evil.example"}).status_code == 403
            r = client.get(f"/?token={server.token}")  # follows the redirect with the cookie
            assert r.status_code == 200 and "imgclust review" in r.text
            assert "script-src 'self'" in r.headers["content-security-policy"]
            assert client.get("/report/.imgclust/model.npz").status_code == 404
            assert client.get("/photo", params={"path": "/etc/passwd"}).status_code == 404
            body = {
                "op": "rename",
                "cluster": 2,
                "name": "over http",
                "seen": server.review.version,
            }
            assert client.post("/api/edit", json=body).status_code == 403  # no Origin
            bad = {"origin": "http://evil.example"}
            assert client.post("/api/edit", json=body, headers=bad).status_code == 403
            assert client.post("/api/edit", json=body, headers={"origin": url}).status_code == 200
        other = _outbound_address()
        if other is not None:  # the same port on the machine's LAN address: nothing listens
            with pytest.raises(OSError), socket.create_connection((other, server.port), 1):
                pass
    assert "over http" in (out / "clusters.csv").read_text("utf-8")  # written on stop


def test_the_command_prints_a_token_url_and_ctrl_c_stops_it(tmp_path: Path) -> None:
    import re
    import signal
    import subprocess
    import sys

    out = make_out(tmp_path)[0]
    cmd = [sys.executable, "-c", "from imgclust.cli import main; main()", "review", str(out),
           "--no-browser"]  # fmt: skip
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        found = re.match(r"http://127\.0\.0\.1:(\d+)/\?token=([\w-]{40,})$", line.strip())
        assert found, line
        port = int(found.group(1))
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", follow_redirects=True) as client:
            assert client.get("/api/state").status_code == 403
            assert client.get(line.strip()).status_code == 200
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        assert "stopped; its edits are saved" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    with output_folder(out, "run", create=False):  # the lock was let go
        pass
