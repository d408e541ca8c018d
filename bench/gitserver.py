"""A local git smart-HTTP server: `git http-backend` as CGI behind a ThreadingHTTPServer on 127.0.0.1.

The closest stand-in for GitHub we can run offline: real receive-pack/upload-pack, protocol v2, partial-clone
filters, Basic auth with a token. `python -m bench.gitserver ROOT` runs it in its own process (what the
benchmarks use, so the server's CPU never counts as the client's) and prints its port.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hmac
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import IO, Any

TOKEN_ENV = "JSYNC_BENCH_GIT_TOKEN"  # how the token reaches a server process: never on its command line
_CHUNK = 64 * 1024
# Pushes over HTTP, blob filters; the same for every repository under the root.
_GIT_CONFIG = {"http.receivepack": "true", "uploadpack.allowFilter": "true", "uploadpack.allowAnySHA1InWant": "true"}


def http_backend() -> str:
    exec_path = subprocess.run(["git", "--exec-path"], check=True, capture_output=True, text=True).stdout.strip()
    return str(Path(exec_path) / "git-http-backend")


def init_bare(path: Path, branch: str = "main") -> Path:
    """An empty bare repository whose HEAD names `branch`."""
    subprocess.run(
        ["git", "init", "--quiet", "--bare", f"--initial-branch={branch}", str(path)], check=True, env=git_env()
    )
    return path


def git_env(**extra: str) -> dict[str, str]:
    """The git CLI without the user's or the system's configuration (no credential helpers, no prompts)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_TERMINAL_PROMPT="0",
        GIT_AUTHOR_NAME="Bench",
        GIT_AUTHOR_EMAIL="bench@jsync.invalid",
        GIT_COMMITTER_NAME="Bench",
        GIT_COMMITTER_EMAIL="bench@jsync.invalid",
    )
    env.update(extra)
    return env


def _read_chunked(rfile: IO[bytes]) -> bytes:
    """De-chunk a `Transfer-Encoding: chunked` request body (dulwich pushes that way; CGI wants plain bytes)."""
    parts: list[bytes] = []
    while True:
        line = rfile.readline(1024)
        if not line:
            raise ValueError("connection closed inside a chunked body")
        size = int(line.split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            while rfile.readline(1024) not in (b"\r\n", b"\n", b""):  # trailers
                pass
            return b"".join(parts)
        parts.append(rfile.read(size))
        rfile.readline(8)  # the CRLF after each chunk


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # so `Expect: 100-continue` is answered; every response closes the connection
    server: _GitHTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        pass

    def do_GET(self) -> None:
        self._cgi(b"")

    def do_POST(self) -> None:
        if self.path.endswith("/git-receive-pack") and self.server.push_delay:
            time.sleep(self.server.push_delay)  # a git host's round trips and ref update, as issue 13 measures
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            body = _read_chunked(self.rfile)
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._cgi(body)

    def _authorized(self) -> str | None:
        """The user name when the request may proceed, else None (a 401 was sent)."""
        token = self.server.token
        if token is None:
            return "anonymous"
        header = self.headers.get("Authorization", "")
        if header.startswith("Basic "):
            try:
                user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                user, password = "", ""
            if hmac.compare_digest(password.encode(), token.encode()):
                return user or "token"
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="jsync-bench"')
        self.send_header("Content-Length", "0")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        return None

    def _cgi(self, body: bytes) -> None:
        user = self._authorized()
        if user is None:
            return
        path, _, query = self.path.partition("?")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(self.server.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": user,
            "REMOTE_ADDR": self.client_address[0],
            "SERVER_PROTOCOL": "HTTP/1.1",
            "GATEWAY_INTERFACE": "CGI/1.1",
            "GIT_CONFIG_COUNT": str(len(_GIT_CONFIG)),
        }
        for i, (key, value) in enumerate(_GIT_CONFIG.items()):
            env[f"GIT_CONFIG_KEY_{i}"], env[f"GIT_CONFIG_VALUE_{i}"] = key, value
        for header, var in (("Git-Protocol", "HTTP_GIT_PROTOCOL"), ("Content-Encoding", "HTTP_CONTENT_ENCODING")):
            if self.headers.get(header):
                env[var] = self.headers[header]
        proc = subprocess.Popen(
            [self.server.backend], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env
        )
        assert proc.stdin is not None and proc.stdout is not None
        feeder = threading.Thread(target=_feed, args=(proc.stdin, body), daemon=True)
        feeder.start()
        try:
            status, headers = _cgi_headers(proc.stdout)
            # Stream the body as the backend writes it (a big fetch starts arriving before the pack is done).
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            while chunk := proc.stdout.read1(_CHUNK):  # type: ignore[attr-defined]
                self.wfile.write(chunk)
        finally:
            proc.stdout.close()
            feeder.join(30)
            proc.wait(30)


def _feed(stdin: IO[bytes], body: bytes) -> None:
    with contextlib.suppress(BrokenPipeError):
        stdin.write(body)
    with contextlib.suppress(BrokenPipeError):
        stdin.close()


def _cgi_headers(stdout: IO[bytes]) -> tuple[int, list[tuple[str, str]]]:
    status, headers = 200, []
    while True:
        line = stdout.readline()
        if line in (b"\r\n", b"\n", b""):
            return status, headers
        name, _, value = line.decode("latin-1").partition(":")
        if name.lower() == "status":
            status = int(value.strip().split(" ", 1)[0])
        else:
            headers.append((name.strip(), value.strip()))


class _GitHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path, token: str | None, push_delay: float = 0.0) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.root = root
        self.token = token
        self.push_delay = push_delay
        self.backend = http_backend()


