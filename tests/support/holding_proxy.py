"""A loopback TCP proxy that can stop passing the server's answers on: a client's request
reaches the server and is carried out, but the client never hears back. Lets a test kill a
process while its write is in flight and already done, the case a retry must not repeat."""

from __future__ import annotations

import contextlib
import itertools
import socket
import threading


class ResponseHoldingProxy:
    def __init__(self, upstream_port: int) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.held = threading.Event()
        self._upstream_port = upstream_port
        self._ids = itertools.count()
        self._open: set[int] = set()
        self._holding: set[int] = set()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def hold_responses(self) -> None:
        """From now on, what the server sends on the connections open now is kept from the
        client (`held` is set once something was); later connections pass as before."""
        with self._lock:
            self.held.clear()
            self._holding = set(self._open)

    def close(self) -> None:
        for sock in [self._listener, *self._sockets]:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            try:
                upstream = socket.create_connection(("127.0.0.1", self._upstream_port))
            except OSError:
                # The server is down (restarting): the client sees its connection refused.
                client.close()
                continue
            connection = next(self._ids)
            with self._lock:
                self._open.add(connection)
            self._sockets += [client, upstream]
            for source, sink, answers in ((client, upstream, False), (upstream, client, True)):
                threading.Thread(
                    target=self._pump, args=(connection, source, sink, answers), daemon=True
                ).start()

    def _pump(
        self, connection: int, source: socket.socket, sink: socket.socket, answers: bool
    ) -> None:
        try:
            while chunk := source.recv(65536):
                if answers:
                    with self._lock:
                        if connection in self._holding:
                            self.held.set()
                            continue
                sink.sendall(chunk)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)
        with self._lock:
            self._open.discard(connection)
