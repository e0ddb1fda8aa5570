"""Which Ray a driver joins, and a fast, clear failure when that Ray does not answer.

A plain ``ray.init()`` joins the cluster named in ``$RAY_TMPDIR/ray/ray_current_cluster`` (default
``/tmp/ray``), which ``ray start --head`` writes and only ``ray stop`` removes. A head ended by a signal (a
stopped container) leaves the file behind and every later ``ray.init()`` retries its dead GCS for minutes. So a
local run never reads that file: it starts its own Ray (``address="local"``) unless an address is given with
``--address`` or ``RAY_ADDRESS``; a given address is probed first and fails within seconds, naming the
address and where it came from.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from orchestrator.errors import RayAddressError

ADDRESS_ENV = "RAY_ADDRESS"
PROBE_SECONDS = 5.0  # how long a given address may take to accept a TCP connection (a GCS restarting: seconds)


@dataclass(frozen=True)
class RayTarget:
    """The Ray a driver joins: ``address`` None means a new local Ray of its own."""

    address: str | None
    source: str  # "--address", "RAY_ADDRESS" or "local"

    @property
    def local(self) -> bool:
        return self.address is None


def choose_target(flag: str | None = None) -> RayTarget:
    """``--address`` beats ``RAY_ADDRESS``; neither means a local Ray of our own (never the stale cluster file)."""
    if flag:
        return RayTarget(flag, "--address")
    env = os.environ.get(ADDRESS_ENV, "").strip()
    if env:
        return RayTarget(env, ADDRESS_ENV)
    return RayTarget(None, "local")


def host_port(address: str) -> tuple[str, int] | None:
    """The TCP endpoint of ``host:port``, ``ray://host:port`` or ``http://host:port``; None when there is none to
    probe (``auto`` or a bare host is left to Ray)."""
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    try:
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname or port is None:
        return None
    return parts.hostname, port


def probe(target: RayTarget, timeout: float = PROBE_SECONDS) -> None:
    """Raise ``RayAddressError`` unless the target's address accepts a TCP connection within ``timeout``."""
    if target.address is None:
        return
    endpoint = host_port(target.address)
    if endpoint is None:
        return
    deadline = time.monotonic() + timeout
    last: OSError | None = None
    while True:
        try:
            with socket.create_connection(endpoint, timeout=max(0.5, min(2.0, deadline - time.monotonic()))):
                return
        except OSError as exc:
            last = exc
        if time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    raise RayAddressError(
        f"no Ray cluster answers at {target.address} (from {target.source}): {last}. Start the cluster, fix "
        f"{target.source}, or {'unset it' if target.source == ADDRESS_ENV else 'leave it out'} to run on a local "
        f"Ray of this process's own")
