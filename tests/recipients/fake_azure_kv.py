"""An in-process fake of the Azure Key Vault keys REST API over real HTTPS on loopback
(a ``trustme`` test CA), so that the real ``azure-keyvault-keys`` CryptographyClient is
tested through its whole pipeline: challenge authentication (401 + WWW-Authenticate, then
a bearer token), TLS, JSON with base64url fields. No Key Vault emulator exists; the fake
follows the documented REST behaviour for the operations used:

* ``GET /keys/{name}[/{version}]``: the public JWK (RSA: n, e; ``oct-HSM``: no material);
* ``POST .../wrapkey`` / ``unwrapkey`` (RSA-OAEP-256) and ``.../encrypt`` / ``decrypt``
  (A256GCM with ``aad``, IV made by the service);
* errors: 400 BadParameter for a ciphertext that does not open, 403 for a disabled key,
  404 KeyNotFound.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

TOKEN = "fake-bearer-token"
CHALLENGE = (
    'Bearer authorization="https://login.microsoftonline.com/00000000-0000-0000-0000-000000000000", '
    'resource="https://vault.azure.net"'
)
OAEP = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _int_bytes(n: int) -> bytes:
    return n.to_bytes((n.bit_length() + 7) // 8, "big")


@dataclass
class FakeKey:
    kty: str  # "RSA" or "oct-HSM"
    versions: dict[str, Any] = field(default_factory=dict)
    latest: str = ""
    disabled: set[str] = field(default_factory=set)

    def rotate(self) -> str:
        self.latest = uuid.uuid4().hex
        material = rsa.generate_private_key(65537, 2048) if self.kty == "RSA" else AESGCM.generate_key(256)
        self.versions[self.latest] = material
        return self.latest


class FakeKeyVault:
    """``with FakeKeyVault() as vault``: ``vault.url``, ``vault.ca_file``, ``vault.requests``."""

    def __init__(self, tmp_dir: os.PathLike[str]) -> None:
        import trustme

        ca = trustme.CA()
        self.ca_file = os.path.join(os.fspath(tmp_dir), "fake-kv-ca.pem")
        ca.cert_pem.write_to_path(self.ca_file)
        self.keys: dict[str, FakeKey] = {}
        self.requests: list[dict[str, Any]] = []
        self.forbid_get = False
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ca.issue_cert("127.0.0.1").configure_cert(ctx)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.socket = ctx.wrap_socket(self._server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FakeKeyVault:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)

    def create_key(self, name: str, kty: str = "RSA") -> str:
        """Create a key; returns its versioned id URL."""
        key = self.keys[name] = FakeKey(kty)
        return f"{self.url}/keys/{name}/{key.rotate()}"

    # ---- request handling -----------------------------------------------------------------
    def handle(self, method: str, path: str, auth: str | None, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        self.requests.append({"method": method, "path": path, "auth": auth, "body": body})
        parts = path.split("?")[0].split("/")[1:]  # "/keys/k//wrapkey": an empty version means the latest
        if parts and parts[-1] == "" and len(parts) == 3:
            parts = parts[:2]
        if len(parts) < 2 or parts[0] != "keys" or not parts[1]:
            return 404, _error("NotFound", "no such route")
        name, rest = parts[1], parts[2:]
        key = self.keys.get(name)
        if key is None:
            return 404, _error("KeyNotFound", f"A key with (name/id) {name} was not found in this key vault.")
        version = rest[0] if rest and rest[0] else key.latest
        if version not in key.versions:
            return 404, _error("KeyNotFound", f"A key with (name/id) {name}/{version} was not found in this key vault.")
        kid = f"{self.url}/keys/{name}/{version}"
        if method == "GET" and len(rest) <= 1:
            if self.forbid_get:
                return 403, _error("Forbidden", "The user does not have keys get permission.")
            return 200, {"key": self._jwk(key, version, kid), "attributes": {"enabled": version not in key.disabled}}
        if method != "POST" or len(rest) != 2:
            return 405, _error("BadParameter", "unsupported operation")
        operation = rest[1]
        if version in key.disabled:
            return 403, _error("Forbidden", f"Operation {operation} is not allowed on a disabled key.")
        material, alg, value = key.versions[version], body.get("alg"), unb64url(body.get("value", ""))
        bad = (400, _error("BadParameter", "The parameter is incorrect."))
        if key.kty == "RSA" and alg == "RSA-OAEP-256" and operation in ("wrapkey", "encrypt"):
            return 200, {"kid": kid, "value": b64url(material.public_key().encrypt(value, OAEP))}
        if key.kty == "RSA" and alg == "RSA-OAEP-256" and operation in ("unwrapkey", "decrypt"):
            try:
                return 200, {"kid": kid, "value": b64url(material.decrypt(value, OAEP))}
            except ValueError:
                return bad
        aad = unb64url(body["aad"]) if body.get("aad") else None
        if key.kty == "oct-HSM" and alg == "A256GCM" and operation == "encrypt":
            iv = os.urandom(12)
            sealed = AESGCM(material).encrypt(iv, value, aad)
            return 200, {"kid": kid, "value": b64url(sealed[:-16]), "iv": b64url(iv), "tag": b64url(sealed[-16:])}
        if key.kty == "oct-HSM" and alg == "A256GCM" and operation == "decrypt":
            try:
                iv, tag = unb64url(body["iv"]), unb64url(body["tag"])
                return 200, {"kid": kid, "value": b64url(AESGCM(material).decrypt(iv, value + tag, aad))}
            except (InvalidTag, KeyError, ValueError):
                return bad
        return bad

    @staticmethod
    def _jwk(key: FakeKey, version: str, kid: str) -> dict[str, Any]:
        ops = ["encrypt", "decrypt", "wrapKey", "unwrapKey"]
        if key.kty == "RSA":
            numbers = key.versions[version].public_key().public_numbers()
            return {
                "kid": kid,
                "kty": "RSA",
                "key_ops": ops,
                "n": b64url(_int_bytes(numbers.n)),
                "e": b64url(_int_bytes(numbers.e)),
            }
        return {"kid": kid, "kty": "oct-HSM", "key_ops": ops}


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def _handler(vault: FakeKeyVault) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # keep test output quiet
            pass

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            auth = self.headers.get("Authorization")
            if auth != f"Bearer {TOKEN}":
                vault.requests.append({"method": self.command, "path": self.path, "auth": auth, "body": None})
                status, payload, extra = (
                    401,
                    _error("Unauthorized", "AKV10000: Request is missing a Bearer."),
                    {"WWW-Authenticate": CHALLENGE},
                )
            else:
                status, payload = vault.handle(self.command, self.path, auth, json.loads(raw) if raw else {})
                extra = {}
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            for k, v in extra.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _serve

    return Handler
