"""`runbase serve` as a process of its own, in a session of its own, for tests that kill it
(SIGKILL to the whole group, engine children included, as in a power cut) and start it
again on the same data directory and database."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from support import database_env

TESTS_DIR = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    def __init__(self, data_dir: Path, port: int, env: dict[str, str]) -> None:
        full_env = {
            **os.environ,
            **database_env(data_dir),
            "RUNBASE_RATE_LIMIT": "100000/10seconds",
            **env,
            # this checkout first (conftest put its src/ there), then the fixtures
            "PYTHONPATH": os.pathsep.join([os.environ["PYTHONPATH"], str(TESTS_DIR)]),
        }
        command = [sys.executable, "-m", "runbase", "serve", "--port", str(port)]
        self.process = subprocess.Popen(
            [*command, "--data-dir", str(data_dir)],
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.base_url = f"http://127.0.0.1:{port}"
        self.output: list[str] = []
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)
            if "serving on" in line:
                break
        # Read on, so that a server that logs a lot never blocks on a full pipe.
        self._reader = threading.Thread(target=self._read_output, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(self.base_url + "/healthz", timeout=1)
                return
            except httpx.TransportError:
                assert time.monotonic() < deadline, "".join(self.output)
                time.sleep(0.1)

    def _read_output(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)

    @property
    def printed_key(self) -> str | None:
        """The key the first start prints (None on later starts)."""
        for line in self.output:
            for word in line.replace("=", " ").split():
                if word.startswith("sk-"):
                    return word
        return None

    def kill(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        self._reader.join(timeout=5)
        if self.process.stdout is not None:
            self.process.stdout.close()
