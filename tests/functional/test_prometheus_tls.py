"""PrometheusSource over HTTPS: every connection verified through one SSL context per process.

A local HTTPS server whose certificate is signed by a test CA (minted here with ``cryptography``):
with requests' default verification the source refuses it (certifi does not know the CA), so
the shared context still verifies; with ``REQUESTS_CA_BUNDLE`` naming the test CA it reads the
metric, so a CA bundle set the requests way is honoured as before. With the function package's
hashed CA directory (``edgescaler package`` writes it), httpx's and Prometheus' connections
read only the root they need, and refuse a server whose CA is not in it.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import certifi
import httpx
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edgescaler import package
from edgescaler.cloud import tls
from edgescaler.errors import MetricError
from edgescaler.metrics import prometheus
from edgescaler.metrics.prometheus import PrometheusSource


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _mint(folder: Path) -> tuple[Path, Path, Path]:
    """A test CA and a server certificate for 127.0.0.1: (ca.pem, server.pem, server.key)."""
    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("edgescaler test CA"))
        .issuer_name(_name("edgescaler test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


class _Answer(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # http.server's naming
        body = json.dumps(
            {
                "status": "success",
                "data": {
                    "resultType": "vector",
                    "result": [{"metric": {}, "value": [time.time(), "7.5"]}],
                },
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def https_prometheus(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """``(https://127.0.0.1:PORT, ca.pem)`` of a server answering every query with 7.5."""
    ca, cert, key = _mint(tmp_path)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
    server.daemon_threads = True
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", ca
    finally:
        server.shutdown()
        server.server_close()


def _read(url: str) -> float:
    with PrometheusSource(url, timeout=5) as source:
        now = datetime.now(timezone.utc)
        return source.read("load", "sum(load)", max_age=timedelta(minutes=1), now=now).value


@pytest.fixture
def new_contexts(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Counts the SSL contexts urllib3 builds for new connections (one per connection unless
    the connection is given one)."""
    import urllib3.connection

    built: list[object] = []
    real = urllib3.connection.create_urllib3_context

    def spy(*args: object, **kwargs: object) -> object:
        built.append(kwargs)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(urllib3.connection, "create_urllib3_context", spy)
    return built


def test_https_is_verified_with_the_default_cas_through_one_shared_context(
    https_prometheus: tuple[str, Path], monkeypatch: pytest.MonkeyPatch, new_contexts: list[object]
) -> None:
    url, _ = https_prometheus
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    for _ in range(3):  # three sources: three new connections
        with pytest.raises(MetricError) as info:
            _read(url)
        assert info.value.reason == "connection_error"
        assert "CERTIFICATE_VERIFY_FAILED" in info.value.detail
    assert new_contexts == []  # no context (and no CA bundle load) per connection


def test_a_ca_bundle_set_the_requests_way_is_honoured(
    https_prometheus: tuple[str, Path], monkeypatch: pytest.MonkeyPatch, new_contexts: list[object]
) -> None:
    url, ca = https_prometheus
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca))
    assert _read(url) == 7.5
    assert len(new_contexts) == 1  # requests' own handling: urllib3 builds the connection's


def test_every_default_https_connection_uses_the_one_shared_context() -> None:
    adapters = [prometheus._bounded_adapter(1000, threading.local(), None) for _ in range(2)]
    request = requests.Request("GET", "https://prom.example/api/v1/query").prepare()
    contexts = []
    for adapter in adapters:
        host, pool = adapter.build_connection_pool_key_attributes(request, True)
        assert (host["scheme"], pool["cert_reqs"]) == ("https", "CERT_REQUIRED")
        contexts.append(pool["ssl_context"])
    assert contexts[0] is contexts[1]
    assert contexts[0].verify_mode == ssl.CERT_REQUIRED and contexts[0].check_hostname
    assert contexts[0].cert_store_stats()["x509_ca"] > 50  # certifi's CAs are in it

    # A bundle path (REQUESTS_CA_BUNDLE) and plain HTTP keep requests' own handling.
    _, pool = adapters[0].build_connection_pool_key_attributes(request, "/etc/ca.pem")
    assert "ssl_context" not in pool and pool["ca_certs"] == "/etc/ca.pem"
    plain = requests.Request("GET", "http://prom.example/api/v1/query").prepare()
    _, pool = adapters[0].build_connection_pool_key_attributes(plain, True)
    assert "ssl_context" not in pool


@pytest.fixture
def some_roots(tmp_path: Path) -> Path:
    """Five of certifi's roots: real CAs that did not sign the test server's certificate."""
    end = "-----END CERTIFICATE-----"
    certs = Path(certifi.where()).read_text().split(end)[:5]
    path = tmp_path / "roots.pem"
    path.write_text("".join(c[c.index("-----BEGIN") :] + end + "\n" for c in certs))
    return path


@pytest.fixture
def ca_dir_of(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Path]:
    """Makes the process use a hashed CA directory written from the given PEM files, as the
    function package does (fresh shared contexts, no CA variables)."""

    def make(*pems: Path) -> Path:
        bundle = tmp_path / "bundle.pem"
        bundle.write_bytes(b"".join(p.read_bytes() for p in pems))
        folder = tmp_path / "cacerts"
        package.write_ca_dir(bundle, folder)
        monkeypatch.setattr(tls, "CA_DIR", folder)
        monkeypatch.setattr(tls, "_context", None)
        monkeypatch.setattr(prometheus, "_context", None)
        for name in ("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
            monkeypatch.delenv(name, raising=False)
        return folder

    return make


def test_the_hashed_ca_directory_verifies_and_loads_only_the_root_needed(
    https_prometheus: tuple[str, Path], ca_dir_of: Callable[..., Path], some_roots: Path
) -> None:
    url, ca = https_prometheus
    ca_dir_of(some_roots, ca)  # the test CA among real ones
    ctx = tls.context()
    assert ctx.cert_store_stats()["x509_ca"] == 0  # nothing parsed up front
    with httpx.Client(verify=ctx) as client:
        assert client.get(f"{url}/api/v1/query", params={"query": "x"}).status_code == 200
    assert ctx.cert_store_stats()["x509_ca"] == 1  # the one root the handshake looked up
    assert _read(url) == 7.5  # Prometheus' shared context reads the same directory
    assert prometheus._verified_context().cert_store_stats()["x509_ca"] == 1


def test_a_ca_missing_from_the_hashed_directory_is_refused(
    https_prometheus: tuple[str, Path], ca_dir_of: Callable[..., Path], some_roots: Path
) -> None:
    url, _ = https_prometheus
    ca_dir_of(some_roots)
    with (
        httpx.Client(verify=tls.context()) as client,
        pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        client.get(url)
    with pytest.raises(MetricError) as info:
        _read(url)
    assert "CERTIFICATE_VERIFY_FAILED" in info.value.detail


def test_ssl_cert_file_still_wins_over_the_hashed_directory(
    https_prometheus: tuple[str, Path],
    ca_dir_of: Callable[..., Path],
    some_roots: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, ca = https_prometheus
    ca_dir_of(some_roots)  # without the test CA...
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))  # ...which SSL_CERT_FILE names: httpx's rule
    with httpx.Client(verify=tls.context()) as client:
        assert client.get(f"{url}/api/v1/query", params={"query": "x"}).status_code == 200
