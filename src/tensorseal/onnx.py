"""onnxruntime sessions from sealed ONNX models, built from memory (no plaintext file).

onnxruntime is an optional extra (``pip install 'tensorseal[onnx]'``), imported lazily.
"""

from __future__ import annotations

import os
from typing import Any

from .checks import CHECK_KEYWORDS, SignersArg
from .errors import UsageError
from .files import IdentityArg, read_blob

__all__ = ["InferenceSession"]


def InferenceSession(  # noqa: N802 - mirrors onnxruntime.InferenceSession
    path: str | os.PathLike[str],
    identities: IdentityArg,
    *,
    signers: SignersArg | None = None,
    threads: int | None = None,
    **session_kwargs: Any,
) -> Any:
    """An ``onnxruntime.InferenceSession`` for a sealed ONNX model (sealed in blob mode).

    The model is decrypted and authenticated in memory, handed to onnxruntime as bytes,
    and the decrypted buffer is zeroed right after (onnxruntime keeps its own copy, as it
    does for any model). ``session_kwargs`` go to onnxruntime (``providers``,
    ``sess_options``, ...). ``signers`` and the ``expect_*`` checks work as in
    :func:`tensorseal.read_blob`.
    """
    try:
        import onnxruntime
    except ImportError:
        raise UsageError("onnxruntime is not installed", hint="pip install 'tensorseal[onnx]'") from None
    expect = {k: session_kwargs.pop(k) for k in list(session_kwargs) if k in CHECK_KEYWORDS}
    model = read_blob(path, identities, signers=signers, threads=threads, **expect)
    try:
        return onnxruntime.InferenceSession(bytes(model), **session_kwargs)
    finally:
        model[:] = bytes(len(model))

