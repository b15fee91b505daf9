"""An HTTP/1.1 relay on 127.0.0.1 that loses one answer after the server has handled it.

It stands between a client and a live server, one request per connection (it asks both
sides for `Connection: close`). The first request that `lose(method, path)` picks is sent
to the server and answered there in full; then the relay either drops the client's
connection without a word (`mode="drop"`, as when a timeout or a network fault eats the
answer) or answers 502 in its place (`mode="502"`, as a load balancer does). Everything
else is relayed as is. `log` records what the client asked and what the server answered.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass

_PAGE = b"<h1>502 Bad Gateway</h1>"
_BAD_GATEWAY = (
    b"HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/html\r\n"
    b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(_PAGE), _PAGE)
)


@dataclass
class Exchange:
    method: str
    path: str
    head: str  # the server's status line and headers
    lost: bool


def _read_request(connection: socket.socket) -> tuple[bytes, bytes] | None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = connection.recv(65536)
        if not chunk:
            return None
        body += chunk
    return head, body


def _with_close(head: bytes) -> bytes:
    lines = [line for line in head.split(b"\r\n") if not line.lower().startswith(b"connection:")]
    return b"\r\n".join([*lines, b"Connection: close"])


class LossyProxy:
    def __init__(self, upstream: str, *, mode: str, lose: Callable[[str, str], bool]) -> None:
        host, _, port = upstream.removeprefix("http://").partition(":")
        self._upstream = (host, int(port))
        self._mode = mode
        self._lose = lose
        self._lost_one = False
        self._lock = threading.Lock()
        self.log: list[Exchange] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.base_url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._relay, args=(connection,), daemon=True).start()

    def _relay(self, connection: socket.socket) -> None:
        with connection:
            request = _read_request(connection)
            if request is None:
                return
            head, body = request
            method, path = head.split(b" ")[0].decode(), head.split(b" ")[1].decode()
            with socket.create_connection(self._upstream) as upstream:
                upstream.sendall(_with_close(head) + b"\r\n\r\n" + body)
                answer = b""
                while chunk := upstream.recv(65536):
                    answer += chunk
            answer_head, _, answer_body = answer.partition(b"\r\n\r\n")
            with self._lock:
                lost = not self._lost_one and self._lose(method, path)
                self._lost_one = self._lost_one or lost
                self.log.append(Exchange(method, path, answer_head.decode("latin-1"), lost))
            if not lost:
                connection.sendall(_with_close(answer_head) + b"\r\n\r\n" + answer_body)
            elif self._mode == "502":
                connection.sendall(_BAD_GATEWAY)
            # mode "drop": close without a byte; the client sees the connection end.
