"""TLS for the tensorseal server and its clients: TLS 1.3 only, mutual authentication.

* :func:`server_context`: the server's certificate and key, client certificates required
  (``CERT_REQUIRED``) and checked against one CA, TLS 1.3 minimum.
* :func:`client_context`: the client's certificate and key, the server checked against
  one CA (no system roots), host name checked, TLS 1.3 minimum.
* :func:`make_dev_certs`: a throwaway CA, a server certificate for ``127.0.0.1`` /
  ``localhost`` and a client certificate, for trying the server on one machine
  (``tensorseal dev-certs DIR``). Not for production: the CA key sits beside the certs.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from ._atomic import atomic_output
from .errors import UsageError

__all__ = ["DevCerts", "client_context", "make_dev_certs", "peer_identity", "server_context"]


def _load_chain(ctx: ssl.SSLContext, cert: str | os.PathLike[str], key: str | os.PathLike[str], what: str) -> None:
    try:
        ctx.load_cert_chain(os.fspath(cert), os.fspath(key))
    except ssl.SSLError as exc:
        raise UsageError(
            f"the {what} certificate {os.fspath(cert)} and key {os.fspath(key)} cannot be loaded: {exc.reason or exc}",
            hint="pass a PEM certificate and its unencrypted PEM private key",
        ) from None


def _load_ca(ctx: ssl.SSLContext, ca: str | os.PathLike[str], what: str) -> None:
    try:
        ctx.load_verify_locations(cafile=os.fspath(ca))
    except ssl.SSLError as exc:
        raise UsageError(f"the {what} CA file {os.fspath(ca)} cannot be loaded: {exc.reason or exc}",
                         hint="pass a PEM file of CA certificates") from None  # fmt: skip


def server_context(
    cert: str | os.PathLike[str], key: str | os.PathLike[str], client_ca: str | os.PathLike[str]
) -> ssl.SSLContext:
    """A server context: TLS 1.3 only, a client certificate signed by ``client_ca`` required.

    Raises UsageError (a file that is not PEM, a key that does not match), OSError.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.options |= ssl.OP_NO_COMPRESSION
    _load_chain(ctx, cert, key, "server")
    _load_ca(ctx, client_ca, "client")
    return ctx


def client_context(
    cert: str | os.PathLike[str] | None, key: str | os.PathLike[str] | None, ca: str | os.PathLike[str]
) -> ssl.SSLContext:
    """A client context: TLS 1.3 only, the server's certificate checked against ``ca`` only
    (system roots are not trusted), with the client certificate ``cert`` / ``key`` (both
    or neither; the tensorseal server requires one).

    Raises UsageError, OSError.
    """
    if (cert is None) != (key is None):
        raise UsageError("--cert and --key go together")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED and check_hostname
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    _load_ca(ctx, ca, "server")
    if cert is not None and key is not None:
        _load_chain(ctx, cert, key, "client")
    return ctx


def peer_identity(der: bytes | None) -> tuple[str | None, str | None]:
    """(subject as an RFC 4514 string, SHA-256 of the certificate in hex) of a peer
    certificate in DER, or (None, None). Raises nothing."""
    if not der:
        return None, None
    import hashlib

    from cryptography import x509

    digest = hashlib.sha256(der).hexdigest()
    try:
        return x509.load_der_x509_certificate(der).subject.rfc4514_string(), digest
    except ValueError:
        return None, digest


@dataclass(frozen=True)
class DevCerts:
    """Paths written by :func:`make_dev_certs`."""

    ca: str
    ca_key: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str


def make_dev_certs(
    directory: str | os.PathLike[str], *, days: int = 90, client_name: str = "tensorseal-dev-client",
    hosts: tuple[str, ...] = ("127.0.0.1", "localhost", "::1"), force: bool = False,
) -> DevCerts:  # fmt: skip
    """Write a test CA, a server certificate for ``hosts`` and a client certificate
    (common name ``client_name``), each valid ``days`` days, into ``directory`` (created
    if needed): ``ca.pem``, ``ca-key.pem``, ``server.pem``, ``server-key.pem``,
    ``client.pem``, ``client-key.pem``. Keys are written with mode 0600.

    Raises UsageError (a file exists and ``force`` is false, ``days`` < 1), OSError.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    if days < 1:
        raise UsageError("certificates must be valid for at least one day")
    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    names = DevCerts(*(os.path.join(directory, n) for n in (
        "ca.pem", "ca-key.pem", "server.pem", "server-key.pem", "client.pem", "client-key.pem")))  # fmt: skip
    existing = [p for p in vars(names).values() if os.path.exists(p)]
    if existing and not force:
        raise UsageError(f"{existing[0]} already exists", hint="pass --force to replace the certificates")
    now = datetime.now(timezone.utc) - timedelta(minutes=5)
    until = now + timedelta(days=days)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "tensorseal dev"),
                          x509.NameAttribute(NameOID.COMMON_NAME, cn)])  # fmt: skip

    def builder(subject: x509.Name, issuer: x509.Name, public: ec.EllipticCurvePublicKey) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public)
            .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(until)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        )  # fmt: skip

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = name("tensorseal dev CA")
    ca_cert = (
        builder(ca_name, ca_name, ca_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip

    def leaf(cn: str, usage: x509.ObjectIdentifier, sans: list[x509.GeneralName]) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        b = (
            builder(name(cn), ca_name, key.public_key())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        )
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return b.sign(ca_key, hashes.SHA256()), key

    sans: list[x509.GeneralName] = []
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    server_cert, server_key = leaf(hosts[0] if hosts else "localhost", ExtendedKeyUsageOID.SERVER_AUTH, sans)
    client_cert, client_key = leaf(client_name, ExtendedKeyUsageOID.CLIENT_AUTH, [])

    def pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())  # fmt: skip

    def pem_cert(cert: x509.Certificate) -> bytes:
        return cert.public_bytes(serialization.Encoding.PEM)

    for path, data in (
        (names.ca, pem_cert(ca_cert)), (names.ca_key, pem_key(ca_key)),
        (names.server_cert, pem_cert(server_cert)), (names.server_key, pem_key(server_key)),
        (names.client_cert, pem_cert(client_cert)), (names.client_key, pem_key(client_key)),
    ):  # fmt: skip
        with atomic_output(path, durable=True) as fd:  # mkstemp: mode 0600
            os.write(fd, data)
        if not path.endswith("-key.pem"):
            os.chmod(path, 0o644)
    return names
