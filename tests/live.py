"""A real ``lenet-tf serve`` process on a free loopback port, for the tests that need real sockets."""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field


@dataclass
class LiveServer:
    """The server's base URL (``http://127.0.0.1:PORT``), its process, and the lines it wrote on stderr after
    "serving on" (a traceback would land there)."""

    url: str
    process: subprocess.Popen
    log: list[str] = field(default_factory=list)
    header_timeout: float = 10.0  # seconds, as its --header-timeout says

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.url.removeprefix("http://").split(":")
        return host, int(port)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def start_server(*flags: str, timeout: float = 120) -> LiveServer:
    """Starts ``lenet-tf serve --port 0 FLAGS`` and returns once it printed "serving on" (or fails)."""
    process = subprocess.Popen([sys.executable, "-m", "lenet_tf", "serve", "--port", "0", *flags],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stderr], daemon=True).start()
    deadline, url, before = time.monotonic() + timeout, None, []
    while url is None and time.monotonic() < deadline and process.poll() is None:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            continue
        if line.startswith("serving on "):
            url = line.split()[2].rstrip("/")
        before.append(line)
    if url is None:
        process.kill()
        raise RuntimeError("the server did not start: " + "".join(before)[-2000:])
    server = LiveServer(url, process)
    threading.Thread(target=lambda: [server.log.append(lines.get()) for _ in iter(int, 1)], daemon=True).start()
    return server
