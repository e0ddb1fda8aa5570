"""A simulated multi-node Ray cluster for tests: a CPU head and worker nodes that declare GPUs.

``ray.cluster_utils.Cluster`` starts every node (GCS, raylets, agents) as processes on this machine. It runs in a
child process of its own rather than in the test process, because the test session already holds an in-process
Ray (``ray_session``): a second cluster's global state, auth token and address file would leak into it. The child
takes commands on stdin (one JSON object a line) and answers on stdout, so a test can add and remove nodes while
a sweep runs. Drivers join it as on a real cluster: ``scaling-sweep run`` with ``RAY_ADDRESS``
(``SimulatedCluster.env``).

Worker nodes run at a lower CPU priority (``WORKER_NICE``). On a real cluster the head and the driver have a
machine of their own; here every node shares this machine's few cores, and trials would starve the driver's
scheduling loop, so a measured slot utilization would be that of an overloaded head rather than the scheduler's.

Nodes with ``num_gpus`` but no real GPU are fine: Ray schedules on the declared GPUs and sets
``CUDA_VISIBLE_DEVICES`` to the assigned ids; torch still finds no CUDA, so trials train on CPU.

    with ray_cluster(gpu_nodes=3) as cluster:
        subprocess.run(["scaling-sweep", "run", spec], env=cluster.env)
        cluster.remove_node(cluster.gpu_nodes[0])
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parents[1]
WORKER_NICE = 10  # added to a worker node's processes (raylet, agents); the workers its raylet starts inherit it
# Ray 2.60 turns token authentication on for new clusters; run the head and every client with one token,
# as a platform team would (deploy/README.md).
TOKEN = secrets.token_hex(16)


def cluster_env() -> dict[str, str]:
    """Like a cluster node: the project's environment on PATH (CI runs pytest without activating the venv)."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    path = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return {**env, "PATH": path, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": TOKEN}


class SimulatedCluster:
    """Handle on a ``Cluster`` living in a child process: its address, an environment to drive it, its nodes."""

    def __init__(self, head_cpus: int = 2, temp_root: str | None = None) -> None:
        # a short private temp dir: Ray's socket paths must stay under 108 bytes, and its address file
        # (ray_current_cluster) must not make another process's plain ray.init() join this cluster
        self._tmp = tempfile.mkdtemp(prefix="rc", dir=temp_root or "/tmp")
        self.log_path = Path(self._tmp) / "cluster.log"
        self._env = {**cluster_env(), "RAY_TMPDIR": self._tmp}
        self._log = open(self.log_path, "w")  # noqa: SIM115 - open for the child's lifetime, closed in close()
        self._proc = subprocess.Popen([sys.executable, "-m", "tests.ray_cluster", str(head_cpus)], cwd=REPO,
                                      env=self._env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=self._log, text=True, start_new_session=True)
        self.gpus: dict[str, float] = {}  # GPU worker node id -> GPUs it declares
        try:
            hello = self._reply()
        except BaseException:
            self.close()
            raise
        self.address: str = hello["address"]
        self.head_node: str = hello["node_id"]

    @property
    def env(self) -> dict[str, str]:
        """Environment for a driver (``scaling-sweep run``) or ``ray`` CLI call against this cluster."""
        return {**self._env, "RAY_ADDRESS": self.address}

    @property
    def gpu_nodes(self) -> list[str]:
        return list(self.gpus)

    def add_gpu_node(self, num_gpus: float = 1, num_cpus: int = 4) -> str:
        """Start a worker node declaring ``num_gpus`` GPUs; returns its node id once it has joined."""
        node = self._call(op="add", num_gpus=num_gpus, num_cpus=num_cpus)["node_id"]
        self.gpus[node] = float(num_gpus)
        return node

    def remove_node(self, node_id: str, graceful: bool = True) -> None:
        """Kill every process of a worker node (``graceful=False``: SIGKILL at once, as a lost machine)."""
        self._call(op="remove", node_id=node_id, graceful=graceful)
        self.gpus.pop(node_id, None)

    def _call(self, **command: Any) -> dict[str, Any]:
        assert self._proc.stdin is not None
        self._proc.stdin.write(json.dumps(command) + "\n")
        self._proc.stdin.flush()
        return self._reply()

    def _reply(self) -> dict[str, Any]:
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError(f"simulated cluster exited ({self._proc.poll()}); log:\n{self.log_tail()}")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"simulated cluster: {reply['error']}")
        return reply

    def log_tail(self, chars: int = 4000) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-chars:]

    def close(self) -> None:
        """Shut every node down (EOF on stdin), killing the child's process group if it does not exit."""
        if self._proc.stdin and not self._proc.stdin.closed:
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait()
        if self._proc.stdout:
            self._proc.stdout.close()
        self._log.close()
        shutil.rmtree(self._tmp, ignore_errors=True)


