"""A stand-in Kaggle API server that the real `kaggle` client can talk to.

The client is pointed at it with KAGGLE_API_ENVIRONMENT=LOCALHOST (every call goes to
http://localhost) plus HTTP_PROXY=http://127.0.0.1:PORT, so requests arrive in absolute form
(`POST http://localhost/api/v1/...`); origin form is accepted too. See /work/shared/notes/kaggle-api.md.

    with KaggleStub({"digits": zip_bytes}) as stub:
        subprocess.run([...], env=stub.env(tmp_path))
        assert ("POST", "/api/v1/competitions.CompetitionApiService/DownloadDataFiles") in stub.requests

Besides competitions (download, file submit, list submissions) it serves what code competitions need:
- blobs.BlobApiService/StartBlobUpload (+ PUT): uploads for datasets;
- datasets.DatasetApiService: create, version, status, get (`stub.datasets`; zip/tar blobs unpacked into folders);
- kernels.KernelsApiService: push (SaveKernel), status, output (`stub.kernels`); every push RUNS the code in a
  background thread through `stub.kernel_runner` (default: `run_kernel`, a real `sys.executable` subprocess with
  the competition/dataset inputs under $KAGGLE_INPUT and its outputs collected from $KAGGLE_WORKING);
- competitions.CompetitionApiService/CreateCodeSubmission (submit a kernel version's output file) and
  ListCompetitions (with isKernelsSubmissionsOnly).
Wire spellings: kernel status QUEUED/RUNNING/COMPLETE/ERROR (KernelWorkerStatus names); dataset status READY, or
`stub.dataset_pending_status` (a DatabundleVersionStatus name, BLOBS_RECEIVED by default) while pending.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath
from urllib.parse import quote, unquote, urlsplit

API = "/api/v1/"
SERVICE = "competitions.CompetitionApiService/"
# Which failure knob (stub.fail[op]) governs which call of the competition service.
OPS = {
    "ListDataFiles": "download",
    "DownloadDataFiles": "download",
    "DownloadDataFile": "download",
    "StartSubmissionUpload": "submit",
    "CreateSubmission": "submit",
    "GetSubmissionLimits": "limits",
    "ListSubmissions": "submissions",
    "CreateCodeSubmission": "code_submit",
    "ListCompetitions": "list",
}
# ...and of the other services (full "service/Method" -> op). PUT uploads are op "upload", GETs of competition
# files "blob", GETs of kernel output files "kernel_output".
OTHER_OPS = {
    "blobs.BlobApiService/StartBlobUpload": "blob_upload",
    "datasets.DatasetApiService/CreateDataset": "dataset",
    "datasets.DatasetApiService/CreateDatasetVersion": "dataset",
    "datasets.DatasetApiService/CreateDatasetVersionById": "dataset",
    "datasets.DatasetApiService/GetDatasetStatus": "dataset",
    "datasets.DatasetApiService/GetDataset": "dataset",
    "kernels.KernelsApiService/SaveKernel": "kernel",
    "kernels.KernelsApiService/GetKernelSessionStatus": "kernel",
    "kernels.KernelsApiService/ListKernelSessionOutput": "kernel",
}
ROUTES = {SERVICE + method: op for method, op in OPS.items()} | OTHER_OPS
NO_COMPETITION = {"ListCompetitions"}  # competition-service methods that name no competition
MESSAGES = {
    401: "Unauthenticated",
    403: "You must accept this competition's rules before you'll be able to download files.",
    404: "Competition not found",
    500: "Internal server error",
}
CODE_COMPETITION_MESSAGE = "Submission not allowed: this competition only accepts submissions from notebooks (kernels)."
# What Kaggle answers for a kernel the caller cannot see (a wrong slug included): 403, not 404.
KERNEL_DENIED_MESSAGE = "Permission 'kernels.get' was denied"
LAST_MODIFIED = "Mon, 01 Jan 2024 00:00:00 GMT"
KERNEL_STATUSES = ("QUEUED", "RUNNING", "COMPLETE", "ERROR", "CANCEL_REQUESTED", "CANCEL_ACKNOWLEDGED")


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _safe_rel(name: str) -> str | None:
    """`name` as a relative POSIX path, or None when it would leave its folder (absolute, `..`)."""
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or not path.parts:
        return None
    return path.as_posix()


def _unpack(name: str, data: bytes) -> dict[str, bytes]:
    """A blob as the dataset shows it: a .zip/.tar becomes a folder named after it, anything else a file.

    Raises ValueError for an entry that would land outside that folder."""
    stem, ext = os.path.splitext(name)
    files: dict[str, bytes] = {}
    if ext == ".zip" and zipfile.is_zipfile(io.BytesIO(data)):
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            for info in zf.infolist():
                if info.is_dir():
                    continue
                rel = _safe_rel(info.filename)
                if rel is None:
                    raise ValueError(f"unsafe path {info.filename!r} in {name}")
                files[f"{stem}/{rel}"] = zf.read(info)
        return files
    if ext == ".tar":
        try:
            with tarfile.open(fileobj=io.BytesIO(data)) as tf:
                for member in tf.getmembers():
                    if not member.isfile():
                        continue
                    rel = _safe_rel(member.name)
                    if rel is None:
                        raise ValueError(f"unsafe path {member.name!r} in {name}")
                    files[f"{stem}/{rel}"] = tf.extractfile(member).read()
            return files
        except tarfile.TarError:
            pass
    return {name: data}


def _write_tree(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        safe = _safe_rel(rel)
        if safe is None:
            continue
        path = root / safe
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def _notebook_to_script(text: str) -> str:
    """The code cells of an .ipynb as one script; `!cmd` lines run through the shell, `%magics` are dropped."""
    cells = json.loads(text).get("cells", [])
    lines: list[str] = []
    for cell in cells:
        if cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        for line in ("".join(source) if isinstance(source, list) else source).splitlines():
            stripped = line.lstrip()
            indent = line[: len(line) - len(stripped)]
            if stripped.startswith("!"):
                line = f"{indent}__import__('subprocess').run({stripped[1:]!r}, shell=True, check=True)"
            elif stripped.startswith("%"):
                line = f"{indent}pass  # {stripped}"
            lines.append(line)
        lines.append("")
    return "\n".join(lines)


def run_kernel(stub: KaggleStub, version: dict) -> tuple[str, str, dict[str, bytes], str | None]:
    """The default `stub.kernel_runner`: really run a pushed kernel version.

    Materialises <tmp>/input/<competition slug>/ (each competition in competitionDataSources, its zip unpacked),
    <tmp>/input/<dataset slug>/ (each dataset in datasetDataSources, latest version) and <tmp>/input/<kernel slug>/
    (each kernel in kernelDataSources: the outputs of its latest COMPLETE version), read-only; runs the code with
    `sys.executable` in a fresh <tmp>/working (cwd; env: os.environ + KAGGLE_INPUT, KAGGLE_WORKING, and with
    enableInternet false HTTP(S)_PROXY pointing at a closed port, so pip/requests/urllib fail at once) under a
    timeout of min(stub.kernel_timeout, sessionTimeoutSeconds). Returns (status, log, outputs, failure_message):
    COMPLETE on exit code 0, else ERROR with the last line of stderr; log = stdout + stderr; outputs = every file
    written under working.
    """
    meta = version["metadata"]
    language = meta.get("language") or "python"
    if language != "python":
        return "ERROR", "", {}, f"the stub runs python kernels only, not {language}"
    tmp = Path(tempfile.mkdtemp(prefix="kaggle-stub-kernel-"))
    try:
        inputs, working, src = tmp / "input", tmp / "working", tmp / "src"
        for d in (inputs, working, src):
            d.mkdir()
        for slug in meta.get("competitionDataSources") or []:
            if slug in stub.competitions:
                dest = inputs / slug
                dest.mkdir(parents=True, exist_ok=True)
                with zipfile.ZipFile(io.BytesIO(stub.competitions[slug])) as zf:
                    _write_tree(dest, {i.filename: zf.read(i) for i in zf.infolist() if not i.is_dir()})
        for ref in meta.get("datasetDataSources") or []:
            dataset = stub.datasets.get(ref)
            if dataset and dataset.get("versions"):
                dest = inputs / ref.split("/")[-1]
                dest.mkdir(parents=True, exist_ok=True)
                _write_tree(dest, dataset["versions"][-1].get("files", {}))
        for ref in meta.get("kernelDataSources") or []:
            done = [v for v in stub.kernels.get(ref, {}).get("versions", []) if v.get("status") == "COMPLETE"]
            if done:
                dest = inputs / ref.split("/")[-1]
                dest.mkdir(parents=True, exist_ok=True)
                _write_tree(dest, done[-1].get("outputs", {}))
        for path in [*inputs.rglob("*"), inputs]:  # read-only, as /kaggle/input is
            path.chmod(0o555 if path.is_dir() else 0o444)
        code = version.get("code") or ""
        if meta.get("kernelType") == "notebook":
            code = _notebook_to_script(code)
        script = src / (version.get("ref", "kernel").split("/")[-1] + ".py")
        script.write_text(code)
        timeout = stub.kernel_timeout
        if meta.get("sessionTimeoutSeconds"):
            timeout = min(timeout, float(meta["sessionTimeoutSeconds"]))
        env = dict(os.environ, KAGGLE_INPUT=str(inputs), KAGGLE_WORKING=str(working), PYTHONUNBUFFERED="1")
        if meta.get("enableInternet") is False:  # no internet: HTTP(S) through a proxy nobody listens on
            dead = "http://127.0.0.1:9"
            env.update(
                HTTP_PROXY=dead,
                http_proxy=dead,
                HTTPS_PROXY=dead,
                https_proxy=dead,
                NO_PROXY="",
                no_proxy="",
                PIP_PROXY=dead,
            )
        proc = subprocess.Popen(
            [sys.executable, str(script)],
            cwd=working,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        with stub._lock:
            stub._procs.add(proc)
        try:
            out, err = proc.communicate(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            timed_out = True
        finally:
            with stub._lock:
                stub._procs.discard(proc)
        stdout, stderr = out.decode(errors="replace"), err.decode(errors="replace")
        log = stdout + stderr
        outputs = {p.relative_to(working).as_posix(): p.read_bytes() for p in sorted(working.rglob("*")) if p.is_file()}
        if timed_out:
            return "ERROR", log, outputs, f"Kernel run timed out after {timeout:g} seconds"
        if stub._stopping.is_set() and proc.returncode != 0:
            return "ERROR", log, outputs, "Kernel run cancelled: the server stopped"
        if proc.returncode == 0:
            return "COMPLETE", log, outputs, None
        lines = [line for line in stderr.splitlines() if line.strip()]
        return "ERROR", log, outputs, lines[-1] if lines else f"exit code {proc.returncode}"
    finally:
        for path in tmp.rglob("*"):
            if path.is_dir() and not path.is_symlink():
                path.chmod(0o755)
        shutil.rmtree(tmp, ignore_errors=True)


class KaggleStub:
    """Serves `competitions` (slug -> bytes of the competition zip) on 127.0.0.1:<free port>."""

    def __init__(self, competitions: dict[str, bytes], username: str = "tester", key: str = "secretkey123"):
        self.competitions = dict(competitions)
        self.username, self.key = username, key
        self.token = "tokensecret456"  # accepted as `Authorization: Bearer` (KAGGLE_API_TOKEN)
        self.requests: list[tuple[str, str]] = []
        self.submissions: list[dict] = []
        # op -> HTTP status (True means 500); a (status, n) tuple fails only the next n calls. Ops: see OPS and
        # OTHER_OPS ("download", "submit", "limits", "submissions", "code_submit", "list", "blob_upload",
        # "dataset", "kernel"), plus "upload" (PUT), "blob" (GET of competition files), "kernel_output" (GET).
        self.fail: dict[str, int | bool | tuple[int, int]] = {}
        self.code_competitions: set[str] = set()
        # Credentials without rights: every call about these competitions (SaveKernel using one as a source and
        # CreateCodeSubmission included) answers 403 with Kaggle's rules message.
        self.forbidden: set[str] = set()
        self.score_fn: Callable[[str, bytes], float] = lambda competition, data: 0.5
        self.pending_polls = 0
        self.hidden_polls = 0  # a new submission is missing from the first N listings (eventual consistency)
        self.on_submit: Callable[[], None] | None = None  # called once a submission is recorded
        self.retry_after: str | None = None  # Retry-After header sent with every 429
        self.delay: dict[str, float] = {}  # op (as in stub.fail) -> seconds to stall before answering
        self.truncate: dict[str, int] = {}  # slug -> send only this many bytes of its zip, then hang up
        self.times: list[tuple[float, str]] = []  # (time.monotonic(), path) of every request

        # -- datasets: "owner/slug" -> {"id", "title", "versions": [{"number", "files": {path: bytes}, "message",
        # "polls", "date"}], ...}. A test may seed one with just {"versions": [{"files": {...}}]}.
        self.datasets: dict[str, dict] = {}
        self.dataset_pending_polls = 0  # GetDatasetStatus answers pending for the first N polls of a new version
        self.dataset_pending_status = "BLOBS_RECEIVED"  # the DatabundleVersionStatus sent while pending
        self.dataset_max_bytes: int | None = None  # a version whose files total more is refused (None: no limit)

        # -- kernels: "owner/slug" -> {"id", "ref", "title", "versions": [{"number", "ref", "metadata" (the
        # SaveKernel request body), "code", "status", "failureMessage", "log", "outputs": {path: bytes}, "date"}]}
        self.kernels: dict[str, dict] = {}
        self.pushes: list[dict] = []  # every SaveKernel body past auth and stub.fail (403-refused ones too), in order
        # (stub, version dict) -> (status, log, outputs) or (status, log, outputs, failure_message); runs in a
        # background thread after every push. Default: run_kernel (really executes the code).
        self.kernel_runner: Callable[..., tuple] = run_kernel
        self.kernel_timeout: float = 600  # seconds; a run past it ends ERROR ("... timed out ...")
        self.kernel_error: str | None = None  # force every new run to ERROR with this message, without running it
        self.kernel_log_format = "text"  # "text": stdout+stderr; "json": Kaggle's [{stream_name, time, data}]

        self._stopping = threading.Event()
        self._uploads: dict[str, dict] = {}  # upload token -> {"name", "data": bytes once PUT}
        self._lock = threading.RLock()
        self._threads: list[threading.Thread] = []
        self._procs: set[subprocess.Popen] = set()
        self._server: ThreadingHTTPServer | None = None

    # -- lifecycle --
    def start(self) -> KaggleStub:
        handler = type("Handler", (_Handler,), {"stub": self})
        self._server = _Server(("127.0.0.1", 0), handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes stalled handlers
        with self._lock:
            procs = list(self._procs)
        for proc in procs:  # kernels still running
            proc.kill()
        for thread in list(self._threads):
            thread.join(timeout=10)
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> KaggleStub:
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
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("KAGGLE_") and "proxy" not in k.lower() and k != "XDG_CONFIG_HOME"
        }
        env.update(
            KAGGLE_API_ENVIRONMENT="LOCALHOST",
            HOME=str(home),
            KAGGLE_CONFIG_DIR=str(config_dir),
            HTTP_PROXY=proxy,
            http_proxy=proxy,
            HTTPS_PROXY=proxy,
            https_proxy=proxy,
            NO_PROXY="",
            no_proxy="",
        )
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

    def wait_for_kernels(self, timeout: float = 60) -> bool:
        """Wait until every kernel run started so far has finished; False if some still run after `timeout`."""
        deadline = time.monotonic() + timeout
        for thread in list(self._threads):
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)

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

    def _add_submission(self, competition: str, description: str, file_name: str, data: bytes, **extra) -> int:
        with self._lock:
            ref = 1000 + len(self.submissions)
            self.submissions.append(
                {
                    "ref": ref,
                    "competition": competition,
                    "description": description,
                    "fileName": file_name,
                    "data": data,
                    "polls": 0,
                    "date": _now_iso(),
                    **extra,
                }
            )
        if self.on_submit:
            self.on_submit()
        return ref

    def _new_upload(self, name: str, **extra) -> str:
        with self._lock:
            token = f"blob{len(self._uploads) + 1}"
            self._uploads[token] = {"name": name, "data": None, **extra}
        return token

    # -- datasets --
    def _dataset_files(self, entries: list[dict]) -> dict[str, bytes]:
        """The files of a new version from its ApiDatasetNewFile entries. Raises ValueError with Kaggle's words."""
        files: dict[str, bytes] = {}
        if not entries:
            raise ValueError("A dataset version needs at least one file")
        for entry in entries:
            upload = self._uploads.get(entry.get("token") or "")
            if not upload or upload.get("data") is None:
                raise ValueError(f"Invalid blob token {entry.get('token')!r}: the upload is unknown or incomplete")
            files.update(_unpack(upload["name"], upload["data"]))
        total = sum(len(d) for d in files.values())
        if self.dataset_max_bytes is not None and total > self.dataset_max_bytes:
            raise ValueError(
                f"Dataset version is too large: {total} bytes exceeds the limit of {self.dataset_max_bytes} bytes"
            )
        return files

    def _add_dataset_version(self, ref: str, files: dict[str, bytes], message: str) -> dict:
        with self._lock:
            versions = self.datasets[ref].setdefault("versions", [])
            version = {"number": len(versions) + 1, "files": files, "message": message, "polls": 0, "date": _now_iso()}
            versions.append(version)
        return version

    def _dataset_json(self, ref: str) -> dict:
        dataset = self.datasets[ref]
        versions = dataset.get("versions", [])
        owner, slug = ref.split("/", 1)
        latest = versions[-1].get("files", {}) if versions else {}
        return {
            "id": dataset.get("id", 0),
            "ref": ref,
            "title": dataset.get("title", slug),
            "ownerRef": owner,
            "url": f"https://www.kaggle.com/datasets/{ref}",
            "isPrivate": dataset.get("isPrivate", True),
            "licenseName": dataset.get("licenseName", "CC0-1.0"),
            "subtitle": dataset.get("subtitle"),
            "currentVersionNumber": len(versions),
            "totalBytes": sum(len(d) for d in latest.values()),
            "versions": [
                {
                    "versionNumber": v.get("number", i + 1),
                    "versionNotes": v.get("message", ""),
                    "creationDate": v.get("date", _now_iso()),
                }
                for i, v in enumerate(versions)
            ],
            "files": [
                {"ref": name, "name": name, "totalBytes": len(data), "datasetRef": ref}
                for name, data in sorted(latest.items())
            ],
        }

    # -- kernels --
    def _save_kernel(self, body: dict) -> dict:
        """SaveKernel: a new version of the kernel, run in the background. Returns the ApiSaveKernelResponse."""
        slug = body.get("slug") or ""
        with self._lock:
            if slug:
                owner, _, name = slug.rpartition("/")
                ref = f"{owner or self.username}/{name}"
            else:
                found = [r for r, k in self.kernels.items() if k.get("id") == body.get("id")]
                if not found:
                    return {"error": f"Kernel with id {body.get('id')} not found"}
                ref = found[0]
            if not body.get("text"):
                return {"error": "The kernel has no source code"}
            if ref not in self.kernels:
                self.kernels[ref] = {"id": 5001 + len(self.kernels), "ref": ref, "versions": []}
            kernel = self.kernels[ref]
            kernel.setdefault("id", 5001 + len(self.kernels))
            kernel.setdefault("versions", [])
            if body.get("newTitle"):
                kernel["title"] = body["newTitle"]
            version = {
                "number": len(kernel["versions"]) + 1,
                "ref": ref,
                "metadata": body,
                "code": body["text"],
                "status": "QUEUED",
                "failureMessage": None,
                "log": "",
                "outputs": {},
                "date": _now_iso(),
            }
            kernel["versions"].append(version)
            thread = threading.Thread(target=self._run_kernel, args=(version,), daemon=True)
            self._threads.append(thread)
        thread.start()
        return {
            "ref": ref,
            "url": f"https://www.kaggle.com/code/{ref}",
            "versionNumber": version["number"],
            "kernelId": kernel["id"],
            "error": "",
            "invalidDatasetSources": [d for d in body.get("datasetDataSources") or [] if d not in self.datasets],
            "invalidCompetitionSources": [
                c for c in body.get("competitionDataSources") or [] if c not in self.competitions
            ],
            "invalidKernelSources": [k for k in body.get("kernelDataSources") or [] if k not in self.kernels],
        }

    def _run_kernel(self, version: dict) -> None:
        if self.kernel_error is not None:
            with self._lock:
                version.update(status="ERROR", failureMessage=self.kernel_error, finished=formatdate(usegmt=True))
            return
        version["status"] = "RUNNING"
        try:
            result = self.kernel_runner(self, version)
        except Exception as e:  # a runner that breaks is a kernel that errors
            result = ("ERROR", "", {}, f"{type(e).__name__}: {e}")
        status, log, outputs, *rest = result
        message = rest[0] if rest else None
        if status == "ERROR" and not message:
            lines = [line for line in (log or "").splitlines() if line.strip()]
            message = lines[-1] if lines else "Kernel run failed"
        with self._lock:
            version.update(
                log=log or "", outputs=dict(outputs or {}), failureMessage=message, finished=formatdate(usegmt=True)
            )
            version["status"] = status  # last: a poller seeing COMPLETE sees the outputs too

    def _kernel_version(self, body: dict, owner_key: str = "userName") -> dict | None:
        """The version a status/output request names (versionLabel, else the latest), or None."""
        kernel = self.kernels.get(f"{body.get(owner_key) or self.username}/{body.get('kernelSlug', '')}")
        if not kernel or not kernel.get("versions"):
            return None
        label = body.get("versionLabel")
        if label and str(label).isdigit():
            matches = [v for v in kernel["versions"] if v.get("number") == int(label)]
            return matches[0] if matches else None
        return kernel["versions"][-1]

    def _kernel_log(self, version: dict) -> str:
        log = version.get("log") or ""
        if self.kernel_log_format != "json" or not log:
            return log
        return json.dumps(
            [{"stream_name": "stdout", "time": 0.0, "data": line} for line in log.splitlines(keepends=True)]
        )

    def _code_submission_error(self, competition: str, body: dict) -> tuple[str, dict | None]:
        """Why CreateCodeSubmission is refused ("" if it is not), and the kernel version it names."""
        ref = f"{body.get('kernelOwner') or self.username}/{body.get('kernelSlug', '')}"
        kernel = self.kernels.get(ref)
        if not kernel or not kernel.get("versions"):
            return f"Notebook {ref} not found", None
        number = body.get("kernelVersion")
        versions = [v for v in kernel["versions"] if number is None or v.get("number") == int(number)]
        if not versions:
            return f"Notebook {ref} has no version {number}", None
        version = versions[-1]
        n, status = version.get("number"), version.get("status")
        if status in ("QUEUED", "RUNNING"):
            return f"Notebook {ref} version {n} has not finished running (status {status})", version
        if status != "COMPLETE":
            return (
                f"Notebook {ref} version {n} did not run successfully (status {status}): "
                f"only a version that completed can be submitted"
            ), version
        if competition not in (version.get("metadata", {}).get("competitionDataSources") or []):
            return (
                f"Notebook {ref} version {n} does not use the data of competition {competition}: "
                f"add it to competition_sources"
            ), version
        if competition in self.code_competitions and version.get("metadata", {}).get("enableInternet"):
            return (
                f"Notebook {ref} version {n} has internet access enabled; submissions to this competition "
                f"must run with internet disabled (enable_internet: false)"
            ), version
        file_name = body.get("fileName") or "submission.csv"
        if file_name not in version.get("outputs", {}):
            return f"Notebook {ref} version {n} has no output file named {file_name}", version
        return "", version


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
        route = path.removeprefix(API)
        op = ROUTES.get(route) if path.startswith(API) else None
        if op is None:
            return self._error(404, f"no such method {path}")
        if not stub._authorized(self.headers.get("Authorization", "")):
            return self._error(401)
        stub._stall(op)
        if status := stub._failure(op):
            return self._error(status)
        method = route.rsplit("/", 1)[1]
        if route.startswith(SERVICE) and method not in NO_COMPETITION:
            competition = body.get("competitionName", "")
            if competition not in stub.competitions:
                return self._error(404)
            if competition in stub.forbidden:
                return self._error(403)
            return getattr(self, "_" + method)(competition, body)
        getattr(self, "_" + method)(body)

    def do_GET(self) -> None:
        path = self._path()
        self.stub.requests.append(("GET", path))
        self.stub.times.append((time.monotonic(), path))
        if path.startswith("/kernel-output/"):
            return self._kernel_output_file(path)
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
        upload = stub._uploads[token]
        content_range = self.headers.get("Content-Range", "")
        if content_range.startswith("bytes */"):  # a resumed upload asks how far it got (GCS protocol)
            if upload.get("data") is not None:
                return self._json({})
            return self._send(308, b"", "text/plain")
        upload["data"] = data
        self._json({})

    def _kernel_output_file(self, path: str) -> None:
        """GET /kernel-output/<owner>/<slug>/<version>/<file path>: a kernel version's output file."""
        stub = self.stub
        stub._stall("kernel_output")
        if status := stub._failure("kernel_output"):
            return self._error(status)
        parts = unquote(path.removeprefix("/kernel-output/")).split("/", 3)
        if len(parts) < 4 or not parts[2].isdigit():
            return self._error(404, "Not found")
        owner, slug, number, name = parts
        versions = [
            v for v in stub.kernels.get(f"{owner}/{slug}", {}).get("versions", []) if v.get("number") == int(number)
        ]
        data = versions[0].get("outputs", {}).get(name) if versions else None
        if data is None:
            return self._error(404, "Not found")
        self._send(
            200, data, "application/octet-stream", {"Last-Modified": versions[0].get("finished") or LAST_MODIFIED}
        )

    # -- competition API methods (competition exists, caller authorized and allowed) --
    def _redirect(self, location: str) -> None:
        self._send(302, b"", "text/plain", {"Location": location})

    def _ListDataFiles(self, competition: str, body: dict) -> None:
        with zipfile.ZipFile(io.BytesIO(self.stub.competitions[competition])) as zf:
            files = [
                {"name": i.filename, "totalBytes": i.file_size, "creationDate": "2024-01-01T00:00:00Z"}
                for i in zf.infolist()
                if not i.is_dir()
            ]
        self._json({"files": files, "nextPageToken": ""})

    def _DownloadDataFiles(self, competition: str, body: dict) -> None:
        self._redirect(f"http://localhost/blobs/{competition}.zip?sig=stub")

    def _DownloadDataFile(self, competition: str, body: dict) -> None:
        self._redirect(f"http://localhost/blobs/{competition}/{body.get('fileName', '')}?sig=stub")

    def _StartSubmissionUpload(self, competition: str, body: dict) -> None:
        token = self.stub._new_upload(body.get("fileName", ""))
        self._json({"token": token, "createUrl": f"http://localhost/upload/{token}"})

    def _CreateSubmission(self, competition: str, body: dict) -> None:
        stub = self.stub
        if competition in stub.code_competitions:
            return self._error(400, CODE_COMPETITION_MESSAGE)
        upload = stub._uploads.get(body.get("blobFileTokens", ""), {})
        if upload.get("data") is None:
            return self._error(400, "blob file token is not valid or the upload did not complete")
        ref = stub._add_submission(competition, body.get("submissionDescription", ""), upload["name"], upload["data"])
        self._json({"message": "Successfully submitted to " + competition, "ref": ref})

    def _CreateCodeSubmission(self, competition: str, body: dict) -> None:
        stub = self.stub
        with stub._lock:
            error, version = stub._code_submission_error(competition, body)
        if error:
            return self._error(400, error)
        file_name = body.get("fileName") or "submission.csv"
        ref = stub._add_submission(
            competition,
            body.get("submissionDescription", ""),
            file_name,
            version["outputs"][file_name],
            kernel=version["ref"],
            kernelVersion=version["number"],
        )
        self._json({"message": "Successfully submitted to " + competition, "ref": ref})

    def _GetSubmissionLimits(self, competition: str, body: dict) -> None:
        n = sum(s["competition"] == competition for s in self.stub.submissions)
        self._json({"numToday": n, "numTotal": n, "numAllowedNow": max(0, 5 - n)})

    def _ListSubmissions(self, competition: str, body: dict) -> None:
        with self.stub._lock:
            subs = [
                self.stub._submission_json(s)
                for s in reversed(self.stub.submissions)
                if s["competition"] == competition and self.stub._visible(s)
            ]
        self._json({"submissions": subs, "nextPageToken": ""})

    def _ListCompetitions(self, body: dict) -> None:
        stub, search = self.stub, (body.get("search") or "").lower()
        competitions = [
            {
                "id": 10000 + i,
                "ref": f"https://www.kaggle.com/competitions/{slug}",
                "url": f"https://www.kaggle.com/competitions/{slug}",
                "title": slug.replace("-", " ").title(),
                "description": f"The {slug} competition",
                "category": "Getting Started",
                "reward": "Knowledge",
                "deadline": "2030-01-01T00:00:00.000Z",
                "enabledDate": "2024-01-01T00:00:00.000Z",
                "teamCount": 100,
                "kernelCount": 10,
                "userHasEntered": slug not in stub.forbidden,
                "maxDailySubmissions": 5,
                "maxTeamSize": 5,
                "evaluationMetric": "Categorization Accuracy",
                "isKernelsSubmissionsOnly": slug in stub.code_competitions,
                "submissionsDisabled": False,
                "organizationName": "Kaggle",
                "organizationRef": "kaggle",
                "hostName": "kaggle",
            }
            for i, slug in enumerate(stub.competitions)
            if search in slug.lower()
        ]
        self._json({"competitions": competitions, "nextPageToken": ""})

    # -- blobs --
    def _StartBlobUpload(self, body: dict) -> None:
        token = self.stub._new_upload(
            body.get("name", ""), type=body.get("type", ""), contentLength=body.get("contentLength", 0)
        )
        self._json({"token": token, "createUrl": f"http://localhost/upload/{token}"})

    # -- datasets --
    def _CreateDataset(self, body: dict) -> None:
        stub = self.stub
        owner, slug = body.get("ownerSlug") or stub.username, body.get("slug") or ""
        ref = f"{owner}/{slug}"
        with stub._lock:
            if ref in stub.datasets:
                return self._json(
                    {
                        "status": "error",
                        "error": f"The requested slug {ref!r} is already in use "
                        f"by a dataset. Please choose another slug.",
                    }
                )
            try:
                files = stub._dataset_files(body.get("files") or [])
            except ValueError as e:
                return self._json({"status": "error", "error": str(e)})
            stub.datasets[ref] = {
                "id": 2000 + len(stub.datasets),
                "title": body.get("title") or slug,
                "isPrivate": body.get("isPrivate", False),
                "licenseName": body.get("licenseName"),
                "subtitle": body.get("subtitle"),
                "description": body.get("description"),
                "versions": [],
            }
            stub._add_dataset_version(ref, files, "")
        self._json({"ref": ref, "url": f"https://www.kaggle.com/datasets/{ref}", "status": "ok", "error": ""})

    def _new_version(self, ref: str | None, body: dict) -> None:
        stub, request = self.stub, body.get("body") or {}
        with stub._lock:
            if ref is None or ref not in stub.datasets:
                return self._json({"status": "error", "error": f"Dataset {ref or body.get('id')} not found"})
            try:
                files = stub._dataset_files(request.get("files") or [])
            except ValueError as e:
                return self._json({"status": "error", "error": str(e)})
            stub._add_dataset_version(ref, files, request.get("versionNotes") or "")
        self._json({"ref": ref, "url": f"https://www.kaggle.com/datasets/{ref}", "status": "ok", "error": ""})

    def _CreateDatasetVersion(self, body: dict) -> None:
        self._new_version(f"{body.get('ownerSlug') or self.stub.username}/{body.get('datasetSlug', '')}", body)

    def _CreateDatasetVersionById(self, body: dict) -> None:
        found = [ref for ref, d in self.stub.datasets.items() if d.get("id") == body.get("id")]
        self._new_version(found[0] if found else None, body)

    def _dataset_ref(self, body: dict) -> str | None:
        ref = f"{body.get('ownerSlug') or self.stub.username}/{body.get('datasetSlug', '')}"
        return ref if ref in self.stub.datasets else None

    def _GetDatasetStatus(self, body: dict) -> None:
        stub = self.stub
        ref = self._dataset_ref(body)
        if ref is None:
            return self._error(404, "Dataset not found")
        with stub._lock:
            versions = stub.datasets[ref].get("versions") or [{}]
            latest = versions[-1]
            pending = latest.get("polls", 0) < stub.dataset_pending_polls
            latest["polls"] = latest.get("polls", 0) + 1
        self._json({"status": stub.dataset_pending_status if pending else "READY"})

    def _GetDataset(self, body: dict) -> None:
        ref = self._dataset_ref(body)
        if ref is None:
            return self._error(404, "Dataset not found")
        with self.stub._lock:
            self._json(self.stub._dataset_json(ref))

    # -- kernels --
    def _SaveKernel(self, body: dict) -> None:
        stub = self.stub
        stub.pushes.append(body)
        if any(c in stub.forbidden for c in body.get("competitionDataSources") or []):
            return self._error(403)
        self._json(stub._save_kernel(body))

    def _GetKernelSessionStatus(self, body: dict) -> None:
        with self.stub._lock:
            version = self.stub._kernel_version(body)
            if version is None:
                return self._error(403, KERNEL_DENIED_MESSAGE)
            out = {"status": version.get("status", "QUEUED")}
            if version.get("failureMessage"):
                out["failureMessage"] = version["failureMessage"]
        self._json(out)

    def _ListKernelSessionOutput(self, body: dict) -> None:
        stub = self.stub
        with stub._lock:
            version = stub._kernel_version(body)
            if version is None:
                return self._error(403, KERNEL_DENIED_MESSAGE)
            done = version.get("status") in ("COMPLETE", "ERROR")
            names = sorted(version.get("outputs", {})) if done else []
            log = stub._kernel_log(version) if done else ""
        start = int(body.get("pageToken") or 0)
        size = int(body.get("pageSize") or 20)
        page = names[start : start + size]
        ref = f"{body.get('userName') or stub.username}/{body.get('kernelSlug', '')}"
        base = f"http://localhost/kernel-output/{quote(ref)}/{version.get('number', 1)}/"
        out = {"files": [{"fileName": n, "url": base + quote(n)} for n in page], "log": log}
        if start + size < len(names):
            out["nextPageToken"] = str(start + size)
        self._json(out)
