"""A loopback TCP proxy that, once armed, holds the first request carrying a marker: it is
never forwarded, so its sender waits in mid-request for as long as the test likes. Lets a test
act at an exact point of a process's work (say, a load job holding pulled messages while it
writes them) instead of guessing that point with sleeps."""

from __future__ import annotations

import contextlib
import socket
import threading


class StallingProxy:
    def __init__(self, upstream_port: int) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.held = threading.Event()
        self._upstream_port = upstream_port
        self._marker: bytes | None = None
        self._armings = 0
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def arm(self, marker: bytes) -> None:
        with self._lock:
            self._marker = marker
            self._armings += 1

    def close(self) -> None:
        for sock in [self._listener, *self._sockets]:
            # shutdown wakes the threads blocked on these sockets; close alone may not.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
                upstream = socket.create_connection(("127.0.0.1", self._upstream_port))
            except OSError:
                return
            self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, client_to_server: bool) -> None:
        seen, armings = b"", 0
        try:
            while chunk := source.recv(65536):
                if client_to_server:
                    with self._lock:
                        # The marker may straddle two reads, but not the arming.
                        seen = (seen[-1024:] if armings == self._armings else b"") + chunk
                        armings = self._armings
                        if self._marker is not None and self._marker in seen:
                            self._marker = None
                            self.held.set()
                            return
                sink.sendall(chunk)
        except OSError:
            pass
        # The other side learns that this one ended (say, the server closed an idle
        # keep-alive connection), as it would without the proxy: otherwise its next request
        # on that connection waits for an answer that never comes.
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)
