"""The authenticated message channel between the two parties: HTTP on loopback, HMAC, replay guard, size cap.

A message is `ORC1 | u32 header length | header JSON | blobs`, where the header names the kind, the session,
a per-sender sequence number, a random nonce, a timestamp, small JSON fields and the layout of the binary
blobs (numpy arrays of whitelisted dtypes). Its HMAC-SHA256 under the pre-shared channel key travels in the
`X-Orchard-Mac` header, and an HMAC of the body's length and MAC in `X-Orchard-Length-Mac`, which the
receiver checks before it reads a byte of the body (an unauthenticated sender cannot make it buffer
anything). A server answers at most max_concurrent requests at once (503 beyond). A receiver rejects a message whose MAC is wrong, whose sequence number is not above
the last one it accepted from that sender in that session, whose nonce it has seen, whose clock is more
than MAX_SKEW_SECONDS away, or whose size is above the limit; a reply names the request nonce it answers.
Every authenticated message crossing the channel (sent or received, both sides) is passed to an optional
recorder; rejected bodies are never recorded.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import logging
import os
import secrets
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

from orchard.errors import OrchardError

log = logging.getLogger(__name__)

MAGIC = b"ORC1"
MAC_HEADER = "X-Orchard-Mac"
LENGTH_MAC_HEADER = "X-Orchard-Length-Mac"
DEFAULT_MAX_CONCURRENT = 8
PATH = "/v1/message"
MAX_SKEW_SECONDS = 300.0
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
_DTYPES = frozenset({"<f8", "<i4", "<i8", "|u1", "|b1"})
_MAX_HEADER_BYTES = 1 << 20

Recorder = Callable[[str, bytes], None]


class ChannelError(OrchardError):
    """A message was rejected (bad MAC, replay, malformed, too large) or the peer failed."""


@dataclass
class Message:
    """One protocol message: its kind, small JSON fields and named numpy arrays."""

    kind: str
    fields: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    session: str = ""
    sender: str = ""
    seq: int = 0
    nonce: str = ""
    reply_to: str = ""
    ts: float = 0.0


def write_secret(text: str, path: Path) -> Path:
    """Write a secret atomically into a file that is 0600 from its creation (never readable by others)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def load_key(path: Path) -> bytes:
    """Return the pre-shared channel key stored (hex) in a file, or raise naming the file."""
    try:
        if Path(path).stat().st_mode & 0o077:
            raise OrchardError(f"channel key file {path} is readable by other users; make it 0600")
        key = bytes.fromhex(Path(path).read_text().strip())
    except (OSError, ValueError) as exc:
        raise OrchardError(f"cannot read the channel key from {path}: {exc}") from exc
    if len(key) < 32:
        raise OrchardError(f"channel key in {path} is shorter than 32 bytes")
    return key


def encode(message: Message) -> bytes:
    """Return the wire bytes of a message (without its MAC)."""
    layout = []
    blobs = []
    for name, array in message.arrays.items():
        arr = np.ascontiguousarray(array)
        dtype = arr.dtype.str
        if dtype not in _DTYPES:
            raise ChannelError(f"array {name!r} has dtype {dtype}, not one the channel carries")
        data = arr.tobytes()
        layout.append([name, dtype, list(arr.shape), len(data)])
        blobs.append(data)
    header = {
        "kind": message.kind,
        "session": message.session,
        "sender": message.sender,
        "seq": message.seq,
        "nonce": message.nonce,
        "reply_to": message.reply_to,
        "ts": message.ts,
        "fields": message.fields,
        "blobs": layout,
    }
    head = json.dumps(header, separators=(",", ":")).encode()
    return MAGIC + struct.pack(">I", len(head)) + head + b"".join(blobs)


