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

    def at(self, where: str) -> TensorSealError:
        """The same error, its message prefixed with where it happened (a URL, a shard)."""
        return type(self)(f"{where}: {self}", hint=self.hint)


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


class LicenceError(KeyMaterialError):
    """A device licence cannot be used (see the subclasses), or this device has no readable id."""


class LicenceExpiredError(LicenceError):
    """The licence's expiry time has passed (by this machine's clock)."""

    hint = "ask the vendor for a renewed licence"


class WrongDeviceError(LicenceError):
    """The licence was issued for another device: this device's fingerprint differs."""

    hint = "a licence opens on one device only: send the output of `tensorseal device-id` to the vendor"


class WrongLicenceKeyError(LicenceError):
    """The licence key does not open the licence (a typo, or the key of another licence)."""

    hint = "use the TSEAL-LICENCE-KEY-1... key that was issued with this licence file"


class LicenceRevokedError(LicenceError):
    """The activation server refuses the licence: the vendor revoked it."""

    hint = "ask the vendor: a revoked licence cannot be activated or renewed"


class SeatLimitError(LicenceError):
    """The activation server refuses a new device: every seat of the licence is taken."""

    hint = "activate on a device that already holds a seat, or ask the vendor for more seats"


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


# --- audit ---------------------------------------------------------------------------
class AuditError(TensorSealError):
    """An audit record could not be written and the audit log is required (fail closed:
    ``TENSORSEAL_AUDIT_REQUIRED=1`` or ``audit.configure(required=True)``); no file key is
    handed out without its record."""

    hint = "check that TENSORSEAL_AUDIT_LOG names a writable file (its directory must exist)"


# --- object storage ------------------------------------------------------------------
class StorageError(TensorSealError):
    """Object storage (S3) refused a request or could not be reached, or a transfer failed
    (interrupted, or the object changed meanwhile)."""

    hint = "check the bucket, the AWS credentials and the region/endpoint in the environment"


class BucketAuditError(StorageError):
    """A bucket fails a check of ``tensorseal audit-bucket`` (see tensorseal.s3.audit_bucket)."""

    hint = "run `tensorseal audit-bucket s3://BUCKET --fix --kms-key KEY`"


# --- tensorseal server (HTTPS) ---------------------------------------------------------
class ServerError(TensorSealError):
    """A tensorseal server refused a request or could not be reached (TLS handshake, HTTP
    error), a download from it failed, or its licence database cannot be used."""

    hint = "check the URL, --cert/--key/--ca, and that `tensorseal serve` is running there"


class RateLimitedError(ServerError):
    """The server refuses activations from this client certificate for a while: too many
    failed attempts."""

    hint = "wait and try again with the right licence key"


# --- caller mistakes -----------------------------------------------------------------
class UsageError(TensorSealError):
    """The call itself is wrong: missing recipients, incompatible options, unknown tensor."""


__all__ = [
    "AuditError",
    "AuthenticationError",
    "BucketAuditError",
    "FormatError",
    "HeaderAuthenticationError",
    "HeaderSyntaxError",
    "IncorrectIdentityError",
    "InvalidKeyError",
    "KeyCommitmentError",
    "KeyMaterialError",
    "KeyServiceError",
    "LayoutError",
    "LicenceError",
    "LicenceExpiredError",
    "LicenceRevokedError",
    "LimitExceededError",
    "ManifestError",
    "ModelMismatchError",
    "NoIdentityMatchError",
    "NotSealedError",
    "RateLimitedError",
    "SeatLimitError",
    "SegmentAuthenticationError",
    "ServerError",
    "SignatureError",
    "StorageError",
    "TensorSealError",
    "TrailingDataError",
    "TruncatedError",
    "UnsupportedDtypeError",
    "UnsupportedVersionError",
    "UsageError",
    "WorkFactorError",
    "WrongDeviceError",
    "WrongLicenceKeyError",
]
