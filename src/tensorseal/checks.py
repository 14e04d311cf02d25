"""What a reader insists on before it hands anything back: a trusted publisher's signature
and the expected model identity (name, version, minimum version, shard file id).

The identity is read from the header only once the header is authentic (its MAC verified
under the file key, or a trusted signature covers it), so a served model cannot be
swapped for another model or rolled back to an older version unnoticed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import ModelMismatchError, NotSealedError, UsageError
from .format.header import ModelIdentity
from .reader import SealedFile
from .signing import VerifyingKey, load_trusted_signers, to_verifying_keys

TRUSTED_SIGNERS_ENV = "TENSORSEAL_TRUSTED_SIGNERS"
CHECK_KEYWORDS = frozenset(
    {"require_signature", "require_encrypted", "expect_name", "expect_version", "min_version", "expect_file"}
)
SignersArg = VerifyingKey | str | Sequence[VerifyingKey | str]


def _version(text: str, what: str):  # -> packaging.version.Version
    from packaging.version import InvalidVersion, Version

    try:
        return Version(text)
    except InvalidVersion:
        raise ModelMismatchError(f"{what} {text!r} is not a PEP 440 version") from None


@dataclass(frozen=True)
class Checks:
    """Validated at construction; apply with :meth:`apply` (keyless part first)."""

    signers: tuple[VerifyingKey, ...] | None = None
    name: str | None = None
    version: str | None = None
    min_version: str | None = None
    file: str | None = None
    require_encrypted: bool = False  # entry points that pass plain files through refuse them

    @classmethod
    def build(
        cls,
        signers: SignersArg | None = None,
        *,
        require_signature: bool = False,
        require_encrypted: bool = False,
        expect_name: str | None = None,
        expect_version: str | None = None,
        min_version: str | None = None,
        expect_file: str | None = None,
    ) -> Checks:
        """``require_signature`` without ``signers`` takes them from the file named by
        ``TENSORSEAL_TRUSTED_SIGNERS``. ``require_encrypted`` makes the entry points that
        also accept plain safetensors files (the compat patch, transformers) refuse them.
        Raises UsageError, InvalidKeyError."""
        keys = None if signers is None else tuple(to_verifying_keys(signers))
        if require_signature and keys is None:
            path = os.environ.get(TRUSTED_SIGNERS_ENV)
            if not path:
                raise UsageError(
                    "a signature is required but no trusted signers were given",
                    hint=f"pass signers=[...] / --signer, or set {TRUSTED_SIGNERS_ENV}",
                )
            keys = tuple(load_trusted_signers(path))
        if min_version is not None:
            _version(min_version, "minimum version")
        return cls(keys, expect_name, expect_version, min_version, expect_file, bool(require_encrypted))

    def refuse_plain(self, path: object) -> None:
        """Called for a file that is not sealed. Raises NotSealedError if encryption is
        required (an attacker must not be able to swap a sealed file for a plain one)."""
        if self.require_encrypted:
            raise NotSealedError(f"{path} is not a sealed file and encryption is required")

    def apply(self, sealed: SealedFile, *, threads: int | None = None) -> None:
        """Check the signature (no key needed), then, once the header is authentic, the
        identity. Call after unlock() when a key is used. Raises SignatureError,
        ModelMismatchError."""
        if self.signers is not None:
            sealed.check_signatures(self.signers, threads=threads)
        if not self.expects_identity:
            return
        if not (sealed.unlocked or self.signers is not None):
            raise UsageError("the model identity can be trusted only after unlock() or a signature check")
        self.check_identity(sealed.header.identity)

    @property
    def expects_identity(self) -> bool:
        return any(v is not None for v in (self.name, self.version, self.min_version, self.file))

    def require_source(self, identities: object) -> None:
        """For callers that check a file before it is opened for use (pulls): an expected
        identity needs a key or a signature to be trusted. Raises UsageError."""
        if self.expects_identity and identities is None and self.signers is None:
            raise UsageError("the model identity can be checked only with a signature or a key", hint="add --signer or -i")

    def check_identity(self, got: ModelIdentity) -> None:
        """Compare an authentic model identity with what is expected. Raises ModelMismatchError."""
        for what, want, have in (("name", self.name, got.name), ("version", self.version, got.version), ("file", self.file, got.file)):
            if want is not None and want != have:
                raise ModelMismatchError(f"model {what} is {have!r}, expected {want!r}")
        if self.min_version is not None:
            if got.version is None:
                raise ModelMismatchError(f"the file has no model version, expected at least {self.min_version}")
            if _version(got.version, "model version") < _version(self.min_version, "minimum version"):
                raise ModelMismatchError(f"model version {got.version} is older than the minimum {self.min_version}")


NO_CHECKS = Checks()
