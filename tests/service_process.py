"""Start ``instructedit serve`` in a subprocess for the tests that need a real server (kill -9, browsers)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(data: Path, port: int, *extra: str) -> subprocess.Popen:
    """The service on 127.0.0.1:``port`` once its /healthz answers."""
    import httpx

    process = subprocess.Popen([sys.executable, "-c", "from instructedit.cli import main; main()", "serve",
                                "--data", str(data), "--port", str(port), *extra],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise AssertionError(process.stderr.read().decode())
