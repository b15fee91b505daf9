"""Messages between the engine process and its context-parallel rank processes.

Plain pickle over pipes: multiprocessing's pickler would pass tensors as shared-memory
handles, which only processes that multiprocessing started may open.
"""

from __future__ import annotations

import pickle
from multiprocessing.connection import Connection
from typing import Any

__all__ = ["receive", "send"]


def send(conn: Connection, message: Any) -> None:
    conn.send_bytes(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))


def receive(conn: Connection) -> Any:
    return pickle.loads(conn.recv_bytes())
