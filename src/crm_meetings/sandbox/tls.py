"""A throw-away certificate authority so the sandbox serves real HTTPS on 127.0.0.1.

One :class:`LocalCA` per process (:func:`local_ca`): a trustme CA and a server certificate
for ``127.0.0.1`` and ``localhost``, written to a private temporary directory that is
removed when the process exits. Clients trust the sandbox by the CA file, explicitly::

    curl --cacert "$CA" https://127.0.0.1:PORT/...
    httpx.Client(verify=ssl.create_default_context(cafile=ca.ca_path))  # httpx ≥ 0.28
    session.verify = str(ca.ca_path)  # requests, with session.trust_env = False

Pass the CA explicitly: this machine sets ``SSL_CERT_FILE`` and ``REQUESTS_CA_BUNDLE``.
A ``requests`` session with ``trust_env`` on lets ``REQUESTS_CA_BUNDLE`` override the
session's ``verify`` (``merge_environment_settings``), so set ``trust_env = False`` or pass
``verify=`` on each request. httpx deprecated ``verify=<path>``: give it an SSLContext
(:meth:`LocalCA.client_context`).
"""

from __future__ import annotations

import atexit
import shutil
import ssl
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import trustme

__all__ = ["LocalCA", "local_ca"]

SERVER_NAMES = ("127.0.0.1", "localhost")


@dataclass(frozen=True, slots=True)
class LocalCA:
    """Where the test CA and the server's key and certificate chain live."""

    directory: Path
    ca_path: Path  # the CA certificate (PEM): what clients trust
    server_pem: Path  # the server's private key and certificate chain (PEM)

    @classmethod
    def create(cls, directory: Path) -> LocalCA:
        """A new CA and a server certificate for :data:`SERVER_NAMES`, written to ``directory``."""
        directory.mkdir(parents=True, exist_ok=True)
        authority = trustme.CA(organization_name="crm-meetings sandbox")
        server = authority.issue_cert(*SERVER_NAMES)
        ca = cls(directory, directory / "sandbox-ca.pem", directory / "sandbox-server.pem")
        authority.cert_pem.write_to_path(str(ca.ca_path))
        server.private_key_and_cert_chain_pem.write_to_path(str(ca.server_pem))
        ca.server_pem.chmod(0o600)
        return ca

    def client_context(self) -> ssl.SSLContext:
        """A client SSLContext that trusts this CA only (for httpx ``verify=``)."""
        return ssl.create_default_context(cafile=str(self.ca_path))


_lock = threading.Lock()
_shared: LocalCA | None = None


def local_ca() -> LocalCA:
    """This process's CA, created on first use and removed at exit."""
    global _shared
    with _lock:
        if _shared is None:
            directory = Path(tempfile.mkdtemp(prefix="crm-meetings-sandbox-tls-"))
            atexit.register(shutil.rmtree, directory, ignore_errors=True)
            _shared = LocalCA.create(directory)
        return _shared
