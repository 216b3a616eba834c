"""The real things, started for the tests: a single-node Slurm (munge, slurmctld, slurmd) with two fake GPUs,
and a real `mlflow server` on loopback. Both are started and stopped here; nothing is left running.

Slurm is machine-wide: the inner `srun` of every job reads /etc/slurm/slurm.conf (slurmstepd strips SLURM_CONF
from the job's environment), so only one such cluster can exist at a time. It therefore runs under a lock,
on free ports, with every state/log/pid/socket file in a temp dir, and /etc/slurm/{slurm,gres}.conf are
symlinks made here and removed afterwards. A Slurm this module did not make (a config or a running
slurmctld) is never touched: the tests skip instead.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
INSTALL_SCRIPT = REPO / ".ci" / "install-slurm.sh"
ETC = Path("/etc/slurm")
MARK = "# kagglecv test cluster (tests/slurm_local.py): removed when the tests end"
LOCK = Path("/tmp/kagglecv-slurm-test.lock")
SBIN = ("/usr/sbin", "/usr/bin", "/sbin", "/bin")
DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scontrol", "srun", "sinfo")
PARTITION = "debug"  # the partition profiles/slurm/config.yaml asks for


class Unavailable(Exception):
    """Slurm cannot run here; the message says why (the tests skip with it)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path=os.pathsep.join(SBIN))


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is dead for our purposes
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return True


def stop_pidfile(pidfile: Path, timeout: float = 20) -> None:
    """SIGTERM the daemon named by a pid file, wait, then SIGKILL: only that pid, never by name."""
    try:
        pid = int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if pid_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def wait_for(pred, timeout: float, what: str, poll: float = 0.3):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(poll)
    raise TimeoutError(f"{what} not ready after {timeout:.0f}s")


def ensure_installed() -> None:
    """The daemons and clients, installed by .ci/install-slurm.sh if missing (root and apt-get only)."""
    if os.name != "posix" or not hasattr(os, "geteuid"):
        raise Unavailable("Slurm tests need Linux")
    if os.geteuid() != 0:
        raise Unavailable("Slurm tests need root (they start munged/slurmctld/slurmd and write /etc/slurm)")
    missing = [n for n in (*DAEMONS, *CLIENTS) if not which(n)]
    if missing and shutil.which("apt-get"):
        r = subprocess.run(["bash", str(INSTALL_SCRIPT)], capture_output=True, text=True, timeout=900)
        if r.returncode != 0:
            raise Unavailable(f"installing Slurm failed ({r.returncode}): {(r.stdout + r.stderr)[-800:]}")
        missing = [n for n in (*DAEMONS, *CLIENTS) if not which(n)]
    if missing:
        raise Unavailable(
            f"Slurm is not installed and cannot be here (missing {', '.join(missing)}); "
            f"run {INSTALL_SCRIPT.relative_to(REPO)} as root"
        )
    if not Path("/etc/munge/munge.key").exists():
        raise Unavailable("/etc/munge/munge.key is missing (the munge package creates it)")


def node_line(hostname: str, gpus: int) -> str:
    """The node as `slurmd -C` sees it (a node declared bigger than it is gets drained)."""
    out = subprocess.run([which("slurmd"), "-C"], capture_output=True, text=True, timeout=30).stdout
    fields = dict(kv.split("=", 1) for kv in out.split()[:8] if "=" in kv)
    cpus = int(fields.get("CPUs", os.cpu_count() or 1))
    mem = int(fields.get("RealMemory", 2000))
    return (
        f"NodeName={hostname} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={max(500, int(mem * 0.9))} "
        f"Gres=gpu:{gpus} State=UNKNOWN"
    )


@dataclass
class SlurmCluster:
    root: Path
    hostname: str
    gpus: int

    @property
    def env(self) -> dict:
        return {"PATH": os.pathsep.join([os.environ.get("PATH", ""), *SBIN])}

    def run(self, *cmd: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, **self.env})
        if check and r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stdout}{r.stderr}\n{self.logs()}")
        return r

    def logs(self, tail: int = 3000) -> str:
        out = []
        for name in ("slurmctld.log", "slurmd.log"):
            p = self.root / "log" / name
            if p.exists():
                out.append(f"--- {name}\n{p.read_text(errors='replace')[-tail:]}")
        return "\n".join(out)

    def jobs(self) -> list[dict]:
        """Every job slurmctld still remembers (MinJobAge: an hour), as `scontrol -o show job` tells it."""
        r = self.run("scontrol", "-o", "show", "job", check=False)
        return [
            dict(re.findall(r"(?:^|\s)([A-Za-z][\w/:]*)=(\S*)", line))
            for line in r.stdout.splitlines()
            if line.startswith("JobId=")
        ]

    def node_state(self) -> str:
        r = self.run("sinfo", "-h", "-N", "-o", "%T", check=False)
        return r.stdout.strip()


