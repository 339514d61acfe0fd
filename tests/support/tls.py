"""A throw-away certificate authority made with the ``openssl`` command line, for TLS tests.

``TestCA(directory)`` writes a CA key and certificate (``bundle``, the PEM a client trusts,
e.g. through ``SSL_CERT_FILE``, which :func:`ssl.create_default_context` honours) and
:meth:`TestCA.issue` signs server certificates for chosen names. The certificates carry the
extensions Python 3.13's ``VERIFY_X509_STRICT`` wants (key identifiers, key usage, SAN): only
trust or a wrong name makes a handshake fail, never a malformed certificate.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

__all__ = ["TestCA"]

_EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


class TestCA:
    """A CA in ``directory``; ``bundle`` is its certificate (PEM)."""

    __test__ = False  # not a test class, whatever its name

    def __init__(self, directory: Path, name: str = "mailsync throw-away test CA") -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.key = self.dir / "ca.key"
        self.bundle = self.dir / "ca.pem"
        _openssl(
            "req", "-x509", *_EC, "-keyout", str(self.key), "-out", str(self.bundle), "-days", "2",
            "-subj", f"/CN={name}",
            "-addext", "basicConstraints=critical,CA:TRUE,pathlen:0",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            "-addext", "subjectKeyIdentifier=hash",
        )  # fmt: skip

    def issue(self, stem: str, *, dns: tuple[str, ...] = (), ips: tuple[str, ...] = ()) -> tuple[str, str]:
        """A server certificate for the ``dns`` names and ``ips``: ``(cert_pem, key_pem)`` paths."""
        key, csr, cert = (self.dir / f"{stem}.{ext}" for ext in ("key", "csr", "pem"))
        ext = self.dir / f"{stem}.ext"
        san = ",".join([*(f"DNS:{d}" for d in dns), *(f"IP:{i}" for i in ips)])
        ext.write_text(
            f"subjectAltName={san}\n"
            "basicConstraints=critical,CA:FALSE\n"
            "keyUsage=critical,digitalSignature\n"
            "extendedKeyUsage=serverAuth\n"
            "subjectKeyIdentifier=hash\n"
            "authorityKeyIdentifier=keyid\n"
        )
        _openssl("req", "-new", *_EC, "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={stem}")
        _openssl(
            "x509", "-req", "-in", str(csr), "-CA", str(self.bundle), "-CAkey", str(self.key),
            "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(ext),
        )  # fmt: skip
        key.chmod(0o644)  # Dovecot's config process reads it (as root; the test dir is private)
        return str(cert), str(key)
