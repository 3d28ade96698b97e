"""A loopback file server with HTTP range requests (rangehttpserver) that logs every response's bytes.

Run as ``python -m minescape.imagery.range_server --root DIR --port N [--log FILE] [--fail-first K]``. It binds
127.0.0.1 only, serves ``DIR`` (query strings such as SAS tokens are ignored), appends one JSON line per response
to ``FILE`` (``{"path", "status", "bytes", "range", "signed"}``: how bench/ measures bytes transferred per site),
and with ``--fail-first K`` answers the first K requests with HTTP 503 (to exercise the readers' retries);
``--delay-ms D`` waits D ms before answering each request (an emulated network round trip, for the benchmark).
"""

from __future__ import annotations

import argparse
import functools
import json
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path

from RangeHTTPServer import RangeRequestHandler


class _Counter:
    def __init__(self, out) -> None:
        self.out = out
        self.n = 0

    def write(self, data: bytes) -> int:
        self.n += len(data)
        return self.out.write(data)


class LoggingRangeHandler(RangeRequestHandler):
    """RangeRequestHandler that logs response bytes and can fail the first requests with 503."""

    log_path: Path | None = None
    fail_left = 0
    delay_s = 0.0
    lock = threading.Lock()

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (stdlib signature); quiet
        """Log nothing (the tests' servers are quiet)."""
        return

    def _record(self, status: int, nbytes: int) -> None:
        if self.log_path is None:
            return
        line = json.dumps({"path": self.path.split("?")[0], "status": status, "bytes": nbytes,
                           "range": self.headers.get("Range"), "signed": "?" in self.path})
        with self.lock, open(self.log_path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")

    def _maybe_fail(self) -> bool:
        if self.delay_s:  # emulated network round trip
            time.sleep(self.delay_s)
        with self.lock:
            if LoggingRangeHandler.fail_left > 0:
                LoggingRangeHandler.fail_left -= 1
                fail = True
            else:
                fail = False
        if fail:
            self.send_error(503, "Service Unavailable (injected)")
            self._record(503, 0)
        return fail

    def do_GET(self) -> None:  # noqa: N802 (stdlib name)
        """Serve the file, or the byte range the ``Range`` header asks for (206)."""
        if self._maybe_fail():
            return
        f = self.send_head()
        if f is None:
            self._record(404, 0)
            return
        counter = _Counter(self.wfile)
        try:
            self.copyfile(f, counter)
        finally:
            f.close()
        self._record(206 if self.range else 200, counter.n)

    def do_HEAD(self) -> None:  # noqa: N802
        """The headers of a GET, without the body."""
        if self._maybe_fail():
            return
        f = self.send_head()
        if f is not None:
            f.close()
        self._record(200 if f is not None else 404, 0)


def main(argv: list[str] | None = None) -> None:
    """Serve ``--root`` on 127.0.0.1:``--port`` until killed."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--root", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--log", default=None)
    p.add_argument("--fail-first", type=int, default=0)
    p.add_argument("--delay-ms", type=float, default=0.0)
    a = p.parse_args(argv)
    LoggingRangeHandler.log_path = Path(a.log) if a.log else None
    LoggingRangeHandler.fail_left = a.fail_first
    LoggingRangeHandler.delay_s = a.delay_ms / 1000.0
    handler = functools.partial(LoggingRangeHandler, directory=str(Path(a.root).resolve()))
    with ThreadingHTTPServer(("127.0.0.1", a.port), handler) as httpd:
        httpd.serve_forever()


if __name__ == "__main__":
    main()
