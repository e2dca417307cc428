"""A tiny sample-app stand-in: answers every GET with 200 after an optional injected latency.

Run as `python -m tests.loadtests.backend --listen 127.0.0.1:PORT --latency-ms 0`; it prints
`ready` once it accepts connections.
"""

from __future__ import annotations

import argparse
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BODY = b"<html><body>mk8s sample app</body></html>\n"


class Server(ThreadingHTTPServer):
    daemon_threads = True
    # listen() backlog: the default of 5 turns a burst of new connections into 1 s SYN retries.
    request_queue_size = 512


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
