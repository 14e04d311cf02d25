"""An in-process fake of Cloud KMS's KeyManagementService (Encrypt, Decrypt) over real gRPC
on loopback, so that the real ``google-cloud-kms`` client is tested down to its wire
format. No emulator of Cloud KMS exists; this fake follows the documented behaviour:

* Encrypt takes a CryptoKey (or version) name, uses the primary version, returns the
  version's name and an opaque ciphertext that names the version; Decrypt takes the
  CryptoKey name and the AAD given at Encrypt.
* A wrong AAD or a changed ciphertext: INVALID_ARGUMENT ("Decryption failed: the ciphertext
  is invalid."); an unknown key: NOT_FOUND; a disabled version: FAILED_PRECONDITION.
"""

from __future__ import annotations

import os
import re
import struct
from concurrent import futures
from dataclasses import dataclass, field

import grpc
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from google.cloud import kms

SERVICE = "google.cloud.kms.v1.KeyManagementService"
_KEY = re.compile(r"projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+")
_MAGIC = b"fk1"


@dataclass
class FakeKey:
    versions: dict[int, bytes] = field(default_factory=lambda: {1: AESGCM.generate_key(256)})
    primary: int = 1
    disabled: set[int] = field(default_factory=set)

    def rotate(self) -> int:
        self.primary = max(self.versions) + 1
        self.versions[self.primary] = AESGCM.generate_key(256)
        return self.primary


class FakeKms:
    def __init__(self) -> None:
        self.keys: dict[str, FakeKey] = {}
        self.requests: list[tuple[str, object]] = []
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        handlers = {
            "Encrypt": grpc.unary_unary_rpc_method_handler(
                self._encrypt, kms.EncryptRequest.deserialize, kms.EncryptResponse.serialize
            ),
            "Decrypt": grpc.unary_unary_rpc_method_handler(
                self._decrypt, kms.DecryptRequest.deserialize, kms.DecryptResponse.serialize
            ),
        }
        self._server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
        self.port = self._server.add_insecure_port("127.0.0.1:0")

    def __enter__(self) -> FakeKms:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop(grace=None)

    def client(self) -> kms.KeyManagementServiceClient:
        """The real client, on a plain gRPC channel to this server."""
        from google.cloud.kms_v1.services.key_management_service.transports.grpc import (
            KeyManagementServiceGrpcTransport,
        )

        channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        return kms.KeyManagementServiceClient(transport=KeyManagementServiceGrpcTransport(channel=channel))

    def create_key(self, name: str) -> FakeKey:
        assert _KEY.fullmatch(name), name
        self.keys[name] = FakeKey()
        return self.keys[name]

    # ---- RPCs -----------------------------------------------------------------------------
    def _key(self, name: str, context: grpc.ServicerContext) -> FakeKey:
        key = self.keys.get(name)
        if key is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"CryptoKey {name} not found.")
        return key

    def _enabled(self, key: FakeKey, name: str, version: int, context: grpc.ServicerContext) -> None:
        if version in key.disabled:
            context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"The request cannot be fulfilled. CryptoKeyVersion {name}/cryptoKeyVersions/{version} is not "
                "enabled, current state is: DISABLED.",
            )

    def _encrypt(self, request: kms.EncryptRequest, context: grpc.ServicerContext) -> kms.EncryptResponse:
        self.requests.append(("Encrypt", request))
        name = request.name.split("/cryptoKeyVersions/")[0]
        key = self._key(name, context)
        if not request.plaintext or len(request.plaintext) > 65536:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "plaintext must be 1 to 65536 bytes")
        self._enabled(key, name, key.primary, context)
        nonce = os.urandom(12)
        sealed = AESGCM(key.versions[key.primary]).encrypt(
            nonce, request.plaintext, request.additional_authenticated_data
        )
        return kms.EncryptResponse(
            name=f"{name}/cryptoKeyVersions/{key.primary}",
            ciphertext=_MAGIC + struct.pack(">I", key.primary) + nonce + sealed,
        )

    def _decrypt(self, request: kms.DecryptRequest, context: grpc.ServicerContext) -> kms.DecryptResponse:
        self.requests.append(("Decrypt", request))
        if not _KEY.fullmatch(request.name):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "Decrypt takes a CryptoKey name, not a version.")
        key = self._key(request.name, context)
        blob = request.ciphertext
        invalid = "Decryption failed: the ciphertext is invalid."
        if len(blob) < 3 + 4 + 12 + 16 or blob[:3] != _MAGIC:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, invalid)
        (version,) = struct.unpack(">I", blob[3:7])
        if version not in key.versions:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, invalid)
        self._enabled(key, request.name, version, context)
        try:
            plaintext = AESGCM(key.versions[version]).decrypt(
                blob[7:19], blob[19:], request.additional_authenticated_data
            )
        except InvalidTag:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, invalid)
        return kms.DecryptResponse(plaintext=plaintext, used_primary=version == key.primary)
