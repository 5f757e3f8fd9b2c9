"""A tiny HTTP service on 127.0.0.1 for the demo: answers 503 twice, then 200.

Run as ``python -m demo.server PORT``; stops on SIGTERM.
"""

from __future__ import annotations

import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    failures_left = 2
    lock = threading.Lock()

    def do_GET(self) -> None:
        if self.path == "/health":
            self._answer(200, b"ok\n")
            return
        with Handler.lock:
            failing = Handler.failures_left > 0
            Handler.failures_left -= 1
        if failing:
            self._answer(503, b"warming up\n", retry_after="1")
        else:
            self._answer(200, b"report ready\n")

    def _answer(self, status: int, body: bytes, retry_after: str | None = None) -> None:
        self.send_response(status)
        if retry_after is not None:
            self.send_header("Retry-After", retry_after)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt: str, *args: object) -> None:
        sys.stdout.write(f"{self.address_string()} {fmt % args}\n")
        sys.stdout.flush()


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8765
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    sys.stdout.write(f"serving on 127.0.0.1:{port}\n")
    sys.stdout.flush()
    server.serve_forever()
    sys.stdout.write("stopped cleanly\n")


if __name__ == "__main__":
    main()
