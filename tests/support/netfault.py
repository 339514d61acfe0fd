"""A TCP forwarder on loopback that a test can take down and bring back, or make cut or stall
a connection after a given number of bytes: a real network outage (connection refused,
connections cut, a peer that stops answering) between the service and a real server.

Faults are planned per connection: :meth:`Forwarder.arm` queues a :class:`Fault` for the next
connection accepted; later connections are clean again unless more faults are queued. Each
direction counts its own bytes, so a cut ``after=n`` in ``"s2c"`` lets exactly ``n`` bytes of
the server's answer through (inside a FETCH literal, if that is where byte ``n`` falls) and
then closes both sides; a stall holds the bytes from ``n`` on for ``seconds`` (the client sees
a peer that stops sending), then cuts. :meth:`Forwarder.random_fault` draws one from the
forwarder's seeded generator, so a failing case is reproduced by its seed.
"""

from __future__ import annotations

import contextlib
import random
import select
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass

S2C = "s2c"  # server -> client (the answers: greeting, FETCH literals)
C2S = "c2s"  # client -> server (the commands)


@dataclass(frozen=True)
class Fault:
    """After ``after`` bytes in ``direction`` the connection is cut, or, with ``stall`` > 0,
    nothing more passes for ``stall`` seconds and then it is cut."""

    direction: str
    after: int
    stall: float = 0.0

    def __post_init__(self) -> None:
        if self.direction not in (S2C, C2S) or self.after < 0 or self.stall < 0:
            raise ValueError(f"bad fault {self!r}")


@dataclass
class _Conn:
    client: socket.socket
    server: socket.socket
    fault: Fault | None
    bytes: dict[str, int]
    pipes: int = 2  # directions still relaying


class Forwarder:
    """Listens on ``127.0.0.1:<port>`` and relays every connection to ``target``.

    :meth:`down` closes the listener and every open connection (new ones are refused);
    :meth:`up` listens on the same port again. :meth:`arm` plans a fault for the next
    connection; ``cuts``/``stalls`` count the faults that fired, ``last_bytes`` the bytes each
    direction of the last finished connection carried (the size of a clean exchange, to
    choose offsets within it).
    """

    def __init__(self, target: tuple[str, int], *, seed: int | None = None) -> None:
        self.target = target
        self.host = "127.0.0.1"
        probe = socket.socket()
        probe.bind((self.host, 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self.rng = random.Random(seed)  # noqa: S311 - fault offsets, not security
        self.cuts = 0
        self.stalls = 0
        self.last_bytes = {S2C: 0, C2S: 0}
        self._faults: deque[Fault] = deque()
        self._conns: list[_Conn] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._listener: socket.socket | None = None
        self.up()

    # -- faults ------------------------------------------------------------------------------

    def arm(self, fault: Fault) -> Fault:
        """Give the next connection accepted this fault (queued: one per connection)."""
        with self._lock:
            self._faults.append(fault)
        return fault

    def disarm(self) -> None:
        with self._lock:
            self._faults.clear()

    def random_fault(self, s2c_bytes: int, c2s_bytes: int, stall: float = 0.0) -> Fault:
        """A fault at a random offset of an exchange of that size (the server's side is chosen
        nine times in ten: that is where the literals are), drawn from the seeded generator."""
        direction = S2C if self.rng.random() < 0.9 or c2s_bytes < 2 else C2S
        size = s2c_bytes if direction == S2C else c2s_bytes
        return Fault(direction, self.rng.randrange(1, max(2, size)), stall)

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Wait until every connection has ended (``last_bytes`` is then the last one's)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if not self._conns:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError("connections still open through the forwarder")
            time.sleep(0.01)

    # -- listener ----------------------------------------------------------------------------

    def up(self) -> None:
        ls = socket.socket()
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind((self.host, self.port))
        ls.listen(16)
        self._listener = ls
        threading.Thread(target=self._accept, args=(ls,), daemon=True).start()

    def down(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            conns, self._conns = self._conns, []
        for c in conns:
            self._cut(c)

    def close(self) -> None:
        self._closing.set()  # ends any stall at once
        self.down()

    def _accept(self, ls: socket.socket) -> None:
        while True:
            try:
                client, _ = ls.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target, timeout=10)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                fault = self._faults.popleft() if self._faults else None
                conn = _Conn(client, server, fault, {S2C: 0, C2S: 0})
                self._conns.append(conn)
            for src, dst, direction in ((client, server, C2S), (server, client, S2C)):
                threading.Thread(target=self._pipe, args=(conn, src, dst, direction), daemon=True).start()

    @staticmethod
    def _cut(conn: _Conn) -> None:
        for s in (conn.client, conn.server):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def _hold(self, conn: _Conn, src: socket.socket, seconds: float) -> None:
        """Pass nothing for ``seconds``, or until the client gives up (it closed its side: the
        other direction ended, or ``src`` is at EOF) or the forwarder closes."""
        end = time.monotonic() + seconds
        while time.monotonic() < end and not self._closing.is_set() and conn.pipes == 2:
            readable, _, _ = select.select([src], [], [], 0.05)
            if readable:
                try:
                    if not src.recv(1, socket.MSG_PEEK):
                        return
                except OSError:
                    return
                self._closing.wait(0.05)

    def _pipe(self, conn: _Conn, src: socket.socket, dst: socket.socket, direction: str) -> None:
        fault = conn.fault if conn.fault is not None and conn.fault.direction == direction else None
        try:
            while data := src.recv(65536):
                if fault is not None and conn.bytes[direction] + len(data) >= fault.after:
                    keep = fault.after - conn.bytes[direction]
                    dst.sendall(data[:keep])
                    conn.bytes[direction] += keep
                    with self._lock:
                        if fault.stall:
                            self.stalls += 1
                        else:
                            self.cuts += 1
                    if fault.stall:
                        self._hold(conn, src, fault.stall)  # the peer hears nothing meanwhile
                    self._cut(conn)
                    return
                dst.sendall(data)
                conn.bytes[direction] += len(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)
            with self._lock:
                conn.pipes -= 1
                finished = conn.pipes == 0
                if finished:
                    self.last_bytes = dict(conn.bytes)
                    if conn in self._conns:
                        self._conns.remove(conn)
            if finished:
                self._cut(conn)