@contextmanager
def ray_cluster(gpu_nodes: int = 2, gpus_per_node: float = 1, cpus_per_node: int = 4,
                head_cpus: int = 2) -> Iterator[SimulatedCluster]:
    """A CPU head plus ``gpu_nodes`` worker nodes declaring ``gpus_per_node`` GPUs each; torn down on exit."""
    cluster = SimulatedCluster(head_cpus=head_cpus)
    try:
        for _ in range(gpu_nodes):
            cluster.add_gpu_node(num_gpus=gpus_per_node, num_cpus=cpus_per_node)
        yield cluster
    finally:
        cluster.close()


@dataclass(frozen=True)
class Proc:
    pid: int
    state: str
    ppid: int
    session: int


def processes() -> list[Proc]:
    """Every live process, from ``/proc/<pid>/stat`` (no psutil in the environment)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            pid, rest = stat.read_text().split(" ", 1)
        except OSError:  # exited meanwhile
            continue
        # after "pid (comm)": state ppid pgrp session; the command name may hold spaces and parentheses
        fields = rest.rsplit(")", 1)[1].split()
        out.append(Proc(pid=int(pid), state=fields[0], ppid=int(fields[1]), session=int(fields[3])))
    return out


def _tree(roots: list[int]) -> list[int]:
    """``roots`` and every process below them (the workers a raylet started)."""
    children: dict[int, list[int]] = {}
    for proc in processes():
        children.setdefault(proc.ppid, []).append(proc.pid)
    found, todo = [], list(roots)
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def _renice(roots: list[int]) -> None:
    """Lower the priority of ``roots`` and every process below them (workers the raylet already prestarted)."""
    for pid in _tree(roots):
        with suppress(ProcessLookupError):
            os.setpriority(os.PRIO_PROCESS, pid, WORKER_NICE)


def _kill_tree(roots: list[int]) -> None:
    """SIGKILL ``roots`` and everything below them at once, as when a machine is lost: Ray's own non-graceful
    removal kills the node's daemons only, and a worker left running could still finish a trial and report it."""
    for pid in _tree(roots):
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _pids(node: Any) -> list[int]:
    return [info.process.pid for infos in node.all_processes.values() for info in infos]


def _serve(head_cpus: int, out: IO[str]) -> None:
    """Child side: start the head, then add and remove nodes as told until stdin closes."""
    from ray.cluster_utils import Cluster

    def send(reply: dict[str, Any]) -> None:
        out.write(json.dumps(reply) + "\n")
        out.flush()

    # no dashboard: nothing here needs it, and its default port would collide with other Ray instances
    cluster = Cluster(initialize_head=True, connect=False,
                      head_node_args={"num_cpus": head_cpus, "num_gpus": 0, "include_dashboard": False})
    nodes = {cluster.head_node.node_id: cluster.head_node}
    try:
        send({"address": cluster.address, "node_id": cluster.head_node.node_id})
        for line in sys.stdin:
            command = json.loads(line)
            try:
                if command["op"] == "add":
                    node = cluster.add_node(num_cpus=command["num_cpus"], num_gpus=command["num_gpus"])
                    _renice(_pids(node))
                    nodes[node.node_id] = node
                    send({"node_id": node.node_id})
                elif command["op"] == "remove":
                    node = nodes.pop(command["node_id"])
                    if not command["graceful"]:
                        _kill_tree(_pids(node))
                    cluster.remove_node(node, allow_graceful=command["graceful"])
                    send({"ok": True})
                else:
                    send({"error": f"unknown op {command['op']!r}"})
            except Exception as exc:  # report to the test, keep serving
                send({"error": f"{type(exc).__name__}: {exc}"})
    finally:
        cluster.shutdown()


if __name__ == "__main__":
    # Ray's own output goes to stderr (the log file); stdout carries only replies
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    _serve(int(sys.argv[1]), replies)
