"""uvicorn in a thread for the tests that need real HTTP, and polling a condition instead of sleeping."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Final

import uvicorn
from starlette.types import ASGIApp

#: How long a server may take to start or stop.
SERVER_TIMEOUT: Final = 15.0


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.01) -> bool:
    """Poll ``condition`` until it holds (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
    return True


class ServerThread:
    """uvicorn serving ``app`` on 127.0.0.1 (a free port, bound here) in a background thread; a
    context manager that starts it and stops it."""

    def __init__(self, app: ASGIApp) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(("127.0.0.1", 0))
        self.port: int = self.socket.getsockname()[1]
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            lifespan="off",
            ws="none",
            access_log=False,
            log_config=None,  # leave the test's logging (and caplog) alone; uvicorn's records propagate
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.socket]}, name="uvicorn", daemon=True
        )

    def __enter__(self) -> ServerThread:
        self.thread.start()
        wait_until(lambda: self.server.started or not self.thread.is_alive(), SERVER_TIMEOUT)
        assert self.server.started, f"uvicorn did not start within {SERVER_TIMEOUT:.0f} s"
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.should_exit = True
        self.thread.join(SERVER_TIMEOUT)
        self.socket.close()
        assert not self.thread.is_alive(), f"uvicorn did not stop within {SERVER_TIMEOUT:.0f} s"
