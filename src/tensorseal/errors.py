"""The one exception tree of tensorseal.

Every error raised on bad input is a subclass of :class:`TensorSealError`, so callers
can tell tampering (:class:`AuthenticationError`) from a malformed file
(:class:`FormatError`) from a key that simply does not open the file
(:class:`NoIdentityMatchError`). Messages are one lowercase line; ``hint`` carries an
optional suggestion that the CLI prints on its own line.
"""

from __future__ import annotations


class TensorSealError(Exception):
    """Base class of every tensorseal error."""

    hint: str | None = None

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint


# --- malformed input -----------------------------------------------------------------
class FormatError(TensorSealError):
    """The file is not a well-formed sealed file (or safetensors file)."""


class NotSealedError(FormatError):
    """The file does not start with the tensorseal magic."""

    hint = "is this a plain file? encrypt it first with `tensorseal encrypt`"


class UnsupportedVersionError(FormatError):
    """The file declares a format version this reader does not know."""


class LimitExceededError(FormatError):
    """A length or count is above the format's limits (checked before parsing)."""


class TruncatedError(FormatError):
    """The file ends before the layout in its header says it should."""


class TrailingDataError(FormatError):
    """The file has bytes after the end of its last section."""


class LayoutError(FormatError):
    """Offsets or ranges are inconsistent: overlapping, out of order, holes, bad sizes."""


class HeaderSyntaxError(FormatError):
    """The header or the tensor index is not valid JSON of the expected shape."""


class UnsupportedDtypeError(FormatError):
    """A dtype is unknown, or the chosen framework cannot represent it."""


# --- keys --------------------------------------------------------------------------
class KeyMaterialError(TensorSealError):
    """Base for problems with keys, recipients and identities."""


class InvalidKeyError(KeyMaterialError):
    """A recipient string, identity file or key file cannot be parsed."""


class IncorrectIdentityError(KeyMaterialError):
    """This identity does not open any stanza of the file: try the next identity.

    Raised by :meth:`Identity.unwrap`; never fatal by itself.
    """


class NoIdentityMatchError(KeyMaterialError):
    """None of the given identities opens the file."""

    hint = "pass the identity file (-i), key file (--key-file) or passphrase it was sealed to"


class WorkFactorError(KeyMaterialError):
    """A passphrase stanza asks for more scrypt work than this reader allows."""


class KeyServiceError(KeyMaterialError):
    """A key service (KMS, Vault, OS key store) refused the request or could not be reached."""

    hint = "check the key service's address and credentials in the environment, or pass another identity"


# --- tampering ---------------------------------------------------------------------
class AuthenticationError(TensorSealError):
    """A MAC or AEAD tag did not verify: the file was modified or corrupted."""


class HeaderAuthenticationError(AuthenticationError):
    """The header MAC does not match: the header or index was modified."""


class KeyCommitmentError(AuthenticationError):
    """A stanza yielded a file key that the header's key commitment rejects."""


class SegmentAuthenticationError(AuthenticationError):
    """A data segment's AEAD tag did not verify."""


class SignatureError(AuthenticationError):
    """The file carries no valid signature from a trusted signer."""

    hint = "check --signer / --trusted-signers, or sign the file with `tensorseal sign`"


class ManifestError(AuthenticationError):
    """A model directory does not match its signed manifest (file missing, added, renamed, changed)."""


class ModelMismatchError(TensorSealError):
    """The file is authentic but not the model asked for (name, version, shard, minimum version)."""


# --- caller mistakes -----------------------------------------------------------------
class UsageError(TensorSealError):
    """The call itself is wrong: missing recipients, incompatible options, unknown tensor."""


__all__ = [
    "AuthenticationError",
    "FormatError",
    "HeaderAuthenticationError",
    "HeaderSyntaxError",
    "IncorrectIdentityError",
    "InvalidKeyError",
    "KeyCommitmentError",
    "KeyMaterialError",
    "KeyServiceError",
    "LayoutError",
    "LimitExceededError",
    "ManifestError",
    "ModelMismatchError",
    "NoIdentityMatchError",
    "NotSealedError",
    "SegmentAuthenticationError",
    "SignatureError",
    "TensorSealError",
    "TrailingDataError",
    "TruncatedError",
    "UnsupportedDtypeError",
    "UnsupportedVersionError",
    "UsageError",
    "WorkFactorError",
]
