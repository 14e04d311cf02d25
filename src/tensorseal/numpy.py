"""numpy API, mirroring ``safetensors.numpy``: save_file, load_file, safe_open.

bfloat16 and float8 tensors need the ``ml_dtypes`` package (numpy has no such types);
without it they raise UnsupportedDtypeError with a hint to use ``tensorseal.torch``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from . import _tensors
from .errors import UnsupportedDtypeError, UsageError
from .checks import Checks, SignersArg
from .files import IdentityArg
from .format.safetensors_index import TensorEntry
from .recipients import Recipient
from .signing import SigningKey
from .writer import SealOptions

__all__ = ["load_file", "safe_open", "save_file"]

_NATIVE = {
    "BOOL": np.bool_, "U8": np.uint8, "I8": np.int8, "I16": np.int16, "U16": np.uint16,
    "F16": np.float16, "I32": np.int32, "U32": np.uint32, "F32": np.float32,
    "I64": np.int64, "U64": np.uint64, "F64": np.float64, "C64": np.complex64,
}  # fmt: skip
_ML_DTYPES = {"BF16": "bfloat16", "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2", "F8_E8M0": "float8_e8m0fnu"}


def _np_dtype(name: str) -> np.dtype:
    if name in _NATIVE:
        return np.dtype(_NATIVE[name]).newbyteorder("<")
    if name in _ML_DTYPES:
        try:
            import ml_dtypes
        except ImportError:
            raise UnsupportedDtypeError(
                f"numpy has no {name} dtype", hint="install ml_dtypes, or load with tensorseal.torch"
            ) from None
        return np.dtype(getattr(ml_dtypes, _ML_DTYPES[name]))
    raise UnsupportedDtypeError(f"numpy cannot represent {name} tensors", hint="load with tensorseal.torch")


def _st_dtype(dtype: np.dtype) -> str:
    for name, t in _NATIVE.items():
        if np.dtype(t) == dtype.newbyteorder("="):
            return name
    for name, attr in _ML_DTYPES.items():
        if dtype.name == attr:
            return name
    raise UnsupportedDtypeError(f"dtype {dtype} has no safetensors equivalent")


class _Numpy:
    name = "numpy"

    def to_bytes(self, tensor: Any) -> tuple[str, tuple[int, ...], np.ndarray]:
        if not isinstance(tensor, np.ndarray):
            raise UsageError(f"expected a numpy array, got {type(tensor).__name__}")
        dtype = _st_dtype(tensor.dtype)
        arr = np.ascontiguousarray(tensor)
        if arr.dtype.byteorder == ">":
            arr = arr.astype(arr.dtype.newbyteorder("<"))
        return dtype, tuple(tensor.shape), arr.reshape(-1).view(np.uint8)

    def empty(self, nbytes: int) -> np.ndarray:
        # numpy asks for transparent huge pages on large buffers: far fewer first-touch
        # page faults while tensors are decrypted into them (see BENCHMARKS.md).
        return np.empty(nbytes, dtype=np.uint8)

    def from_buffer(self, buf: np.ndarray, entry: TensorEntry) -> np.ndarray:
        return buf.view(_np_dtype(entry.dtype)).reshape(entry.shape)

    def index(self, tensor: np.ndarray, key: Any) -> np.ndarray:
        return tensor[key]


_FW = _Numpy()


def save_file(
    tensors: Mapping[str, np.ndarray],
    filename: str | os.PathLike[str],
    recipients: Sequence[Recipient | str],
    metadata: Mapping[str, str] | None = None,
    *,
    cipher: str = "aes-256-gcm",
    public_index: bool = False,
    segment_size: int | None = None,
    name: str | None = None,
    version: str | None = None,
    threads: int | None = None,
    sign_with: Sequence[SigningKey | str | os.PathLike[str]] = (),
    encrypt_only: Sequence[str] = (),
    plain: Sequence[str] = (),
) -> None:
    """Seal ``tensors`` to ``filename`` for ``recipients`` (Recipient objects or strings).
    ``encrypt_only``/``plain``: glob patterns on tensor names for selective encryption
    (tensors left in clear are still authenticated; see docs/SELECTIVE.md).

    Raises UsageError, UnsupportedDtypeError, InvalidKeyError, OSError.
    """
    options = SealOptions(
        cipher=cipher, public_index=public_index, identity=_tensors.identity_from(name, version),
        encrypt_only=tuple(encrypt_only), plain=tuple(plain),
        **({"segment_size": segment_size} if segment_size else {}),
    )  # fmt: skip
    _tensors.save(_FW, tensors, filename, recipients, metadata, options, threads, sign_with)


def load_file(
    filename: str | os.PathLike[str],
    identities: IdentityArg,
    *,
    signers: SignersArg | None = None,
    threads: int | None = None,
    **expect: Any,
) -> dict[str, np.ndarray]:
    """Decrypt every tensor; returns nothing unless every tag verified (and, with
    ``signers``, a trusted publisher's signature). ``expect``: ``require_signature``,
    ``expect_name``, ``expect_version``, ``min_version``, ``expect_file``.

    Raises NoIdentityMatchError, AuthenticationError (SignatureError), ModelMismatchError,
    FormatError, OSError.
    """
    return _tensors.load(_FW, filename, identities, threads, Checks.build(signers, **expect))


def safe_open(
    filename: str | os.PathLike[str],
    identities: IdentityArg,
    *,
    signers: SignersArg | None = None,
    threads: int | None = None,
    storage_options: dict[str, Any] | None = None,
    **expect: Any,
) -> _tensors.SafeOpen[np.ndarray]:
    """Lazy access: ``keys()``, ``metadata()``, ``get_tensor(name)``, ``get_slice(name)``.
    ``filename`` may be a URL (``s3://``, ``https://``...; fsspec, ``storage_options``):
    only the header and the tensors asked for are fetched."""
    return _tensors.SafeOpen(_FW, filename, identities, threads, Checks.build(signers, **expect), storage_options)
