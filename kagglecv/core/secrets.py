"""Credentials out of everything we print, log or record: `redact` replaces every known secret with ***.

It imports nothing else of kagglecv, so tracking (every job) and the Kaggle code share it without either
pulling in the other. Known secrets are Kaggle's (KAGGLE_KEY, KAGGLE_API_TOKEN, kaggle.json, access_token,
credentials.json: wherever the official client looks) and MLflow's (the password and the query values of
MLFLOW_TRACKING_URI, MLFLOW_TRACKING_PASSWORD/TOKEN), plus the user:password part of any URL and the values of its
query parameters named like credentials (?token=, &api_key=, &sig=...). A known secret shorter than MIN_LENGTH is
replaced where it stands alone (between characters that are not letters or digits): inside words it would mangle
ordinary text.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import re
import sys
import threading
from pathlib import Path
from urllib.parse import parse_qsl, quote, unquote, urlsplit

_USERINFO = re.compile(r"(?<=://)[^/\s@]+@")  # https://user:password@host -> https://***@host
# ?token=abc&x=1 -> ?token=***&x=1: query parameters named like credentials
_QUERY = re.compile(
    r"(?i)([?&](?:[\w.-]*(?:token|key|secret|passw(?:or)?d|pwd|auth|sig|signature|credential|session)"
    r"[\w.-]*)=)[^&#\s\"'<>]+"
)
MIN_LENGTH = 4  # shorter secrets are replaced only where they stand alone: inside words they would mangle text


def kaggle_config_dirs() -> list[Path]:
    """Where the kaggle client looks for kaggle.json (KAGGLE_CONFIG_DIR, ~/.kaggle, ~/.config/kaggle)."""
    dirs = [Path(os.environ["KAGGLE_CONFIG_DIR"])] if os.environ.get("KAGGLE_CONFIG_DIR") else []
    xdg = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    return dirs + [Path(os.path.expanduser("~/.kaggle")), Path(xdg) / "kaggle"]


def json_values(path: Path, *keys: str) -> set[str]:
    """The values of `keys` in a JSON file (empty strings for absent keys); nothing when it cannot be read."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        cfg = json.loads(Path(path).read_text())
        return {str(cfg.get(k) or "") for k in keys}
    return set()


def mlflow_secrets() -> set[str]:
    """The password (and user:password) in MLFLOW_TRACKING_URI, and MLflow's own credential variables."""
    found = {os.environ.get("MLFLOW_TRACKING_PASSWORD", ""), os.environ.get("MLFLOW_TRACKING_TOKEN", "")}
    with contextlib.suppress(ValueError):
        parts = urlsplit(os.environ.get("MLFLOW_TRACKING_URI", ""))
        if parts.password:
            found |= {parts.password, unquote(parts.password)}
        for _, value in parse_qsl(parts.query):  # a token in the query string (?token=...)
            found |= {value, quote(value, safe="")}
    return found


def kaggle_secrets() -> set[str]:
    """Every credential value the kaggle client could use (env, kaggle.json, access tokens, the OAuth tokens of
    credentials.json) and the Basic-auth header forms of user:key."""
    users, keys = {os.environ.get("KAGGLE_USERNAME", "")}, {os.environ.get("KAGGLE_KEY", "")}
    tokens = {os.environ.get("KAGGLE_API_TOKEN", "")}  # the token itself or a file containing it
    for d in kaggle_config_dirs():
        users |= json_values(d / "kaggle.json", "username")
        keys |= json_values(d / "kaggle.json", "key")
        tokens |= json_values(d / "credentials.json", "refresh_token", "access_token")  # `kaggle auth login`
    for f in filter(None, [os.environ.get("KAGGLE_API_TOKEN"), "~/.kaggle/access_token", "~/.kaggle/access_token.txt"]):
        with contextlib.suppress(OSError, ValueError):
            tokens.add(Path(os.path.expanduser(f)).read_text().strip())
    basic = {base64.b64encode(f"{u}:{k}".encode()).decode() for u in users for k in keys if k}
    return keys | tokens | basic


def secrets() -> set[str]:
    return {s for s in kaggle_secrets() | mlflow_secrets() if s.strip()}


def redact(text: str, known: set[str] | None = None) -> str:
    """`text` with every known credential (`known`, else `secrets()` read now) replaced by ***, the
    user:password part of any URL, and the values of its query parameters named like credentials."""
    text = _QUERY.sub(r"\1***", _USERINFO.sub("***@", str(text)))
    for secret in sorted(secrets() if known is None else known, key=len, reverse=True):
        if len(secret) >= MIN_LENGTH:
            text = text.replace(secret, "***")
        elif secret.strip():
            text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(secret)}(?![A-Za-z0-9])", "***", text)
    return text


class RedactedStream(io.TextIOBase):
    """A text stream that writes whole lines to `stream`, each redacted: what a job prints (MLflow's own "View
    run ... at: <url>" lines included) reaches its log without credentials. Lines are held until they end
    (newline or carriage return), so a credential printed in pieces is still seen whole; the secrets are read
    once, when the stream is made."""

    def __init__(self, stream):
        super().__init__()
        self.stream, self.known, self.pending = stream, secrets(), ""

    def write(self, text: str) -> int:
        self.pending += text
        cut = max(self.pending.rfind("\n"), self.pending.rfind("\r")) + 1
        if cut:
            self.stream.write(redact(self.pending[:cut], self.known))
            self.pending = self.pending[cut:]
        return len(text)

    def flush(self) -> None:
        if self.pending:
            self.stream.write(redact(self.pending, self.known))
            self.pending = ""
        self.stream.flush()

    def writable(self) -> bool:
        return True

    @property
    def encoding(self):
        return getattr(self.stream, "encoding", "utf-8")


JOB_LOG_ENV = "KAGGLECV_JOB_LOG"  # a job's log (kagglecv.jobs.harness): the processes it starts write there too


@contextlib.contextmanager
def redacted_output(path: str | os.PathLike):
    """Everything this process writes to its standard output and error, appended to `path` line by line, each
    line redacted: Python's prints and logging, and what libraries write to file descriptors 1 and 2 themselves
    (a rank of a multi-device job is a process of its own, kagglecv.training.distributed). The descriptors are
    pointed at a pipe, which a thread empties into the file through RedactedStream; restored on the way out."""
    sink = RedactedStream(open(path, "a", buffering=1, errors="replace"))
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    read_fd, write_fd = os.pipe()
    saved = [os.dup(1), os.dup(2)]
    os.dup2(write_fd, 1), os.dup2(write_fd, 2)
    os.close(write_fd)

    def pump() -> None:
        with os.fdopen(read_fd, "r", errors="replace", newline="") as pipe:  # lines end at \n or \r (progress bars)
            for line in pipe:
                sink.write(line)
                sink.flush()

    thread = threading.Thread(target=pump, name="redacted-output", daemon=True)
    thread.start()
    try:
        yield sink
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        os.dup2(saved[0], 1), os.dup2(saved[1], 2)  # the pipe's last writers: the pump reads to its end
        for fd in saved:
            os.close(fd)
        thread.join(timeout=10)  # a forked child still holding the pipe must not hold this process
        sink.flush()
        sink.stream.close()
