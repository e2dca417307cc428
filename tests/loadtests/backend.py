"""A tiny sample-app stand-in: answers every GET with 200 after an optional injected latency.

Run as `python -m tests.loadtests.backend --listen 127.0.0.1:PORT --latency-ms 0`; it prints
`ready` once it accepts connections.
"""

from __future__ import annotations

import argparse
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BODY = b"<html><body>mk8s sample app</body></html>\n"


class Server(ThreadingHTTPServer):
    daemon_threads = True
    # listen() backlog: the default of 5 turns a burst of new connections into 1 s SYN retries.
    request_queue_size = 512

    def handle_error(self, request: object, client_address: object) -> None:
        # nginx dropping idle keep-alive connections at shutdown is not an error of the app.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--listen", required=True)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    args = parser.parse_args()
    host, port = args.listen.rsplit(":", 1)
    delay = args.latency_ms / 1000

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as nginx's upstream keepalive expects

        def do_GET(self) -> None:
            if delay:
                time.sleep(delay)
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            self.wfile.write(BODY)

        def log_message(self, format: str, *args: object) -> None:
            pass  # thousands of requests; the test reads Locust's stats instead

    server = Server((host, int(port)), Handler)
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