def _write_config(root: Path, munge_dir: Path, hostname: str, gpus: int) -> tuple[Path, Path]:
    for sub in ("log", "run", "spool/ctld", "spool/d", "dev"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    devs = []
    for k in range(gpus):
        dev = root / "dev" / f"fakegpu{k}"
        if not dev.exists():
            os.mknod(dev, 0o666 | 0o020000, os.makedev(1, 3))  # a char device like /dev/null
        devs.append(dev)
    ctld_port, d_port = free_port(), free_port()
    conf = root / "slurm.conf"
    conf.write_text(f"""{MARK}
ClusterName=kagglecv-test
SlurmctldHost={hostname}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={munge_dir / "munge.socket"}
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
MpiDefault=none
ReturnToService=2
MinJobAge=3600
KillWait=5
SlurmdTimeout=60
SchedulerType=sched/backfill
SlurmctldPidFile={root / "run" / "slurmctld.pid"}
SlurmdPidFile={root / "run" / "slurmd.pid"}
SlurmctldLogFile={root / "log" / "slurmctld.log"}
SlurmdLogFile={root / "log" / "slurmd.log"}
StateSaveLocation={root / "spool" / "ctld"}
SlurmdSpoolDir={root / "spool" / "d"}
GresTypes=gpu
{node_line(hostname, gpus)}
PartitionName={PARTITION} Nodes={hostname} Default=YES MaxTime=INFINITE State=UP
""")
    gres = root / "gres.conf"
    gres.write_text(f"{MARK}\nName=gpu File={root / 'dev'}/fakegpu[0-{gpus - 1}]\n")
    return conf, gres


def _link_etc(conf: Path, gres: Path) -> list[Path]:
    """/etc/slurm/{slurm,gres}.conf -> ours; refuse to replace anything this module did not make."""
    ETC.mkdir(parents=True, exist_ok=True)
    made = []
    for src in (conf, gres):
        dst = ETC / src.name
        if dst.is_symlink() or dst.exists():
            try:
                ours = MARK in dst.read_text(errors="replace")
            except OSError:  # a dangling link from a crashed run of ours
                ours = dst.is_symlink()
            if not ours:
                raise Unavailable(f"{dst} exists and is not this test's; not touching a real Slurm")
            dst.unlink()
        dst.symlink_to(src)
        made.append(dst)
    return made


def _foreign_slurmctld() -> bool:
    """A live slurmctld/slurmd (zombies of an earlier stop do not count)."""
    for comm in Path("/proc").glob("[0-9]*/comm"):
        with contextlib.suppress(OSError, ValueError):
            if comm.read_text().strip() in ("slurmctld", "slurmd") and pid_alive(int(comm.parent.name)):
                return True
    return False


@contextlib.contextmanager
def slurm_cluster(root: Path, gpus: int = 2, lock_timeout: float = 600):
    """Start munged, slurmctld and slurmd for one node with `gpus` fake GPUs; stop them all on exit."""
    ensure_installed()
    LOCK.touch(exist_ok=True)
    lock = open(LOCK, "a")
    try:  # another test session on this machine may hold the one /etc/slurm/slurm.conf: wait for it
        wait_for(lambda: _try_lock(lock), lock_timeout, "the Slurm test lock", poll=1)
    except TimeoutError:
        lock.close()
        raise Unavailable(f"another test session held {LOCK} for {lock_timeout:.0f}s") from None
    links: list[Path] = []
    root = Path(root)
    # munged runs as the munge user, which cannot enter pytest's 0700 temp dirs: its files live apart
    munge_dir = Path(tempfile.mkdtemp(prefix="kagglecv-munge-"))
    pidfiles = {
        "munged": munge_dir / "munged.pid",
        "slurmctld": root / "run" / "slurmctld.pid",
        "slurmd": root / "run" / "slurmd.pid",
    }
    try:
        if _foreign_slurmctld():
            raise Unavailable("a slurmctld/slurmd is already running on this machine; not starting a second")
        hostname = socket.gethostname().split(".")[0]
        conf, gres = _write_config(root, munge_dir, hostname, gpus)
        links = _link_etc(conf, gres)
        cluster = SlurmCluster(root, hostname, gpus)
        # munged on a socket of its own, as the munge user (it refuses to run as root)
        munge_dir.chmod(0o755)
        shutil.chown(munge_dir, "munge", "munge")
        subprocess.run(
            [
                "runuser",
                "-u",
                "munge",
                "--",
                which("munged"),
                f"--socket={munge_dir / 'munge.socket'}",
                f"--pid-file={pidfiles['munged']}",
                f"--log-file={munge_dir / 'munged.log'}",
                f"--seed-file={munge_dir / 'munged.seed'}",
                "--force",
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
        )
        wait_for(lambda: (munge_dir / "munge.socket").exists() and pidfiles["munged"].exists(), 15, "munged")
        env = {**os.environ, "SLURM_CONF": str(ETC / "slurm.conf")}
        subprocess.run([which("slurmctld")], env=env, check=True, capture_output=True, text=True, timeout=30)
        wait_for(lambda: cluster.run("scontrol", "ping", check=False).returncode == 0, 30, "slurmctld")
        subprocess.run([which("slurmd")], env=env, check=True, capture_output=True, text=True, timeout=30)
        wait_for(lambda: cluster.node_state() in ("idle", "mixed"), 60, f"node {hostname}")
        yield cluster
    except (subprocess.CalledProcessError, TimeoutError) as e:
        detail = e.stderr if isinstance(e, subprocess.CalledProcessError) else ""
        raise RuntimeError(f"starting Slurm failed: {e} {detail}\n{_logs(root, munge_dir)}") from e
    finally:
        with contextlib.suppress(Exception):
            if pidfiles["slurmctld"].exists():
                subprocess.run(
                    [which("scancel"), "--full", "--user=root"],
                    capture_output=True,
                    timeout=15,
                    env={**os.environ, "SLURM_CONF": str(ETC / "slurm.conf")},
                )
        for name in ("slurmd", "slurmctld", "munged"):
            stop_pidfile(pidfiles[name])
        shutil.rmtree(munge_dir, ignore_errors=True)
        for link in links:
            with contextlib.suppress(OSError):
                if link.is_symlink():
                    link.unlink()
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()


def _logs(root: Path, munge_dir: Path) -> str:
    munge_log = munge_dir / "munged.log"
    tail = f"\n--- munged.log\n{munge_log.read_text(errors='replace')[-2000:]}" if munge_log.exists() else ""
    return SlurmCluster(Path(root), "", 0).logs() + tail


def _try_lock(f) -> bool:
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


class MlflowServer:
    """`mlflow server` on 127.0.0.1 with a SQLite backend and artifacts in `root`; restartable on the same store.

    It runs in a session of its own so that stop()/kill() reach its workers too (uvicorn forks)."""

    def __init__(self, root: Path, port: int | None = None):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None
        self.pidfile = self.root / "mlflow-server.pid"
        self.starts = 0

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def backend(self) -> str:
        return f"sqlite:///{self.root / 'mlflow.db'}"

    def start(self, timeout: float = 120) -> MlflowServer:
        self.starts += 1
        log = open(self.root / f"server{self.starts}.log", "w")
        cmd = [
            str(Path(sys.executable).parent / "mlflow"),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
            "--backend-store-uri",
            self.backend,
            "--artifacts-destination",
            (self.root / "artifacts").as_uri(),
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        self.proc = subprocess.Popen(
            cmd, cwd=self.root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env
        )
        log.close()
        self.pidfile.write_text(f"{self.proc.pid}\n")
        try:
            wait_for(self._healthy, timeout, f"mlflow server on {self.uri}", poll=0.5)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"mlflow server did not start:\n{self.log_tail()}") from None
        return self

    def _healthy(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited ({self.proc.returncode}):\n{self.log_tail()}")
        try:
            with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def log_tail(self, n: int = 3000) -> str:
        p = self.root / f"server{self.starts}.log"
        return p.read_text(errors="replace")[-n:] if p.exists() else ""

    def _signal(self, sig: int, timeout: float) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)  # its own session: the server and its workers, nothing else
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        # workers that outlived the leader
        deadline = time.monotonic() + 10
        while _group_alive(self.proc.pid) and time.monotonic() < deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            time.sleep(0.2)
        self.proc = None
        self.pidfile.unlink(missing_ok=True)

    def kill(self) -> None:
        """Sudden death (SIGKILL to the server and its workers), as when its machine goes away."""
        self._signal(signal.SIGKILL, 10)

    def stop(self) -> None:
        self._signal(signal.SIGTERM, 20)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
