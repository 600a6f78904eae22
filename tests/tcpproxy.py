"""A small TCP proxy for fault tests: forward to a server, cut every connection on demand.

    proxy = TcpProxy(("127.0.0.1", 3306)); proxy.start()      # listens on proxy.port
    proxy.cut()            # close every connection now and refuse new ones ...
    proxy.restore()        # ... until restored
    proxy.cut_on(b"COMMIT")  # forward the next client packet holding COMMIT, then cut before the reply

Only loopback addresses; threads end when the proxy stops.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading


class TcpProxy:
    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.pairs: list[tuple[socket.socket, socket.socket]] = []
        self.refusing = False
        self.trigger: bytes | None = None
        self.triggered = threading.Event()
        self.stopped = threading.Event()
        self.connections = 0

    def start(self) -> TcpProxy:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self) -> None:
        self.stopped.set()
        with contextlib.suppress(OSError):
            self.listener.close()
        self._close_all()

    def cut(self) -> None:
        """Close every open connection and refuse new ones until restore()."""
        self.refusing = True
        self._close_all()

    def restore(self) -> None:
        self.refusing = False

    def cut_on(self, pattern: bytes) -> None:
        """At the next client packet containing pattern: forward it, then cut (the reply is lost)."""
        self.triggered.clear()
        self.trigger = pattern

    def _close_all(self) -> None:
        with self.lock:
            pairs, self.pairs = self.pairs, []
        for a, b in pairs:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    s.close()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.refusing:
                # accept-then-close looks like a refused/lost connection to the MySQL client
                with contextlib.suppress(OSError):
                    client.close()
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.pairs.append((client, server))
                self.connections += 1
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        socks = [client, server]
        try:
            while not self.stopped.is_set():
                readable, _, _ = select.select(socks, [], [], 0.5)
                for s in readable:
                    data = s.recv(65536)
                    if not data:
                        return
                    other = server if s is client else client
                    other.sendall(data)
                    if s is client and self.trigger and self.trigger in data:
                        self.trigger = None
                        self.triggered.set()
                        self.cut()
                        return
        except (OSError, ValueError):
            return
        finally:
            for s in socks:
                with contextlib.suppress(OSError):
                    s.close()
