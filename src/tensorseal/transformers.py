"""Hugging Face transformers: ``from_pretrained`` on a directory of sealed shards.

The directory is what ``tensorseal encrypt DIR -o OUTDIR`` writes: every ``*.safetensors``
shard sealed under its own name (so ``model.safetensors.index.json`` still maps tensors
to files), every other file copied. transformers' own loading code runs unchanged; only
its safetensors reader is swapped for tensorseal's for the duration of the call, so the
model is the one ``from_pretrained`` builds from the plain directory, loaded shard by
shard and tensor by tensor, with no plaintext file. With ``encrypt --seal-config`` the
other files (config, tokenizer) are sealed too; they are then given to transformers as
memory-only files (weaker: see "Path-only frameworks" in docs/SECURITY.md). transformers
is an optional extra.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
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
    with (
        _staged(os.fspath(path), identities, signers, expect) as model_dir,
        sealed_safetensors(identities, signers=signers, also_patch=("transformers",), **expect),
    ):
        return cls.from_pretrained(model_dir, **kwargs)


@contextlib.contextmanager
def _staged(path: str, identities: IdentityArg, signers: SignersArg | None, expect: dict[str, Any]) -> Iterator[str]:
    """``path`` itself, or, when other files than the shards are sealed too (``encrypt
    --seal-config``), a private directory of symlinks: to the sealed shards (read through
    the patched safetensors) and to memory-only copies of the decrypted other files
    (:func:`tensorseal.memfile.plaintext_path`), removed and wiped on exit."""
    from .compat import is_sealed
    from .memfile import plaintext_path

    others = [
        os.path.join(root, name)
        for root, _dirs, names in os.walk(path)
        for name in names
        if not name.endswith(".safetensors") and is_sealed(os.path.join(root, name))
    ]
    if not others:
        yield path
        return
    checks = {k: v for k, v in expect.items() if k not in ("expect_file", "require_encrypted")}
    with contextlib.ExitStack() as stack:
        stage = tempfile.mkdtemp(prefix="tensorseal-model-")  # 0700; holds symlinks only
        stack.callback(shutil.rmtree, stage, True)
        for root, _dirs, names in os.walk(path):
            for name in names:
                src = os.path.join(root, name)
                dst = os.path.join(stage, os.path.relpath(src, path))
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                if src in others:
                    target = stack.enter_context(plaintext_path(src, identities, signers=signers, **checks))
                else:
                    target = os.path.abspath(src)
                os.symlink(target, dst)
        yield stage
