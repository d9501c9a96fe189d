"""The CA certificates every verified connection trusts, loaded once per process and lazily.

**One context.** Building an ``SSLContext`` from certifi's bundle parses all of its ~120
certificates: 21-40 ms of CPU with OpenSSL 3 on Python 3.10, on every cold start. httpx builds
one for every ``httpx.Client``, and a run builds a CS client per region plus a KMS client, so
:func:`context` builds it once and every httpx client is given the same one (an ``SSLContext``
serves any number of connections and threads; httpx never changes the one it is given).

**Lazy loading.** The function package carries the same certificates as a hashed directory
(:data:`CA_DIR`, written by :func:`edgescaler.package.write_ca_dir` from the very certifi
bundle the zip ships): one PEM file per certificate, named after OpenSSL's subject-name hash
(``<8 hex digits>.<n>``), the layout of ``openssl rehash`` and of ``SSL_CERT_DIR``. Given such a
directory (``capath``), OpenSSL reads a certificate only when a handshake looks up an issuer by
name: the context costs ~0.5 ms instead of ~40, and a connection reads the one or two roots it
needs. Without the directory (the source tree), certifi's bundle is loaded as httpx loads it.

``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` keep their meaning: with either set, :func:`context` is
exactly httpx's default (:func:`httpx.create_ssl_context`).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import ssl

# Where the packaged, hashed CA directory lives: next to this module inside the function zip.
CA_DIR = Path(__file__).with_name("cacerts")

_lock = threading.Lock()
_context: ssl.SSLContext | None = None


def ca_dir() -> Path | None:
    """The packaged hashed CA directory, when this installation has one."""
    return CA_DIR if CA_DIR.is_dir() else None


def context() -> ssl.SSLContext:
    """The process's verification context for httpx clients (built on first use)."""
    global _context
    with _lock:
        if _context is None:
            folder = ca_dir()
            if folder is None or os.environ.get("SSL_CERT_FILE") or os.environ.get("SSL_CERT_DIR"):
                import httpx

                _context = httpx.create_ssl_context()
            else:
                import ssl

                _context = ssl.create_default_context(capath=str(folder))
        return _context


def load_default_cas(ctx: ssl.SSLContext) -> None:
    """Load the default trusted CAs into ``ctx`` (a context built elsewhere, e.g. urllib3's):
    the packaged hashed directory when there is one, else certifi's bundle."""
    folder = ca_dir()
    if folder is not None:
        ctx.load_verify_locations(capath=str(folder))
    else:
        import certifi

        ctx.load_verify_locations(cafile=certifi.where())
