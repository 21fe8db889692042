"""A TCP proxy that can be cut and restored, to make a server unreachable for a
while without stopping it (Prometheus keeps scraping behind it).

`cut()` closes the listening socket and every open connection, so new
connections are refused and pooled ones fail; `restore()` listens again on the
same port. Threads only; no event loop needed.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading

BUFFER = 65536


class TcpProxy:
    def __init__(self, upstream: tuple[str, int], host: str = "127.0.0.1", port: int = 0) -> None:
        self.upstream = upstream
        self.host = host
        self.port = port
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._accept_thread: threading.Thread | None = None
        self.connections = 0  # accepted so far

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def is_open(self) -> bool:
        return self._listener is not None

    def restore(self) -> TcpProxy:
        """Listen (again, on the same port)."""
        with self._lock:
            if self._listener is not None:
                return self
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((self.host, self.port))
            s.listen(64)
            self.port = s.getsockname()[1]
            self._listener = s
            t = threading.Thread(target=self._accept_loop, args=(s,), daemon=True)
            self._accept_thread = t
        t.start()
        return self

    start = restore

    def cut(self) -> None:
        """Refuse new connections and drop the open ones."""
        with self._lock:
            listener, self._listener = self._listener, None
            conns, self._conns = self._conns, set()
            thread, self._accept_thread = self._accept_thread, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
            c.close()
        if thread is not None:
            thread.join(timeout=5)

    stop = cut

    def _accept_loop(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            try:
                server = socket.create_connection(self.upstream, timeout=5)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:  # cut meanwhile
                    client.close()
                    server.close()
                    return
                self._conns.update((client, server))
                self.connections += 1
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        """Copy both ways until either side closes."""
        socks = [a, b]
        try:
            while True:
                readable, _, _ = select.select(socks, [], [], 1.0)
                for s in readable:
                    data = s.recv(BUFFER)
                    if not data:
                        return
                    (b if s is a else a).sendall(data)
        except (OSError, ValueError):
            return
        finally:
            for s in socks:
                with contextlib.suppress(OSError):
                    s.close()
            with self._lock:
                self._conns.difference_update(socks)
