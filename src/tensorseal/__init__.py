"""tensorseal: encrypted, authenticated model weights that load like safetensors.

Public API (everything else is internal)::

    tensorseal.numpy.save_file / load_file / safe_open
    tensorseal.torch.save_file / load_file / safe_open
    tensorseal.safe_open(path, framework="np"|"pt", identities=[...])
    tensorseal.encrypt_file / decrypt_file / verify_file / read_blob / sign_file
    tensorseal.SigningKey, VerifyingKey, load_trusted_signers (publisher signatures)
    tensorseal.X25519Identity, X25519Recipient, SymmetricKey, Passphrase
    tensorseal.load_identities, load_recipients, parse_recipient
    tensorseal.errors (one exception tree rooted at TensorSealError)
"""

from __future__ import annotations

import os
from typing import Any

from .errors import (
    AuthenticationError,
    FormatError,
    NoIdentityMatchError,
    TensorSealError,
    UsageError,
)
from .checks import SignersArg
from .files import IdentityArg, decrypt_file, encrypt_directory, encrypt_file, read_blob, sign_file, verify_file
from .recipients import (
    Identity,
    Passphrase,
    Recipient,
    SymmetricKey,
    X25519Identity,
    X25519Recipient,
    load_identities,
    load_recipients,
    parse_recipient,
)
from .manifest import sign_directory, verify_directory
from .signing import SigningKey, VerifyingKey, load_trusted_signers

__version__ = "0.1.0"

__all__ = [
    "AuthenticationError",
    "FormatError",
    "Identity",
    "NoIdentityMatchError",
    "Passphrase",
    "Recipient",
    "SigningKey",
    "SymmetricKey",
    "TensorSealError",
    "UsageError",
    "X25519Identity",
    "VerifyingKey",
    "X25519Recipient",
    "decrypt_file",
    "encrypt_directory",
    "encrypt_file",
    "load_identities",
    "load_recipients",
    "load_trusted_signers",
    "parse_recipient",
    "read_blob",
    "safe_open",
    "sign_directory",
    "sign_file",
    "verify_directory",
    "verify_file",
]


def safe_open(
    filename: str | os.PathLike[str],
    framework: str = "np",
    identities: IdentityArg = (),
    device: str = "cpu",
    *,
    signers: SignersArg | None = None,
    threads: int | None = None,
    storage_options: dict[str, Any] | None = None,
    **expect: Any,
) -> Any:
    """Open a sealed tensors file lazily, like ``safetensors.safe_open``.

    ``framework`` is "np"/"numpy" or "pt"/"torch". Returns an object with ``keys()``,
    ``metadata()``, ``get_tensor(name)`` and ``get_slice(name)``; use it as a context
    manager. ``filename`` may be a URL (``s3://``, ``https://``, any fsspec protocol, with
    ``storage_options``): the header comes with one range request and only the tensors
    asked for are fetched. Raises UsageError, NoIdentityMatchError, AuthenticationError,
    FormatError, OSError.
    """
    if storage_options is not None:
        expect["storage_options"] = storage_options
    if framework in ("np", "numpy"):
        if device != "cpu":
            raise UsageError("numpy tensors live on the cpu")
        from . import numpy as np_api

        return np_api.safe_open(filename, identities, signers=signers, threads=threads, **expect)
    if framework in ("pt", "torch"):
        from . import torch as pt_api

        return pt_api.safe_open(filename, identities, device, signers=signers, threads=threads, **expect)
    raise UsageError(f"unknown framework {framework!r} (use 'np' or 'pt')")
