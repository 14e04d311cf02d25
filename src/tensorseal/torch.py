"""torch API, mirroring ``safetensors.torch``: save_file, load_file, safe_open.

Tensors are decrypted into memory that torch then owns (no copy). ``device`` other than
"cpu" moves each tensor after every tag has been verified on the host.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _source, _tensors
from .errors import UnsupportedDtypeError, UsageError
from .checks import Checks, SignersArg
from .files import IdentityArg
from .format.safetensors_index import TensorEntry
from .recipients import Recipient
from .signing import SigningKey
from .writer import SealOptions

if TYPE_CHECKING:
    import torch

__all__ = ["load_file", "safe_open", "save_file"]

_DTYPES = {
    "BOOL": "bool", "U8": "uint8", "I8": "int8", "I16": "int16", "U16": "uint16",
    "F16": "float16", "BF16": "bfloat16", "I32": "int32", "U32": "uint32", "F32": "float32",
    "I64": "int64", "U64": "uint64", "F64": "float64", "C64": "complex64",
    "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2", "F8_E8M0": "float8_e8m0fnu",
}  # fmt: skip


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        raise UsageError("torch is not installed", hint="pip install 'tensorseal[torch]'") from None
    return torch


class _Torch:
    name = "torch"

    def __init__(self, device: str = "cpu") -> None:
        self.device = device

    def to_bytes(self, tensor: Any) -> tuple[str, tuple[int, ...], np.ndarray]:
        torch = _torch()
        if not isinstance(tensor, torch.Tensor):
            raise UsageError(f"expected a torch.Tensor, got {type(tensor).__name__}")
        names = {getattr(torch, v): k for k, v in _DTYPES.items() if hasattr(torch, v)}
        if tensor.dtype not in names:
            raise UnsupportedDtypeError(f"dtype {tensor.dtype} has no safetensors equivalent")
        if tensor.layout != torch.strided:
            raise UsageError("sparse tensors cannot be sealed; call .to_dense() first")
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        return names[tensor.dtype], tuple(tensor.shape), flat.view(torch.uint8).numpy()

    def empty(self, nbytes: int) -> np.ndarray:
        # torch's own allocator: the tensor owns its memory. Measured here, numpy's
        # huge-page buffers were 2.5x slower to first-touch inside a torch process.
        return _torch().empty(nbytes, dtype=_torch().uint8).numpy()

    def from_buffer(self, buf: np.ndarray, entry: TensorEntry) -> Any:
        torch = _torch()
        dtype = getattr(torch, _DTYPES.get(entry.dtype, ""), None)
        if dtype is None:
            raise UnsupportedDtypeError(f"torch cannot represent {entry.dtype} tensors")
        if buf.nbytes == 0:  # torch cannot view a zero-length byte buffer as another dtype
            tensor = torch.empty(entry.shape, dtype=dtype)
        else:
            tensor = torch.from_numpy(buf).view(dtype).reshape(entry.shape)
        return tensor if self.device == "cpu" else tensor.to(self.device)

    def index(self, tensor: Any, key: Any) -> Any:
        return tensor[key]


def load(
    filename: str | os.PathLike[str],
    identities: IdentityArg,
    *,
    weights_only: bool = True,
    map_location: Any = None,
    signers: SignersArg | None = None,
    threads: int | None = None,
    **expect: Any,
) -> Any:
    """``torch.load`` of a sealed blob (a pickled checkpoint), from memory: the plaintext
    never touches disk, and its buffer is zeroed once torch has read it. ``weights_only``
    defaults to True, as in torch: a pickle can run code, so only allow more for files
    you trust (check ``signers``).

    Raises like :func:`tensorseal.read_blob`, and whatever torch.load raises.
    """
    import io

    from .files import read_blob

    buf = read_blob(filename, identities, signers=signers, threads=threads, **expect)
    try:
        return _torch().load(io.BytesIO(buf), weights_only=weights_only, map_location=map_location)
    finally:
        buf[:] = bytes(len(buf))


def save_file(
    tensors: Mapping[str, torch.Tensor],
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
    """Seal torch tensors to ``filename``. Raises like :func:`tensorseal.numpy.save_file`."""
    options = SealOptions(
        cipher=cipher, public_index=public_index, identity=_tensors.identity_from(name, version),
        encrypt_only=tuple(encrypt_only), plain=tuple(plain),
        **({"segment_size": segment_size} if segment_size else {}),
    )  # fmt: skip
    _tensors.save(_Torch(), tensors, filename, recipients, metadata, options, threads, sign_with)


def load_file(
    filename: str | os.PathLike[str],
    identities: IdentityArg,
    device: str = "cpu",
    *,
    signers: SignersArg | None = None,
    threads: int | None = None,
    _pipeline: Any = None,
    **expect: Any,
) -> dict[str, torch.Tensor]:
    """Decrypt every tensor into torch-owned memory, then move to ``device``; with
    ``signers``, only a file a trusted publisher signed; ``expect`` as in
    :func:`tensorseal.numpy.load_file`.

    With ``device="cuda"``, an AES-256-GCM file, a GPU and the ``tensorseal[cuda]`` extra,
    the ciphertext is copied to the GPU and decrypted there, every tag checked on the host
    first (``tensorseal.gpu``: no plaintext in host memory); otherwise tensors are
    decrypted on the host and moved. ``_pipeline`` is for tests and benchmarks
    (``tensorseal.gpu.loader``).

    Raises NoIdentityMatchError, AuthenticationError (SignatureError,
    SegmentAuthenticationError), ModelMismatchError, FormatError, UsageError, OSError.
    """
    fw, checks = _Torch(str(device)), Checks.build(signers, **expect)
    if fw.device == "cpu" and _pipeline is None:
        return _tensors.load(fw, filename, identities, threads, checks)
    from .gpu import loader

    return loader.load(fw, filename, identities, threads, checks, _pipeline)


def safe_open(
    filename: str | os.PathLike[str],
    identities: IdentityArg,
    device: str = "cpu",
    *,
    signers: SignersArg | None = None,
    threads: int | None = None,
    storage_options: dict[str, Any] | None = None,
    _pipeline: Any = None,
    **expect: Any,
) -> _tensors.SafeOpen[torch.Tensor]:
    """Lazy access: ``keys()``, ``metadata()``, ``get_tensor(name)``, ``get_slice(name)``.
    ``get_tensor`` to a GPU decrypts there, as :func:`load_file` does. ``filename`` may be
    a URL (fsspec, ``storage_options``): only the header and the tensors asked for are
    fetched."""
    fw, checks = _Torch(str(device)), Checks.build(signers, **expect)
    if (fw.device == "cpu" and _pipeline is None) or storage_options is not None or _source.is_url(filename):
        return _tensors.SafeOpen(fw, filename, identities, threads, checks, storage_options)
    from .gpu import loader

    return loader.PipelinedSafeOpen(fw, filename, identities, threads, checks, _pipeline)
