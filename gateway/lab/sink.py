"""A webhook sink "on the internet" for the lab's notifications: every POST body becomes one JSON line.

Runs inside the lab's ``inet`` namespace (``python -m gateway.lab.sink --listen ADDR:PORT --out FILE``),
so a notification reaches it only over an uplink that works, like a real one.  ``GET /`` lists what came.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

MAX_BODY = 1 << 20


def make_handler(out: Path) -> type[BaseHTTPRequestHandler]:
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            n = min(int(self.headers.get("Content-Length") or 0), MAX_BODY)
            raw = self.rfile.read(n)
            try:
                body: Any = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
            rec = {"ts": time.time(), "path": self.path, "body": body}
            with lock, open(out, "a", encoding="utf-8") as f:
                f.write(json.dumps(rec) + "\n")
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:  # noqa: N802
            data = out.read_bytes() if out.exists() else b""
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    return Handler


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m gateway.lab.sink")
    ap.add_argument("--listen", required=True, help="ADDR:PORT")
    ap.add_argument("--out", required=True, type=Path)
    args = ap.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    httpd = ThreadingHTTPServer((host, int(port)), make_handler(args.out))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    print("ready", flush=True)
    with contextlib.suppress(OSError):
        sys.stdout.close()
    stop.wait()
    httpd.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
