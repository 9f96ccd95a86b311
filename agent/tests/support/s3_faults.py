"""A fault-injecting HTTP proxy in front of the real S3 server (SeaweedFS).

Requests pass through unchanged (the Host header too, so SigV4 signatures stay valid) unless an
armed fault matches: then the proxy answers an S3 error itself, e.g. ``503 SlowDown`` for the
N-th UploadPart. Listens on 127.0.0.1 only.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit


def object_operation(method: str, query: dict, copy: bool = False) -> str | None:
    """The S3 API operation of a path-style request on an object key, from its method and parsed
    query (``parse_qs``; ``copy``: an ``x-amz-copy-source`` header was sent); None if unknown."""
    if method == "PUT" and {"partNumber", "uploadId"} <= set(query):
        return "UploadPartCopy" if copy else "UploadPart"
    if method == "PUT" and not query:
        return "CopyObject" if copy else "PutObject"
    if method == "POST" and "uploads" in query:
        return "CreateMultipartUpload"
    if method == "POST" and "uploadId" in query:
        return "CompleteMultipartUpload"
    if method == "DELETE" and "uploadId" in query:
        return "AbortMultipartUpload"
    if method == "DELETE" and not query:
        return "DeleteObject"
    if method == "GET" and "uploadId" in query:
        return "ListParts"
    if method in ("GET", "HEAD") and "versionId" in query:
        return "GetObjectVersion"
    if method in ("GET", "HEAD") and set(query) <= {"partNumber"}:
        return "GetObject" if method == "GET" else "HeadObject"
    return None


ERROR_BODY = ("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>"
              "<Message>injected by the test proxy</Message></Error>")


# Hop-by-hop headers: they describe the upstream connection, not the answer relayed.
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding"})


def relay_answer(handler: BaseHTTPRequestHandler, status: int,
                 headers: list[tuple[str, str]], data: bytes) -> None:
    """Send an upstream answer (read whole: ``data``) to ``handler``'s client: its status and
    end-to-end headers, with a Content-Length of ``data`` (a HEAD's own stays, with no body)."""
    handler.send_response(status)
    head = handler.command == "HEAD"
    for name, value in headers:
        if name.lower() not in _HOP_BY_HOP and (head or name.lower() != "content-length"):
            handler.send_header(name, value)
    if not head:
        handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    if not head:
        handler.wfile.write(data)


@dataclass
class S3Fault:
    """Answer ``status``/``code`` to requests whose method is ``method``, whose query contains
    ``query`` (``partNumber`` = UploadPart, ``uploads`` = CreateMultipartUpload) and whose path
    contains ``path`` (e.g. ``catalog.json``) — and, if given, for which ``where(method, path,
    query)`` is true — after letting ``skip`` of them through, ``times`` times.

    ``lose_answer``: the request reaches S3 (a write is done) and only its answer is replaced by
    the error, as when a connection drops after S3 acted: the worst moment for a write."""

    method: str
    query: str
    status: int = 503
    code: str = "SlowDown"
    skip: int = 0
    times: int = 1
    fired: int = 0
    path: str = ""
    where: Callable[[str, str, str], bool] | None = None
    lose_answer: bool = False


class S3FaultProxy:
    """``with S3FaultProxy(upstream_url) as proxy: proxy.endpoint_url``; arm faults with
    :meth:`add`. ``requests`` counts the requests forwarded or answered; ``log`` lists them as
    ``{"method", "path", "query", "status", "at"}`` (``at``: epoch seconds when the request had
    arrived whole, before it was forwarded)."""

    def __init__(self, upstream_url: str):
        upstream = urlsplit(upstream_url)
        self.upstream = (upstream.hostname, upstream.port)
        self.faults: list[S3Fault] = []
        self.requests = 0
        self.log: list[dict] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        # A client that drops a connection (the agent exiting mid-retry) is not the test's news.
        self._server.handle_error = lambda request, client_address: None
        self.endpoint_url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def add(self, fault: S3Fault) -> S3Fault:
        with self._lock:
            self.faults.append(fault)
        return fault

    def _take(self, method: str, split) -> S3Fault | None:
        with self._lock:
            self.requests += 1
            for fault in self.faults:
                if (fault.method != method or fault.query not in split.query
                        or fault.path not in unquote(split.path) or fault.fired >= fault.times
                        or (fault.where and not fault.where(method, unquote(split.path),
                                                            split.query))):
                    continue
                if fault.skip:
                    fault.skip -= 1
                    continue
                fault.fired += 1
                return fault
        return None

    def _record(self, method: str, split, status: int, arrived: float) -> None:
        with self._lock:
            self.log.append({"method": method, "path": unquote(split.path), "query": split.query,
                             "status": status, "at": arrived})

    def _handler(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                arrived = time.time()
                split = urlsplit(self.path)
                fault = proxy._take(self.command, split)
                if fault is not None and not fault.lose_answer:
                    self._refuse(fault, split, arrived)
                    return
                conn = http.client.HTTPConnection(*proxy.upstream, timeout=120)
                try:
                    conn.request(self.command, self.path, body=body, headers=dict(self.headers))
                    answer = conn.getresponse()
                    data = answer.read()
                finally:
                    conn.close()
                if fault is not None:  # S3 acted; its answer is lost on the way back
                    self._refuse(fault, split, arrived)
                    return
                proxy._record(self.command, split, answer.status, arrived)
                relay_answer(self, answer.status, answer.getheaders(), data)

            def _refuse(self, fault: S3Fault, split, arrived: float) -> None:
                proxy._record(self.command, split, fault.status, arrived)
                data = ERROR_BODY.format(code=fault.code).encode()
                self.send_response(fault.status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

            def log_message(self, *args):
                pass

        return Handler

    def __enter__(self) -> S3FaultProxy:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._server.shutdown()
        self._server.server_close()
