"""TLS for local clusters: the files a cluster serves with, and throwaway test certificates.

:class:`TlsFiles` names the files a local etcd or ZooKeeper serves its
clients with and the client certificate that the cluster's own requests, and
the registry URLs it hands out, present; :class:`EtcdTls` adds etcd's flags
and the etcd backends' URL options. :func:`make_test_certificates` makes such files,
for tests only: a fresh CA and a server and a client certificate for
127.0.0.1, made with the ``openssl`` command line.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

from discovery.servers._errors import MissingServerBinary, ServerError

__all__ = ["EtcdTls", "TlsFiles", "make_test_certificates"]


@dataclass(frozen=True)
class TlsFiles:
    """The TLS files a local cluster serves its clients with, and the client certificate it expects.

    Attributes:
        ca_file: the CA bundle that signed the server and client certificates
            (the server verifies clients with it; clients verify the server).
        cert_file: the server certificate; it must name ``IP:127.0.0.1`` and,
            for etcd's v3 JSON gateway to reach its own gRPC server, allow
            client authentication too.
        key_file: the server certificate's private key (PKCS#8 PEM, as Java reads it).
        client_cert_file: the certificate clients present; the server's when None.
        client_key_file: its private key; the server's when None.
        client_cert_auth: refuse clients without a certificate signed by the CA.
    """

    ca_file: Path
    cert_file: Path
    key_file: Path
    client_cert_file: Path | None = None
    client_key_file: Path | None = None
    client_cert_auth: bool = True

    @property
    def client_pair(self) -> tuple[Path, Path]:
        """The ``(certificate, key)`` files clients present."""
        if self.client_cert_file is None:
            return self.cert_file, self.key_file
        return self.client_cert_file, self.client_key_file or self.key_file

    def client_context(self) -> ssl.SSLContext:
        """An SSL context that trusts only the CA and presents the client certificate."""
        context = ssl.create_default_context(cafile=str(self.ca_file))
        cert, key = self.client_pair
        context.load_cert_chain(str(cert), str(key))
        return context


@dataclass(frozen=True)
class EtcdTls(TlsFiles):
    """TLS files, with what etcd and the etcd backends make of them.

    An :class:`~discovery.servers.EtcdCluster` serves its client URLs with
    them (``--cert-file``, ``--key-file``, ``--trusted-ca-file`` and, with
    ``client_cert_auth``, ``--client-cert-auth``); peer traffic stays plain
    http. A :class:`~discovery.servers.ZooKeeperCluster` takes them too.
    """

    def server_flags(self) -> list[str]:
        """etcd's command-line flags for serving client URLs with these files."""
        flags = [f"--cert-file={self.cert_file}", f"--key-file={self.key_file}", f"--trusted-ca-file={self.ca_file}"]
        if self.client_cert_auth:
            flags.append("--client-cert-auth=true")
        return flags

    def url_options(self) -> dict[str, str]:
        """The etcd backends' URL options (``protocol``, ``ca``, ``cert``, ``key``) for a client of these files."""
        cert, key = self.client_pair
        return {"protocol": "https", "ca": str(self.ca_file), "cert": str(cert), "key": str(key)}


_CONFIG = """\
[req]
distinguished_name = dn
prompt = no

[dn]
CN = discovery test

[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


def make_test_certificates(directory: Path, days: int = 2) -> EtcdTls:
    """For tests: a throwaway CA, and a server and a client certificate it signed, in ``directory``.

    The server certificate is valid for ``IP:127.0.0.1`` (and ``localhost``)
    and for client authentication as well, as etcd's JSON gateway needs; the
    client one only for client authentication. Keys are P-256 and
    unencrypted. Files: ``ca.pem``, ``server.pem``, ``server.key``,
    ``client.pem``, ``client.key`` (plus the CA's key and working files).

    Args:
        directory: where the files go; created if missing.
        days: how long the certificates are valid.

    Returns:
        The files, with client certificate authentication on.

    Raises:
        MissingServerBinary: the ``openssl`` program is not installed.
        ServerError: openssl failed; its message is included.
    """
    openssl = shutil.which("openssl")
    if openssl is None:
        raise MissingServerBinary("openssl", ["openssl"], "PATH")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "openssl.cnf"
    config.write_text(_CONFIG)

    def run(*args: str) -> None:
        done = subprocess.run([openssl, *args], capture_output=True, text=True, check=False, timeout=60)
        if done.returncode != 0:
            raise ServerError(f"openssl {args[0]} failed: {(done.stderr or done.stdout).strip()[-1000:]}")

    def key(name: str) -> Path:
        path = directory / f"{name}.key"
        run("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(path))
        return path

    ca_key = key("ca")
    ca = directory / "ca.pem"
    cnf = ["-config", str(config)]
    subject = ["-subj", "/CN=discovery test CA"]
    run(
        "req",
        "-x509",
        "-new",
        "-key",
        str(ca_key),
        *cnf,
        "-extensions",
        "ca",
        *subject,
        "-days",
        str(days),
        "-out",
        str(ca),
    )

    def signed(name: str) -> tuple[Path, Path]:
        private = key(name)
        request = directory / f"{name}.csr"
        cert = directory / f"{name}.pem"
        run("req", "-new", "-key", str(private), *cnf, "-subj", f"/CN=discovery test {name}", "-out", str(request))
        signing = ["-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial", "-CAserial", str(directory / "ca.srl")]
        extensions = ["-extfile", str(config), "-extensions", name]
        run("x509", "-req", "-in", str(request), *signing, *extensions, "-days", str(days), "-out", str(cert))
        return cert, private

    server_cert, server_key = signed("server")
    client_cert, client_key = signed("client")
    return EtcdTls(ca, server_cert, server_key, client_cert, client_key)
