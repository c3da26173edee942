"""A real smart-HTTP git remote on loopback that requires a password (Basic auth).

Each request is checked against one user and password, then handed to ``git http-backend``
as a CGI program; the repositories live under ``base``. ``delay`` slows every authenticated
request down, so that a test watching the client's processes surely sees them running.
"""

from __future__ import annotations

import base64
import binascii
import os
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from urllib.parse import unquote, urlsplit


class GitHttpServer:
    def __init__(self, base: Path, *, user: str, password: str, delay: float = 0.0) -> None:
        self.base = base
        self.user = user
        self.password = password
        self.delay = delay
        self.authenticated = 0  # requests that carried the right password
        self.refused = 0  # requests answered with 401
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def url(self, name: str, *, user: str | None = None) -> str:
        userinfo = f"{user}@" if user else ""
        return f"http://{userinfo}127.0.0.1:{self.port}/{name}"

    def count(self, *, authenticated: bool) -> None:
        with self._lock:
            if authenticated:
                self.authenticated += 1
            else:
                self.refused += 1

    def __enter__(self) -> GitHttpServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


def _handler(server: GitHttpServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def log_message(self, format: str, *args: object) -> None:
            pass  # quiet test output

        def _serve(self) -> None:
            body = self._body()  # read before answering, even a refusal
            if not self._authorised():
                server.count(authenticated=False)
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="backupd test"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            server.count(authenticated=True)
            time.sleep(server.delay)
            self._cgi(body)

        def _authorised(self) -> bool:
            header = self.headers.get("Authorization", "")
            scheme, _, encoded = header.partition(" ")
            if scheme.lower() != "basic":
                return False
            try:
                decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                return False
            return decoded == f"{server.user}:{server.password}"

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks: list[bytes] = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                    if size == 0:
                        while self.rfile.readline().strip():  # trailers
                            pass
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()  # the CRLF after each chunk
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _cgi(self, body: bytes) -> None:
            url = urlsplit(self.path)
            # Built from scratch: nothing of the test's own environment (nor the
            # Authorization header) reaches the backend.
            environment = {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "GIT_PROJECT_ROOT": str(server.base),
                "GIT_HTTP_EXPORT_ALL": "1",
                "GATEWAY_INTERFACE": "CGI/1.1",
                "SERVER_PROTOCOL": "HTTP/1.0",
                "REQUEST_METHOD": self.command,
                "PATH_INFO": unquote(url.path),
                "QUERY_STRING": url.query,
                "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                "CONTENT_LENGTH": str(len(body)),
                "REMOTE_USER": server.user,
                "REMOTE_ADDR": "127.0.0.1",
            }
            for header, variable in (
                ("Git-Protocol", "GIT_PROTOCOL"),
                ("Content-Encoding", "HTTP_CONTENT_ENCODING"),
            ):
                if header in self.headers:
                    environment[variable] = self.headers[header]
            result = subprocess.run(
                ["git", "http-backend"],
                input=body,
                capture_output=True,
                env=environment,
                timeout=60,
                check=False,
            )
            head, payload = _split_cgi_output(result.stdout)
            status = 200
            headers = []
            for line in head.decode("latin-1").splitlines():
                name, _, value = line.partition(":")
                if name.lower() == "status":
                    status = int(value.split()[0])
                elif name:
                    headers.append((name, value.strip()))
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return Handler


def _split_cgi_output(output: bytes) -> tuple[bytes, bytes]:
    """A CGI answer's header block and body (headers end at the first empty line)."""
    ends = [(output.find(sep), sep) for sep in (b"\r\n\r\n", b"\n\n") if sep in output]
    if not ends:
        return output, b""
    index, separator = min(ends)
    return output[:index], output[index + len(separator) :]
