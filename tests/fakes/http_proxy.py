"""A small real HTTP proxy for tests: CONNECT tunnels and absolute-form forwarding, with Basic auth.

Names ending in ``.proxytest`` resolve to 127.0.0.1 here, in the proxy, so that a gateway test can
give an upstream a name only the proxy can reach (the gateway must not resolve it itself), and a
direct connection to it fails at once. Also: ``make_ca`` / ``server_context`` for an https fake
upstream with a throwaway CA.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import ipaddress
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

PROXY_ONLY_SUFFIX = ".proxytest"


def _resolve(host: str) -> str:
    return "127.0.0.1" if host.endswith(PROXY_ONLY_SUFFIX) else host


@dataclass
class FakeProxy:
    credentials: tuple[str, str] | None = None
    tunnels: list[str] = field(default_factory=list)  # host:port of each CONNECT let through
    forwarded: list[str] = field(default_factory=list)  # the absolute URI of each forwarded request
    refused: int = 0  # answered 407
    authorizations: list[str | None] = field(default_factory=list)  # Proxy-Authorization seen
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    def url(self, user: str | None = None, password: str | None = None) -> str:
        auth = f"{user}:{password}@" if user is not None else ""
        return f"http://{auth}127.0.0.1:{self.port}"

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._server.close()
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2):
                await self._server.wait_closed()

    def _authorized(self, head: list[bytes]) -> bool:
        value = None
        for line in head[1:]:
            name, _, v = line.partition(b":")
            if name.strip().lower() == b"proxy-authorization":
                value = v.strip().decode("latin-1")
        self.authorizations.append(value)
        if self.credentials is None:
            return True
        want = "Basic " + base64.b64encode(":".join(self.credentials).encode()).decode()
        return value == want

    async def _handle(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            raw = await r.readuntil(b"\r\n\r\n")
            head = raw[:-4].split(b"\r\n")
            method, target, _ = head[0].split(b" ", 2)
            if not self._authorized(head):
                self.refused += 1
                w.write(
                    b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                    b'proxy-authenticate: Basic realm="test"\r\n'
                    b"content-length: 0\r\nconnection: close\r\n\r\n"
                )
                await w.drain()
                return
            if method == b"CONNECT":
                host, _, port = target.decode().rpartition(":")
                ur, uw = await asyncio.open_connection(_resolve(host.strip("[]")), int(port))
                self.tunnels.append(target.decode())
                w.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                await _pipe_both(r, w, ur, uw)
                return
            await self._forward(r, w, method, target, head)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            w.close()
            self._tasks.discard(task)

    async def _forward(
        self,
        r: asyncio.StreamReader,
        w: asyncio.StreamWriter,
        method: bytes,
        target: bytes,
        head: list[bytes],
    ) -> None:
        """One request per client connection, sent on with ``connection: close``: enough for a test."""
        u = urlsplit(target.decode())
        assert u.scheme == "http" and u.hostname, f"not absolute-form: {target!r}"
        self.forwarded.append(target.decode())
        length = 0
        lines = [
            method
            + b" "
            + (u.path or "/").encode()
            + (b"?" + u.query.encode() if u.query else b"")
            + b" HTTP/1.1"
        ]
        for line in head[1:]:
            name = line.partition(b":")[0].strip().lower()
            if name == b"content-length":
                length = int(line.partition(b":")[2])
            if name not in (b"proxy-authorization", b"connection"):
                lines.append(line)
        lines.append(b"connection: close")
        body = await r.readexactly(length)
        ur, uw = await asyncio.open_connection(_resolve(u.hostname), u.port or 80)
        uw.write(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        await _pipe(ur, w)
        uw.close()


async def _pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await r.read(65536):
            w.write(data)
            await w.drain()


async def _pipe_both(
    r: asyncio.StreamReader, w: asyncio.StreamWriter, ur: asyncio.StreamReader, uw: asyncio.StreamWriter
) -> None:
    try:
        await asyncio.gather(_pipe(r, uw), _pipe(ur, w))
    finally:
        uw.close()


# ------------------------------------------------------------------------------- TLS for tests


@dataclass(frozen=True)
class ThrowawayCA:
    ca_file: Path  # PEM of the CA: what a client must trust (e.g. SSL_CERT_FILE)
    cert_file: Path  # the server's chain
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))


def make_ca(directory: Path, names: list[str]) -> ThrowawayCA:
    """A throwaway CA and a server certificate for ``names`` (DNS names or IP addresses)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "StellarGate test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for n in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            sans.append(x509.DNSName(n))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    out = ThrowawayCA(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    out.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    out.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    out.key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return out
