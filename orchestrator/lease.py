"""One driver per storage: a lease file that a running driver keeps fresh and a second driver respects.

Two drivers on one storage would restore the same Tune experiment and write the same checkpoints and ASHA state.
The driver holds ``<storage>/lease.json`` (owner, host, pid, heartbeat, expiry), rewritten atomically by a
heartbeat thread on any pyarrow filesystem. Another driver refuses to start while the lease is live and names
its holder. A lease lapses by itself ``ttl`` seconds after its last heartbeat, so a crashed driver blocks its
storage for one ``ttl`` at most; on the holder's own host a lease whose process is gone lapses at once (a killed
driver can be resumed right away). ``takeover`` takes a live lease anyway, for a holder known to be dead.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from orchestrator.errors import LeaseHeld
from sweepstore import redact, resolve, write_atomic

log = logging.getLogger(__name__)

LEASE_FILE = "lease.json"
TTL_SECONDS = 60.0  # a crashed driver on another host blocks the storage this long at most
HEARTBEAT_SECONDS = 10.0
SETTLE_SECONDS = 0.2  # two drivers writing at once: the one whose write is not read back afterwards gives way


@dataclass(frozen=True)
class LeaseRecord:
    """What ``lease.json`` holds."""

    token: str
    owner: str  # user@host
    host: str
    pid: int
    sweep: str
    acquired_at: float
    heartbeat_at: float
    expires_at: float

    def describe(self, now: float) -> str:
        beat = datetime.fromtimestamp(self.heartbeat_at, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        return (f"sweep {self.sweep!r} by {self.owner} (pid {self.pid} on {self.host}), last heartbeat {beat} "
                f"({now - self.heartbeat_at:.0f} s ago), lapses in {max(0.0, self.expires_at - now):.0f} s")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def lapsed(record: LeaseRecord, now: float) -> bool:
    """Past its expiry, or held by a process of this host that no longer exists."""
    if now >= record.expires_at:
        return True
    return record.host == socket.gethostname() and not _pid_alive(record.pid)


class StorageLease:
    """Acquire with ``acquire()`` (raises ``LeaseHeld``), keep it fresh from a thread, ``release()`` at the end."""

    def __init__(self, storage: str, sweep: str, ttl: float = TTL_SECONDS, heartbeat: float = HEARTBEAT_SECONDS,
                 on_lost: Callable[[str], None] | None = None) -> None:
        if heartbeat >= ttl:
            raise ValueError(f"heartbeat ({heartbeat} s) must be shorter than ttl ({ttl} s)")
        self.storage, self.sweep, self.ttl, self.heartbeat = storage, sweep, ttl, heartbeat
        self.fs, root = resolve(storage)
        self.path = f"{root}/{LEASE_FILE}"
        self.token = uuid.uuid4().hex
        self.lost = threading.Event()  # set when another driver took the lease over; on_lost gets its holder
        self.on_lost = on_lost
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._acquired_at = 0.0

    def read(self) -> LeaseRecord | None:
        """The lease as stored, or None when there is none (an unreadable one counts as none: it was torn)."""
        try:
            with self.fs.open_input_stream(self.path) as f:
                return LeaseRecord(**json.loads(f.read()))
        except FileNotFoundError:
            return None
        except (ValueError, TypeError):
            log.warning("lease %s is unreadable; treating the storage as free", redact(self.path))
            return None

    def _record(self, now: float) -> LeaseRecord:
        host = socket.gethostname()
        return LeaseRecord(token=self.token, owner=f"{getpass.getuser()}@{host}", host=host, pid=os.getpid(),
                           sweep=self.sweep, acquired_at=self._acquired_at, heartbeat_at=now,
                           expires_at=now + self.ttl)

    def _write(self) -> None:
        write_atomic(self.fs, self.path, json.dumps(asdict(self._record(time.time())), indent=1).encode())

    def refuse_if_held(self, takeover: bool = False) -> LeaseRecord | None:
        """Raise ``LeaseHeld`` naming the live holder unless ``takeover``; returns the current record."""
        now = time.time()
        current = self.read()
        if current is not None and current.token != self.token and not lapsed(current, now) and not takeover:
            raise LeaseHeld(
                f"storage {redact(self.storage)} is in use by another driver: {current.describe(now)}. Two "
                f"drivers would run the same trials and overwrite each other's checkpoints. Wait for it to "
                f"finish (then `scaling-sweep resume` tops up), or, if that driver is gone, wait until its lease "
                f"lapses and run again, or take over at once with --takeover")
        return current

    def acquire(self, takeover: bool = False) -> None:
        """Take the lease, or raise ``LeaseHeld`` naming the live holder; then heartbeat from a daemon thread."""
        current = self.refuse_if_held(takeover)
        now = time.time()
        if current is not None and current.token != self.token and not lapsed(current, now):
            log.warning("taking over the lease of %s from %s", redact(self.storage), current.describe(now))
        elif current is not None and current.token != self.token:
            log.warning("the previous driver's lease on %s has lapsed (%s); taking over", redact(self.storage),
                        current.describe(now))
        self._acquired_at = now
        self.fs.create_dir(self.path.rpartition("/")[0], recursive=True)
        self._write()
        time.sleep(SETTLE_SECONDS)
        winner = self.read()
        if winner is None or winner.token != self.token:
            raise LeaseHeld(f"storage {redact(self.storage)} was taken by another driver starting at the same "
                            f"time: {winner.describe(time.time()) if winner else 'unknown'}")
        self._thread = threading.Thread(target=self._beat, name="storage-lease", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat):
            try:
                current = self.read()
                if current is not None and current.token != self.token:
                    self.lost.set()
                    holder = current.describe(time.time())
                    log.error("the lease on %s was taken over: %s; this driver stops", redact(self.storage), holder)
                    if self.on_lost is not None:
                        self.on_lost(holder)
                    return
                self._write()
            except OSError as exc:  # a full or unreachable store: the lease may lapse; say so, keep trying
                log.warning("could not renew the lease on %s: %s", redact(self.storage), exc)

    def release(self) -> None:
        """Stop the heartbeat and delete the lease, if it is still ours."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.heartbeat + 5)
        try:
            current = self.read()
            if current is not None and current.token == self.token:
                self.fs.delete_file(self.path)
        except OSError as exc:
            log.warning("could not release the lease on %s (it lapses by itself): %s", redact(self.storage), exc)


def holder(storage: str) -> LeaseRecord | None:
    """The live lease on ``storage``, if any (for status displays and tests)."""
    lease = StorageLease(storage, "-")
    record = lease.read()
    return None if record is None or lapsed(record, time.time()) else record

