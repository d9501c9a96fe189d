"""One TLS verification context per process for the httpx clients (CS, KMS, OSS).

Building one loads certifi's CA bundle, which takes 21-26 ms of CPU with OpenSSL 3, and httpx
builds one for every ``httpx.Client``: a run builds a CS client per region (and a KMS client,
:func:`edgescaler.cloud.acs.client`), so a warm FC instance paid that again on every
invocation. :func:`context` builds it once, as httpx
would (:func:`httpx.create_ssl_context`: certifi's bundle, or ``SSL_CERT_FILE`` /
``SSL_CERT_DIR``), and every client is given the same one. An ``SSLContext`` serves any number
of connections and threads; httpx never changes the one it is given.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import ssl

_lock = threading.Lock()
_context: ssl.SSLContext | None = None


def context() -> ssl.SSLContext:
    """The process's verification context for httpx clients (built on first use)."""
    global _context
    with _lock:
        if _context is None:
            import httpx

            _context = httpx.create_ssl_context()
        return _context