def decode(body: bytes) -> Message:
    """Return the message encoded in body, or raise ChannelError naming what is malformed."""
    if len(body) < 8 or body[:4] != MAGIC:
        raise ChannelError("malformed message: bad magic")
    (head_len,) = struct.unpack(">I", body[4:8])
    if head_len > _MAX_HEADER_BYTES or 8 + head_len > len(body):
        raise ChannelError("malformed message: header length out of range")
    try:
        header = json.loads(body[8 : 8 + head_len])
        kind, session, sender = str(header["kind"]), str(header["session"]), str(header["sender"])
        seq, nonce, ts = int(header["seq"]), str(header["nonce"]), float(header["ts"])
        reply_to, fields, layout = str(header["reply_to"]), dict(header["fields"]), list(header["blobs"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ChannelError(f"malformed message header: {exc}") from exc
    arrays: dict[str, np.ndarray] = {}
    offset = 8 + head_len
    for entry in layout:
        try:
            name, dtype, shape, size = str(entry[0]), str(entry[1]), [int(s) for s in entry[2]], int(entry[3])
        except (ValueError, TypeError, IndexError) as exc:
            raise ChannelError(f"malformed blob layout: {exc}") from exc
        if dtype not in _DTYPES or size < 0 or offset + size > len(body) or any(s < 0 for s in shape):
            raise ChannelError(f"malformed blob {name!r}")
        if int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize != size:
            raise ChannelError(f"blob {name!r} size does not match its shape")
        arrays[name] = np.frombuffer(
            body, dtype=dtype, count=size // np.dtype(dtype).itemsize, offset=offset
        ).reshape(shape)
        offset += size
    if offset != len(body):
        raise ChannelError("malformed message: trailing bytes")
    return Message(
        kind=kind,
        fields=fields,
        arrays=arrays,
        session=session,
        sender=sender,
        seq=seq,
        nonce=nonce,
        reply_to=reply_to,
        ts=ts,
    )


def mac(key: bytes, body: bytes) -> str:
    """Return the hex HMAC-SHA256 of body under key."""
    return hmac.new(key, body, hashlib.sha256).hexdigest()


class ReplayGuard:
    """Accepts each (session, sender) sequence number once and in increasing order, and each nonce once."""

    def __init__(self, max_skew_seconds: float = MAX_SKEW_SECONDS) -> None:
        self._last: dict[tuple[str, str], int] = {}
        self._nonces: set[str] = set()
        self._lock = threading.Lock()
        self.max_skew_seconds = max_skew_seconds

    def check(self, message: Message) -> None:
        """Raise ChannelError if the message is a replay, out of order or too old; else remember it."""
        if abs(time.time() - message.ts) > self.max_skew_seconds:
            raise ChannelError(f"rejected message {message.kind}: timestamp outside the allowed clock skew")
        if len(message.nonce) < 32:
            raise ChannelError(f"rejected message {message.kind}: nonce too short")
        key = (message.session, message.sender)
        with self._lock:
            if message.nonce in self._nonces:
                raise ChannelError(f"rejected replayed message {message.kind} (nonce already seen)")
            if message.seq <= self._last.get(key, 0):
                raise ChannelError(
                    f"rejected replayed message {message.kind}: sequence {message.seq} is not above "
                    f"{self._last.get(key, 0)}"
                )
            self._last[key] = message.seq
            self._nonces.add(message.nonce)


def seal(key: bytes, message: Message) -> tuple[bytes, str]:
    """Return the body and MAC of a message, stamping a fresh nonce and the current time."""
    message.nonce = secrets.token_hex(16)
    message.ts = time.time()
    body = encode(message)
    return body, mac(key, body)


def length_mac(key: bytes, length: int, tag: str) -> str:
    """Return the MAC binding a body's length to its MAC (checked before the body is read)."""
    return mac(key, f"len:{length}:{tag}".encode())


def open_sealed(key: bytes, body: bytes, tag: str | None, guard: ReplayGuard) -> Message:
    """Return the message if its MAC verifies and it is not a replay, else raise ChannelError."""
    if not tag or not hmac.compare_digest(mac(key, body), tag):
        raise ChannelError("rejected message: missing or wrong MAC")
    message = decode(body)
    guard.check(message)
    return message


Handler = Callable[[Message], Message]


class PartyServer:
    """An HTTP server on loopback that authenticates each message and answers it with handler's reply."""

    def __init__(
        self,
        key: bytes,
        role: str,
        handler: Handler,
        host: str = "127.0.0.1",
        port: int = 0,
        max_bytes: int = DEFAULT_MAX_BYTES,
        recorder: Recorder | None = None,
        max_concurrent: int = DEFAULT_MAX_CONCURRENT,
    ) -> None:
        self.key, self.role, self.handler = key, role, handler
        self.max_bytes, self.recorder = max_bytes, recorder
        self.guard = ReplayGuard()
        self._seq = 0
        self._seq_lock = threading.Lock()
        server = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # a reply is two writes (headers, body): with Nagle on, the body waited for the client's delayed
            # ACK of the headers, about 40 ms a round trip
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("%s: " + format, server.role, *args)

            def _send(self, status: int, body: bytes, tag: str = "") -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                if tag:
                    self.send_header(MAC_HEADER, tag)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                self._send(200 if self.path == "/health" else 404, b"ok" if self.path == "/health" else b"")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or -1)
                if self.path != PATH or length < 0:
                    self._send(400, b'{"error": "bad request"}')
                    return
                if length > server.max_bytes:
                    self.close_connection = True
                    self._send(
                        413,
                        json.dumps(
                            {"error": f"message of {length} bytes is over the {server.max_bytes}-byte limit"}
                        ).encode(),
                    )
                    return
                tag = self.headers.get(MAC_HEADER) or ""
                expected = length_mac(server.key, length, tag)
                if not hmac.compare_digest(expected, self.headers.get(LENGTH_MAC_HEADER) or ""):
                    self.close_connection = True  # the body is never read
                    self._send(401, b'{"error": "rejected message: missing or wrong length MAC"}')
                    return
                body = self.rfile.read(length)
                status, reply, tag = server.answer(body, tag)
                self._send(status, reply, tag)

        self._http = _BoundedHTTPServer((host, port), _Handler, max_concurrent)
        self._http.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """Return the port the server listens on."""
        return int(self._http.server_address[1])

    def answer(self, body: bytes, tag: str | None) -> tuple[int, bytes, str]:
        """Return (HTTP status, reply body, reply MAC) for one request body."""
        try:
            request = open_sealed(self.key, body, tag, self.guard)
        except ChannelError as exc:
            log.warning("%s rejected a message: %s", self.role, exc)
            return 400, json.dumps({"error": str(exc)}).encode(), ""
        if self.recorder:
            self.recorder(f"{self.role}-in", body)
        try:
            reply = self.handler(request)
        except OrchardError as exc:
            log.warning("%s failed on %s: %s", self.role, request.kind, exc)
            return 409, json.dumps({"error": str(exc)}).encode(), ""
        except Exception as exc:  # the peer must learn that this party failed, not hang
            log.exception("%s crashed on %s", self.role, request.kind)
            return 500, json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode(), ""
        with self._seq_lock:
            self._seq += 1
            reply.seq = self._seq
        reply.session, reply.sender, reply.reply_to = request.session, self.role, request.nonce
        out, reply_tag = seal(self.key, reply)
        if self.recorder:
            self.recorder(f"{self.role}-out", out)
        return 200, out, reply_tag

    def serve_forever(self) -> None:
        """Serve until shutdown() is called."""
        self._http.serve_forever(poll_interval=0.2)

    def start(self) -> PartyServer:
        """Serve in a background thread and return self."""
        self._thread = threading.Thread(target=self.serve_forever, name=f"{self.role}-server", daemon=True)
        self._thread.start()
        return self

    def shutdown(self) -> None:
        """Stop serving and close the socket."""
        self._http.shutdown()
        self._http.server_close()


class _BoundedHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server that serves at most max_concurrent connections and answers 503 beyond."""

    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], max_concurrent: int
    ) -> None:
        super().__init__(address, handler)
        self._slots = threading.BoundedSemaphore(max_concurrent)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            try:
                request.sendall(
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 41\r\nConnection: close"
                    b'\r\n\r\n{"error": "too many concurrent requests"}'
                )
            finally:
                self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class PeerClient:
    """The requesting side of the channel: seals requests, checks replies, names the peer when it fails."""

    def __init__(
        self,
        key: bytes,
        role: str,
        peer_host: str,
        peer_port: int,
        session: str,
        timeout_seconds: float = 600.0,
        max_bytes: int = DEFAULT_MAX_BYTES,
        recorder: Recorder | None = None,
    ) -> None:
        self.key, self.role, self.session = key, role, session
        self.peer = f"{peer_host}:{peer_port}"
        self.max_bytes, self.recorder = max_bytes, recorder
        self.guard = ReplayGuard()
        self.bytes_sent = 0
        self.bytes_received = 0
        self.messages = 0
        self._seq = 0
        self._conn = http.client.HTTPConnection(peer_host, peer_port, timeout=timeout_seconds)

    def call(self, message: Message, step: str = "") -> Message:
        """Send a request and return the peer's verified reply, or raise ChannelError naming the failure."""
        self._seq += 1
        message.seq, message.session, message.sender = self._seq, self.session, self.role
        body, tag = seal(self.key, message)
        if len(body) > self.max_bytes:
            raise ChannelError(f"message {message.kind} of {len(body)} bytes is over the channel limit")
        if self.recorder:
            self.recorder(f"{self.role}-out", body)
        what = step or message.kind
        try:
            self._conn.request("POST", PATH, body=body, headers=self._headers(body, tag))
            response = self._conn.getresponse()
            reply_body = response.read()
        except (OSError, http.client.HTTPException) as exc:
            self._conn.close()
            raise ChannelError(
                f"the peer party at {self.peer} stopped responding during {what}: {type(exc).__name__}: {exc}"
            ) from exc
        self.bytes_sent += len(body)
        self.bytes_received += len(reply_body)
        self.messages += 1
        if response.status != 200:
            try:
                detail = json.loads(reply_body).get("error", "")
            except ValueError:
                detail = reply_body[:200].decode(errors="replace")
            raise ChannelError(
                f"the peer party at {self.peer} refused {what} (HTTP {response.status}): {detail}"
            )
        reply = open_sealed(self.key, reply_body, response.getheader(MAC_HEADER), self.guard)
        if self.recorder:
            self.recorder(f"{self.role}-in", reply_body)
        if reply.reply_to != message.nonce or reply.session != self.session:
            raise ChannelError(f"rejected reply to {what}: it answers another request")
        return reply

    def raw_post(self, body: bytes, tag: str) -> tuple[int, bytes]:
        """Post raw bytes (tests use it to replay or corrupt a message); return (status, body)."""
        self._conn.request("POST", PATH, body=body, headers=self._headers(body, tag))
        response = self._conn.getresponse()
        return response.status, response.read()

    def _headers(self, body: bytes, tag: str) -> dict[str, str]:
        return {
            MAC_HEADER: tag,
            LENGTH_MAC_HEADER: length_mac(self.key, len(body), tag),
            "Content-Type": "application/octet-stream",
        }

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()


def file_recorder(folder: Path) -> Recorder:
    """Return a recorder writing every message body to its own file under folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    counter = iter(range(1 << 62))
    lock = threading.Lock()

    def record(direction: str, body: bytes) -> None:
        with lock:
            index = next(counter)
        (folder / f"{direction}-{index:07d}.bin").write_bytes(body)

    return record


def wait_until_healthy(host: str, port: int, timeout_seconds: float) -> None:
    """Wait until a party answers /health, or raise naming the address."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        try:
            conn = http.client.HTTPConnection(host, port, timeout=2)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                conn.close()
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise OrchardError(f"the party at {host}:{port} did not come up within {timeout_seconds:.0f} s")
        time.sleep(0.1)
