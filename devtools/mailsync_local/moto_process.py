"""moto's server in a process of its own, for the local runner.

The runner serves the API, the scheduler, the workers and the stream pump on threads of one
Python process; with moto in the same process, every DynamoDB request moto parses and every
record it copies competes for the same interpreter lock as the code under load. A process of
its own lets moto use the second core (docs/reliability.md, "Load").

* The child runs :func:`mailsync_local.runner.start_moto` (DynamoDB requests one at a time,
  the transaction patch) on the given port and exits on SIGTERM, or by itself as soon as its
  parent is gone (it checks every second), so it can never outlive the runner.
* :class:`MotoProcess` has the ``stop()`` of the in-process server, so the runner treats both
  alike. ``MAILSYNC_MOTO_IN_PROCESS=1`` keeps moto in the runner's process.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time


class MotoProcess:
    def __init__(self, port: int) -> None:
        self.port = port
        self.proc = subprocess.Popen(  # noqa: S603 - our own module, no shell
            [sys.executable, "-m", "mailsync_local.moto_process", str(port), str(os.getpid())],
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"moto did not start on port {port}") from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def main(port: int, parent: int) -> None:
    from mailsync_local.runner import start_moto

    server, _ = start_moto(port)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())  # Ctrl-C reaches the whole group
    while not done.wait(1.0):
        if os.getppid() != parent:  # the runner is gone (even killed): go with it
            break
    server.stop()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
