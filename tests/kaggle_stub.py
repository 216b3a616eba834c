"""A stand-in Kaggle API server that the real `kaggle` client can talk to.

The client is pointed at it with KAGGLE_API_ENVIRONMENT=LOCALHOST (every call goes to
http://localhost) plus HTTP_PROXY=http://127.0.0.1:PORT, so requests arrive in absolute form
(`POST http://localhost/api/v1/...`); origin form is accepted too. See /work/shared/notes/kaggle-api.md.

    with KaggleStub({"digits": zip_bytes}) as stub:
        subprocess.run([...], env=stub.env(tmp_path))
        assert ("POST", "/api/v1/competitions.CompetitionApiService/DownloadDataFiles") in stub.requests
"""

from __future__ import annotations

import base64
import io
import json
import os
import sys
import threading
import time
import zipfile
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

API = "/api/v1/"
SERVICE = "competitions.CompetitionApiService/"
# Which failure knob (stub.fail[op]) governs which call.
OPS = {
    "ListDataFiles": "download",
    "DownloadDataFiles": "download",
    "DownloadDataFile": "download",
    "StartSubmissionUpload": "submit",
    "CreateSubmission": "submit",
    "GetSubmissionLimits": "limits",
    "ListSubmissions": "submissions",
}
MESSAGES = {
    401: "Unauthenticated",
    403: "You must accept this competition's rules before you'll be able to download files.",
    404: "Competition not found",
    500: "Internal server error",
}
CODE_COMPETITION_MESSAGE = (
    "Submission not allowed: this competition only accepts submissions from notebooks (kernels)."
)
LAST_MODIFIED = "Mon, 01 Jan 2024 00:00:00 GMT"


class KaggleStub:
    """Serves `competitions` (slug -> bytes of the competition zip) on 127.0.0.1:<free port>."""

    def __init__(self, competitions: dict[str, bytes], username: str = "tester", key: str = "secretkey123"):
        self.competitions = dict(competitions)
        self.username, self.key = username, key
        self.token = "tokensecret456"  # accepted as `Authorization: Bearer` (KAGGLE_API_TOKEN)
        self.requests: list[tuple[str, str]] = []
        self.submissions: list[dict] = []
        # op -> HTTP status (True means 500); a (status, n) tuple fails only the next n calls.
        self.fail: dict[str, int | bool | tuple[int, int]] = {}
        self.code_competitions: set[str] = set()
        self.score_fn: Callable[[str, bytes], float] = lambda competition, data: 0.5
        self.pending_polls = 0
        self.hidden_polls = 0  # a new submission is missing from the first N listings (eventual consistency)
        self.on_submit: Callable[[], None] | None = None  # called once a submission is recorded
        self.retry_after: str | None = None  # Retry-After header sent with every 429
        self.delay: dict[str, float] = {}  # op (as in OPS, or "blob") -> seconds to stall before answering
        self.truncate: dict[str, int] = {}  # slug -> send only this many bytes of its zip, then hang up
        self.times: list[tuple[float, str]] = []  # (time.monotonic(), path) of every request
        self._stopping = threading.Event()
        self._uploads: dict[str, dict] = {}  # upload token -> {"name", "data": bytes once PUT}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # -- lifecycle --
    def start(self) -> "KaggleStub":
        handler = type("Handler", (_Handler,), {"stub": self})
        self._server = _Server(("127.0.0.1", 0), handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes stalled handlers
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "KaggleStub":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server, "start() the stub first"
        return self._server.server_address[1]

    def env(self, home: Path, *, creds: str | None = "env", key: str | None = None) -> dict[str, str]:
        """A complete environment for a subprocess running the real client against this stub.

        creds: "env" (KAGGLE_USERNAME/KAGGLE_KEY), "file" (HOME/.kaggle/kaggle.json, chmod 600),
        "token" (KAGGLE_API_TOKEN) or None (no credentials anywhere). `key` overrides the key/token sent.
        """
        home = Path(home)
        config_dir = home / ".kaggle"
        config_dir.mkdir(parents=True, exist_ok=True)
        proxy = f"http://127.0.0.1:{self.port}"
        # Drop anything that could point the client at real credentials or the real Kaggle.
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("KAGGLE_") and "proxy" not in k.lower() and k != "XDG_CONFIG_HOME"}
        env.update(KAGGLE_API_ENVIRONMENT="LOCALHOST", HOME=str(home), KAGGLE_CONFIG_DIR=str(config_dir),
                   HTTP_PROXY=proxy, http_proxy=proxy, HTTPS_PROXY=proxy, https_proxy=proxy,
                   NO_PROXY="", no_proxy="")
        if creds == "env":
            env.update(KAGGLE_USERNAME=self.username, KAGGLE_KEY=key or self.key)
        elif creds == "file":
            cfg = config_dir / "kaggle.json"
            cfg.write_text(json.dumps({"username": self.username, "key": key or self.key}))
            cfg.chmod(0o600)
        elif creds == "token":
            env["KAGGLE_API_TOKEN"] = key or self.token
        return env

    def calls(self, method_name: str) -> int:
        """How many times an API method (e.g. 'DownloadDataFiles') was called."""
        return sum(1 for _, path in self.requests if path.endswith("/" + method_name))

    # -- behaviour --
    def _failure(self, op: str) -> int | None:
        with self._lock:
            knob = self.fail.get(op)
            if isinstance(knob, tuple):
                status, n = knob
                self.fail[op] = (status, n - 1) if n > 1 else None
                return status
            return 500 if knob is True else knob or None

    def _authorized(self, header: str) -> bool:
        basic = base64.b64encode(f"{self.username}:{self.key}".encode()).decode()
        return header in (f"Basic {basic}", f"Bearer {self.token}")

    def _stall(self, op: str) -> None:
        if self.delay.get(op):
            self._stopping.wait(self.delay[op])

    def _visible(self, sub: dict) -> bool:
        """Missing from the first `hidden_polls` listings after creation."""
        sub["listed"] = sub.get("listed", 0) + 1
        return sub["listed"] > self.hidden_polls

    def _submission_json(self, sub: dict) -> dict:
        """Pending for `pending_polls` listings after creation, then scored by score_fn."""
        out = {k: sub[k] for k in ("ref", "date", "description", "fileName")}
        if sub["polls"] < self.pending_polls:
            sub["polls"] += 1
            return out | {"status": "PENDING", "publicScore": "", "privateScore": ""}
        try:
            score = self.score_fn(sub["competition"], sub["data"])
        except Exception as e:  # a scoring failure is what Kaggle reports as status ERROR
            return out | {"status": "ERROR", "publicScore": "", "privateScore": "", "errorDescription": str(e)}
        return out | {"status": "COMPLETE", "publicScore": f"{score:.5f}", "privateScore": ""}


