"""A throwaway single-node Slurm cluster on localhost, for tests (Debian's ``slurm-wlm`` and
``munge``).

:func:`start_cluster` starts ``munged`` on a private socket with its own key, then
``slurmctld`` and ``slurmd`` from a generated ``slurm.conf`` (state, spool, logs and pid files
in one temporary folder; ``ProctrackType=proctrack/linuxproc``, ``TaskPlugin=task/none``,
accounting off, the node's real CPU count and memory), and waits until ``sinfo`` reports the
node idle. Clients (``sbatch``, ``squeue``, ``scancel``, submitit) find it through
``SLURM_CONF`` in :attr:`Cluster.env`. The daemons run as root (``SlurmUser=root``), so the
cluster needs root; :func:`why_not` says why a cluster cannot start here, in one line.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scancel", "sinfo")


def _find(name: str) -> str | None:
    return shutil.which(name) or next((str(Path(d) / name) for d in ("/usr/sbin", "/sbin")
                                       if (Path(d) / name).is_file()), None)


def why_not() -> str | None:
    """Why a single-node Slurm cannot start on this machine (one line), or ``None``."""
    missing = [n for n in DAEMONS + CLIENTS if _find(n) is None]
    if missing:
        return f"Slurm not installed ({', '.join(missing)} missing: apt-get install slurm-wlm munge)"
    if os.geteuid() != 0:
        return "a single-node Slurm test cluster needs root (slurmd runs jobs as their user)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _memory_mb() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    return 1024  # pragma: no cover


@dataclass
class Cluster:
    """A running test cluster: its folder, node name and the client environment."""

    root: Path
    node: str
    cpus: int
    env: dict = field(default_factory=dict)
    pids: list[Path] = field(default_factory=list)

    def run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        """A Slurm client command against this cluster."""
        return subprocess.run(list(cmd), capture_output=True, text=True, env=self.env,
                              check=check, timeout=60)

    def log(self, name: str) -> str:
        """The last 3,000 characters of a daemon's log (``slurmctld``, ``slurmd``, ``munged``)."""
        p = self.root / f"{name}.log"
        return p.read_text(errors="replace")[-3000:] if p.is_file() else ""

    def stop(self) -> None:
        """Stop the daemons (SIGTERM, then SIGKILL) and remove the folder."""
        procs = []
        for pid_file in reversed(self.pids):
            try:
                pid = int(pid_file.read_text().strip())
                os.kill(pid, signal.SIGTERM)
                procs.append(pid)
            except (OSError, ValueError):
                pass
        deadline = time.monotonic() + 10
        for pid in procs:
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except OSError:
                    break
                time.sleep(0.1)
            else:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        shutil.rmtree(self.root, ignore_errors=True)


SLURM_CONF = """\
ClusterName=rbnlptest
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={root}/munge.socket
CredType=cred/munge
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
KillWait=10
MinJobAge=600
SlurmdTimeout=60
InactiveLimit=0
NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={mem} State=UNKNOWN
PartitionName=debug Nodes={node} Default=YES MaxTime=INFINITE State=UP
"""


def start_cluster(root: Path, timeout: float = 60) -> Cluster:
    """Start munged, slurmctld and slurmd in ``root`` (created) and wait for the node.

    Raises:
        RuntimeError: a daemon did not start, or the node is not idle within ``timeout``
            seconds (the message holds the daemons' log tails).
    """
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)
    for d in ("state", "spool"):
        (root / d).mkdir(exist_ok=True)
    node = socket.gethostname().split(".")[0]
    cpus = os.cpu_count() or 1
    conf = root / "slurm.conf"
    conf.write_text(SLURM_CONF.format(node=node, root=root, cpus=cpus,
                                      mem=max(256, _memory_mb() - 512),
                                      ctld_port=_free_port(), d_port=_free_port()))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    cluster = Cluster(root, node, cpus, env)
    key = root / "munge.key"
    key.write_bytes(os.urandom(1024))
    os.chmod(key, 0o400)
    try:
        subprocess.run([_find("munged"), f"--socket={root}/munge.socket", f"--key-file={key}",
                        f"--pid-file={root}/munged.pid", f"--log-file={root}/munged.log",
                        f"--seed-file={root}/munged.seed", "--force"],
                       check=True, capture_output=True, text=True, timeout=30)
        cluster.pids.append(root / "munged.pid")
        subprocess.run([_find("slurmctld"), "-f", str(conf)], check=True, capture_output=True,
                       text=True, env=env, timeout=30)
        cluster.pids.append(root / "slurmctld.pid")
        subprocess.run([_find("slurmd"), "-f", str(conf)], check=True, capture_output=True,
                       text=True, env=env, timeout=30)
        cluster.pids.append(root / "slurmd.pid")
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
        detail = (getattr(e, "stderr", "") or "").strip()
        logs = " | ".join(f"{n}: {cluster.log(n)[-500:]}" for n in DAEMONS)
        cluster.stop()
        raise RuntimeError(f"{e.cmd[0]} did not start: {detail} {logs}") from None
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        r = cluster.run("sinfo", "-h", "-N", "-o", "%T", check=False)
        state = r.stdout.strip()
        if r.returncode == 0 and state.rstrip("*") == "idle":
            return cluster
        time.sleep(0.5)
    logs = " | ".join(f"{n}: {cluster.log(n)[-800:]}" for n in ("slurmctld", "slurmd"))
    cluster.stop()
    raise RuntimeError(f"Slurm node not idle after {timeout:.0f} s (state {state!r}): {logs}")
