"""A real PostgreSQL server, started for the tests: Debian's `postgresql` package (initdb, pg_ctl), one cluster in a
temp dir, listening on 127.0.0.1 on a free port, password authentication (scram-sha-256) for one user. Started and
stopped here, as slurm_local.MlflowServer is; nothing is left running.

PostgreSQL refuses to run as root: under root the cluster belongs to the package's `postgres` user (its files in
a temp dir of their own, which that user can enter: pytest's are 0700 root). `Unavailable` says why a server
cannot run here (no binaries, no such user); the tests skip with it.
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from slurm_local import free_port

INSTALL = "apt-get install -y postgresql (.ci/run does)"


class Unavailable(Exception):
    """PostgreSQL cannot run here; the message says why."""


def binaries() -> tuple[str, str]:
    """initdb and pg_ctl: on the PATH, else Debian's versioned folder (/usr/lib/postgresql/<v>/bin)."""
    found = []
    for name in ("initdb", "pg_ctl"):
        path = shutil.which(name) or next(
            iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None
        )
        if path is None:
            raise Unavailable(f"no {name}: {INSTALL}")
        found.append(path)
    return found[0], found[1]


class PostgresServer:
    """One PostgreSQL cluster on 127.0.0.1; `url` carries the user's password (the secret the tests look for)."""

    user = "kagglecv"
    database = "postgres"

    def __init__(self):
        self.initdb, self.pg_ctl = binaries()
        self.owner = None
        if os.geteuid() == 0:
            if shutil.which("runuser") is None:
                raise Unavailable("running as root without runuser: cannot start PostgreSQL as another user")
            try:
                import pwd

                pwd.getpwnam("postgres")
            except KeyError:
                raise Unavailable(f"running as root and there is no postgres user: {INSTALL}") from None
            self.owner = "postgres"
        self.password = "pw-" + secrets.token_hex(12)
        self.root = Path(tempfile.mkdtemp(prefix="kagglecv-postgres-"))
        self.port = free_port()
        self.started = False

    def url(self, driver: str = "postgresql+psycopg") -> str:
        return f"{driver}://{self.user}:{self.password}@127.0.0.1:{self.port}/{self.database}"

    def _run(self, *cmd: str, timeout: float = 120) -> subprocess.CompletedProcess:
        full = ["runuser", "-u", self.owner, "--", *cmd] if self.owner else list(cmd)
        r = subprocess.run(
            full,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.root,
            env={**os.environ, "LC_ALL": "C.UTF-8"},
        )
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stdout}{r.stderr}\n{self.log_tail()}")
        return r

    def log_tail(self, n: int = 3000) -> str:
        log = self.root / "server.log"
        return log.read_text(errors="replace")[-n:] if log.exists() else ""

    def start(self) -> PostgresServer:
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self.owner:
            shutil.chown(self.root, self.owner, self.owner)
            shutil.chown(pwfile, self.owner, self.owner)
        self.root.chmod(0o700)
        pwfile.chmod(0o600)
        data = self.root / "data"
        self._run(
            self.initdb,
            "-D",
            str(data),
            "-U",
            self.user,
            "--auth=scram-sha-256",
            f"--pwfile={pwfile}",
            "-E",
            "UTF8",
            "--no-sync",
        )
        pwfile.unlink()
        options = f"-h 127.0.0.1 -p {self.port} -k {self.root} -c fsync=off"
        self._run(
            self.pg_ctl, "-D", str(data), "-l", str(self.root / "server.log"), "-o", options, "-w", "-t", "60", "start"
        )
        self.started = True
        return self

    def stop(self) -> None:
        if self.started:
            pidfile = self.root / "data" / "postmaster.pid"
            with contextlib.suppress(Exception):
                self._run(
                    self.pg_ctl, "-D", str(self.root / "data"), "-m", "fast", "-w", "-t", "30", "stop", timeout=60
                )
            with contextlib.suppress(OSError, ValueError, IndexError):  # pg_ctl could not stop it: its pid, only
                os.kill(int(pidfile.read_text().split()[0]), signal.SIGKILL)
            self.started = False
        shutil.rmtree(self.root, ignore_errors=True)