class _Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        """A client that gave up (timed out, hung up on a cut-short download) is expected here: stay quiet."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    stub: KaggleStub

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    # -- plumbing --
    def _path(self) -> str:
        return urlsplit(self.path).path  # absolute form (via proxy) and origin form alike

    def _body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", ""):
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0], 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            self.rfile.readline()
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send(self, status: int, body: bytes = b"", ctype: str = "application/json", headers: dict | None = None):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, obj: dict, status: int = 200) -> None:
        self._send(status, json.dumps(obj).encode())

    def _error(self, status: int, message: str | None = None) -> None:
        headers = {"Retry-After": self.stub.retry_after} if status == 429 and self.stub.retry_after else None
        body = {"code": status, "message": message or MESSAGES.get(status, "error")}
        self._send(status, json.dumps(body).encode(), headers=headers)

    # -- verbs --
    def do_POST(self) -> None:
        path, stub = self._path(), self.stub
        stub.requests.append(("POST", path))
        stub.times.append((time.monotonic(), path))
        body = json.loads(self._body() or b"{}")
        if path == API + "security.OAuthService/IntrospectToken":
            active = body.get("token") == stub.token
            return self._json({"active": active, "username": stub.username if active else ""})
        method = path.removeprefix(API + SERVICE)
        if not path.startswith(API + SERVICE) or method not in OPS:
            return self._error(404, f"no such method {path}")
        if not stub._authorized(self.headers.get("Authorization", "")):
            return self._error(401)
        stub._stall(OPS[method])
        if status := stub._failure(OPS[method]):
            return self._error(status)
        competition = body.get("competitionName", "")
        if competition not in stub.competitions:
            return self._error(404)
        getattr(self, "_" + method)(competition, body)

    def do_GET(self) -> None:
        path = self._path()
        self.stub.requests.append(("GET", path))
        self.stub.times.append((time.monotonic(), path))
        self.stub._stall("blob")
        if status := self.stub._failure("blob"):
            return self._error(status)
        parts = path.removeprefix("/blobs/").split("/", 1)
        zip_bytes = self.stub.competitions.get(parts[0].removesuffix(".zip"))
        if not path.startswith("/blobs/") or zip_bytes is None:
            return self._error(404)
        if len(parts) == 2:  # one file out of the competition zip
            with zipfile.ZipFile(io.BytesIO(zip_bytes)) as zf:
                data = zf.read(parts[1])
            return self._send(200, data, "application/octet-stream", {"Last-Modified": LAST_MODIFIED})
        cut = self.stub.truncate.get(parts[0].removesuffix(".zip"))
        if cut is not None:  # announce every byte, send fewer, hang up: a connection dropped mid-download
            self.send_response(200)
            self.send_header("Content-Type", "application/zip")
            self.send_header("Content-Length", str(len(zip_bytes)))
            self.send_header("Last-Modified", LAST_MODIFIED)
            self.end_headers()
            self.wfile.write(zip_bytes[:cut])
            self.close_connection = True
            return
        self._send(200, zip_bytes, "application/zip", {"Last-Modified": LAST_MODIFIED})

    def do_PUT(self) -> None:
        path, stub = self._path(), self.stub
        stub.requests.append(("PUT", path))
        data = self._body()
        token = path.removeprefix("/upload/")
        if token not in stub._uploads:
            return self._error(404, "upload expired")
        if status := stub._failure("upload"):
            return self._error(status)
        stub._uploads[token]["data"] = data
        self._json({})

    # -- API methods (competition exists, caller authorized) --
    def _redirect(self, location: str) -> None:
        self._send(302, b"", "text/plain", {"Location": location})

    def _ListDataFiles(self, competition: str, body: dict) -> None:
        with zipfile.ZipFile(io.BytesIO(self.stub.competitions[competition])) as zf:
            files = [{"name": i.filename, "totalBytes": i.file_size, "creationDate": "2024-01-01T00:00:00Z"}
                     for i in zf.infolist() if not i.is_dir()]
        self._json({"files": files, "nextPageToken": ""})

    def _DownloadDataFiles(self, competition: str, body: dict) -> None:
        self._redirect(f"http://localhost/blobs/{competition}.zip?sig=stub")

    def _DownloadDataFile(self, competition: str, body: dict) -> None:
        self._redirect(f"http://localhost/blobs/{competition}/{body.get('fileName', '')}?sig=stub")

    def _StartSubmissionUpload(self, competition: str, body: dict) -> None:
        with self.stub._lock:
            token = f"blob{len(self.stub._uploads) + 1}"
            self.stub._uploads[token] = {"name": body.get("fileName", ""), "data": None}
        self._json({"token": token, "createUrl": f"http://localhost/upload/{token}"})

    def _CreateSubmission(self, competition: str, body: dict) -> None:
        stub = self.stub
        if competition in stub.code_competitions:
            return self._error(400, CODE_COMPETITION_MESSAGE)
        upload = stub._uploads.get(body.get("blobFileTokens", ""), {})
        if upload.get("data") is None:
            return self._error(400, "blob file token is not valid or the upload did not complete")
        with stub._lock:
            ref = 1000 + len(stub.submissions)
            stub.submissions.append({
                "ref": ref, "competition": competition, "description": body.get("submissionDescription", ""),
                "fileName": upload["name"], "data": upload["data"], "polls": 0,
                "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            })
        if stub.on_submit:
            stub.on_submit()
        self._json({"message": "Successfully submitted to " + competition, "ref": ref})

    def _GetSubmissionLimits(self, competition: str, body: dict) -> None:
        n = sum(s["competition"] == competition for s in self.stub.submissions)
        self._json({"numToday": n, "numTotal": n, "numAllowedNow": max(0, 5 - n)})

    def _ListSubmissions(self, competition: str, body: dict) -> None:
        with self.stub._lock:
            subs = [self.stub._submission_json(s) for s in reversed(self.stub.submissions)
                    if s["competition"] == competition and self.stub._visible(s)]
        self._json({"submissions": subs, "nextPageToken": ""})
