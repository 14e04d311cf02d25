"""Hugging Face transformers: ``from_pretrained`` on a directory of sealed shards.

The directory is what ``tensorseal encrypt DIR -o OUTDIR`` writes: every ``*.safetensors``
shard sealed under its own name (so ``model.safetensors.index.json`` still maps tensors
to files), every other file copied. transformers' own loading code runs unchanged; only
its safetensors reader is swapped for tensorseal's for the duration of the call, so the
model is the one ``from_pretrained`` builds from the plain directory, loaded shard by
shard and tensor by tensor, with no plaintext file. transformers is an optional extra.
"""

from __future__ import annotations

import os
from typing import Any

from .checks import CHECK_KEYWORDS, SignersArg
from .compat import sealed_safetensors
from .errors import UsageError
from .files import IdentityArg

__all__ = ["from_pretrained"]

def from_pretrained(
    path: str | os.PathLike[str],
    identities: IdentityArg,
    *,
    model_class: Any = None,
    signers: SignersArg | None = None,
    **kwargs: Any,
) -> Any:
    """``model_class.from_pretrained(path, **kwargs)`` (default ``AutoModel``) reading the
    sealed shards of ``path``. ``signers`` and ``expect_*`` checks apply to every shard.
    A plain (unsealed) shard is refused unless ``require_encrypted=False`` is passed, so a
    shard cannot be swapped for a plain file.

    Raises the tensorseal errors of the shards (wrong key, tampering, wrong model) and
    whatever transformers raises.
    """
    try:
        import transformers
    except ImportError:
        raise UsageError("transformers is not installed", hint="pip install 'tensorseal[transformers]'") from None
    if not os.path.isdir(path):
        raise UsageError(f"{os.fspath(path)} is not a model directory")
    expect = {k: kwargs.pop(k) for k in CHECK_KEYWORDS if k in kwargs}
    expect.setdefault("require_encrypted", True)
    cls = model_class or transformers.AutoModel
    with sealed_safetensors(identities, signers=signers, also_patch=("transformers",), **expect):
        return cls.from_pretrained(os.fspath(path), **kwargs)
