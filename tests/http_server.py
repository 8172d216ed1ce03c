"""A local HTTP file server on 127.0.0.1 for the download tests (never any other address).

It answers ``Range`` requests (206, or 416 past the end) and can misbehave on demand: cut the
connection mid-body, stall, or ignore ranges.
"""

from __future__ import annotations

import hashlib
import io
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np


def breastmnist_bytes() -> bytes:
    """A tiny BreastMNIST-layout archive as ``np.savez`` writes it: grey uint8 images, uint8
    labels (N, 1); 5 / 2 / 3 images, train labels 1, 0, 1, 1, 0."""
    rng = np.random.default_rng(7)
    arrays = {}
    for split, labels in (("train", [1, 0, 1, 1, 0]), ("val", [0, 1]), ("test", [1, 1, 0])):
        arrays[f"{split}_images"] = rng.integers(0, 256, (len(labels), 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = np.array(labels, dtype=np.uint8)[:, None]
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


@dataclass
class FileServer:
    """What the server sends and what it saw.

    Attributes:
        payload: The bytes served at every path.
        cut_after: Close the connection after this many body bytes of the next full (200)
            answer, once.
        stall_after: Send this many body bytes of the next answer, then stop (a stalled peer).
        ignore_range: Answer ranged requests with the whole file (200).
        status: Answer every request with this HTTP error status instead.
        ranges: The ``Range`` header of every request (None when absent).
    """

    payload: bytes
    port: int = 0
    cut_after: int | None = None
    stall_after: int | None = None
    ignore_range: bool = False
    status: int | None = None
    ranges: list[str | None] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/breastmnist.npz?download=1"

    @property
    def md5(self) -> str:
        return hashlib.md5(self.payload).hexdigest()


def _handler(state: FileServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # keep pytest output quiet
            pass

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            data = state.payload
            header = self.headers.get("Range")
            state.ranges.append(header)
            if state.status is not None:
                self.send_error(state.status)
                return
            start = 0
            if header and not state.ignore_range:
                start = int(header.removeprefix("bytes=").split("-")[0])
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            body = data[start:]
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if state.stall_after is not None:
                self.wfile.write(body[: state.stall_after])
                self.wfile.flush()
                state.stall_after = None
                time.sleep(3.0)  # far longer than the client's read timeout
                return
            if state.cut_after is not None and start == 0:
                self.wfile.write(body[: state.cut_after])
                state.cut_after = None
                self.close_connection = True
                return
            self.wfile.write(body)

    return Handler


@contextmanager
def serve(payload: bytes) -> Iterator[FileServer]:
    """Serve ``payload`` on 127.0.0.1 (a free port) until the block ends."""
    state = FileServer(payload)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def closed_port() -> int:
    """A port on 127.0.0.1 with nothing listening (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