class _Urls:
    """URLs of repositories under the root; `with_token` puts the token in the URL (the git CLI's way)."""

    port: int
    token: str | None

    def url(self, name: str, with_token: bool = False) -> str:
        auth = f"x-access-token:{self.token}@" if with_token and self.token else ""
        return f"http://{auth}127.0.0.1:{self.port}/{name}"


class GitServer(_Urls):
    """In-process server (threads); for tests. `with GitServer(root, token) as s: s.url("repo.git")`."""

    def __init__(self, root: Path, token: str | None = None) -> None:
        self.root = root
        self.token = token
        self._httpd = _GitHTTPServer(root, token)
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="git-http", daemon=True)

    def start(self) -> GitServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(10)

    def __enter__(self) -> GitServer:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()


class GitServerProcess(_Urls):
    """The same server in a child process, so its work never shows in the benchmark's own CPU or GIL.
    `push_delay`: seconds added to every push, as a git host's round trips add them."""

    def __init__(self, root: Path, token: str | None = None, push_delay: float = 0.0) -> None:
        self.root = root
        self.token = token
        self.push_delay = push_delay
        self.port = 0
        self._proc: subprocess.Popen[str] | None = None

    def start(self) -> GitServerProcess:
        env = dict(os.environ)
        env.pop(TOKEN_ENV, None)
        if self.token:
            env[TOKEN_ENV] = self.token
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "bench.gitserver", str(self.root), "--push-delay", str(self.push_delay)],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
            cwd=str(Path(__file__).resolve().parents[1]),
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line.strip().isdigit():
            self.stop()
            raise RuntimeError("the git server process did not start")
        self.port = int(line)
        return self

    def stop(self) -> None:
        if self._proc is None:
            return
        from local.stack import stop_process  # here, not at import: the server's own process never needs it

        stop_process(self._proc, grace=10)
        if self._proc.stdout:
            self._proc.stdout.close()
        self._proc = None

    def __enter__(self) -> GitServerProcess:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()


def copy_repo(source: Path, target: Path) -> Path:
    """A writable copy of a (cached) bare repository, to be pushed to."""
    shutil.copytree(source, target, symlinks=True)
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("root", type=Path, help="directory holding the bare repositories to serve")
    parser.add_argument("--push-delay", type=float, default=0.0, help="seconds added to every push")
    args = parser.parse_args()
    httpd = _GitHTTPServer(args.root.resolve(), os.environ.get(TOKEN_ENV) or None, args.push_delay)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=httpd.shutdown, daemon=True).start())
    print(httpd.server_address[1], flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
