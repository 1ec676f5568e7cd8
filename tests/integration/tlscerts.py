"""Certificates for the Redis TLS tests, made by ``openssl`` in the test's folder."""

from __future__ import annotations

import subprocess
from pathlib import Path


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=30)


class Pki:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate signed by
    it, and a second CA that signed nothing of ours."""

    def __init__(self, root: Path):
        root.mkdir(parents=True)
        self.root = root
        self.ca = self._ca("ca")
        self.other_ca = self._ca("other-ca")
        self.server = self._signed("server", "subjectAltName=DNS:localhost,IP:127.0.0.1")
        self.client = self._signed("client", "extendedKeyUsage=clientAuth")

    def _ca(self, name: str) -> Path:
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-days", "2", "-subj", f"/CN=asgi-bridge test {name}",
                "-keyout", str(self.root / f"{name}.key"), "-out", str(self.root / f"{name}.crt"))
        return self.root / f"{name}.crt"

    def _signed(self, name: str, extension: str) -> tuple[Path, Path]:
        cert, key, csr = (self.root / f"{name}.{ext}" for ext in ("crt", "key", "csr"))
        ext_file = self.root / f"{name}.ext"
        ext_file.write_text(extension + "\n")
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(csr))
        openssl("x509", "-req", "-in", str(csr), "-CA", str(self.ca), "-CAkey", str(self.root / "ca.key"),
                "-CAcreateserial", "-days", "2", "-extfile", str(ext_file), "-out", str(cert))
        return cert, key

    def client_args(self) -> list[str]:
        return ["--bus-tls-cert", str(self.client[0]), "--bus-tls-key", str(self.client[1])]
