"""A TCP proxy on loopback that a test can turn off: refuse connections, or black-hole them
(accept, read and never answer), the way a database behind a dead network looks."""

from __future__ import annotations

import socket
import threading
from typing import Literal

Mode = Literal["forward", "blackhole", "refuse"]


class TcpProxy:
    """127.0.0.1:<port> → target; `mode` says what happens to traffic from now on."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.mode: Mode = "forward"
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self.port = 0
        self._open_listener()

    def _open_listener(self) -> None:
        lst = socket.socket()
        lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lst.bind(("127.0.0.1", self.port))
        lst.listen(64)
        self.port = lst.getsockname()[1]
        self._listener = lst
        threading.Thread(target=self._accept, args=(lst,), daemon=True).start()

    def _accept(self, lst: socket.socket) -> None:
        while True:
            try:
                client, _ = lst.accept()
            except OSError:
                return  # closed
            with self._lock:
                self._conns.append(client)
            if self.mode == "blackhole":
                threading.Thread(target=self._pump, args=(client, None), daemon=True).start()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._conns.append(upstream)
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket | None) -> None:
        try:
            while data := src.recv(65536):
                if dst is not None and self.mode == "forward":
                    dst.sendall(data)  # else: swallowed, like packets into a dead network
        except OSError:
            pass
        finally:
            for s in (src, dst):
                if s is not None and self.mode != "blackhole":
                    s.close()

    def _drop_all(self) -> None:
        with self._lock:
            conns, self._conns = self._conns, []
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()

    def blackhole(self) -> None:
        """Open connections go silent and new ones are accepted and never answered."""
        self.mode = "blackhole"

    def refuse(self) -> None:
        """Nothing listens: connections are refused; open ones are reset."""
        self.mode = "refuse"
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        self._drop_all()

    def restore(self) -> None:
        """Back to forwarding; connections left from an outage are closed (as a network
        that comes back resets them), so the pool replaces them."""
        self.mode = "forward"
        self._drop_all()
        if self._listener is None:
            self._open_listener()

    def close(self) -> None:
        self.refuse()
