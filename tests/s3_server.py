"""A real S3 endpoint on 127.0.0.1 (moto's server) for tests of object-storage URIs."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pyarrow.fs as pafs


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def s3_bucket(bucket: str = "sweeps") -> Iterator[str]:
    """Start the server, create ``bucket``, yield a pyarrow URI prefix ``s3://key:secret@bucket/...?...``."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        options = f"endpoint_override=127.0.0.1:{port}&scheme=http&region=us-east-1"
        admin = pafs.S3FileSystem(access_key="test", secret_key="test", endpoint_override=f"127.0.0.1:{port}",
                                  scheme="http", region="us-east-1", allow_bucket_creation=True)
        deadline = time.monotonic() + 30
        while True:
            try:
                admin.create_dir(bucket)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield f"s3://test:test@{bucket}/{{prefix}}?{options}"
    finally:
        server.terminate()
        server.wait(timeout=10)
