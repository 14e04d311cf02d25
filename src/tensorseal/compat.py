"""Make code written against safetensors read sealed files, unchanged.

    with tensorseal.compat.sealed_safetensors(identities=["key.txt"]):
        state = safetensors.torch.load_file("model.safetensors")   # sealed or plain
        with safetensors.safe_open("model.safetensors", framework="pt") as f: ...

Inside the block, ``safetensors.safe_open``, ``safetensors.numpy.load_file``,
``safetensors.torch.load_file`` and ``safetensors.torch.safe_open`` open sealed files
with tensorseal (same checks, same typed errors) and pass plain files to safetensors as
before, unless ``require_encrypted=True``: then a plain file raises NotSealedError. The patch is process-wide and covers calls that look the function up through its
module at call time; a name bound earlier with ``from safetensors.torch import
load_file`` keeps pointing at the original, so patch before such imports or call through
the module.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from collections.abc import Iterator
from typing import Any

from .checks import Checks, SignersArg
from .files import IdentityArg
from .format.constants import MAGIC

__all__ = ["is_sealed", "sealed_safetensors"]


def is_sealed(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` starts with the tensorseal magic."""
    try:
        with open(path, "rb") as f:
            return f.read(len(MAGIC)) == MAGIC
    except (OSError, TypeError):
        return False


@contextlib.contextmanager
def sealed_safetensors(
    identities: IdentityArg, *, signers: SignersArg | None = None, also_patch: tuple[str, ...] = (), **expect: Any
) -> Iterator[None]:
    """Patch safetensors' entry points for the duration of the block (see the module doc).
    ``signers`` and ``expect`` (``expect_name=``, ``min_version=``, ...) apply to every
    sealed file opened inside it. ``also_patch`` names module prefixes (e.g.
    ``"transformers"``) whose already-imported modules hold their own references to the
    safetensors functions; those references are swapped too."""
    import safetensors

    checks = Checks.build(signers, **expect)  # fail now, not at the first load, on bad arguments
    opts: dict[str, Any] = {"signers": signers, **expect}
    patches: list[tuple[Any, str, Any]] = []

    def patch(module: Any, name: str, make: Any) -> None:
        if hasattr(module, name):
            original = getattr(module, name)
            patches.append((module, name, original))
            setattr(module, name, make(original))

    def safe_open_shim(original: Any) -> Any:
        def safe_open(filename: Any, framework: str, device: Any = "cpu", **kwargs: Any) -> Any:
            if not is_sealed(filename):
                checks.refuse_plain(filename)
                return original(filename, framework, device=device, **kwargs)
            import tensorseal

            return tensorseal.safe_open(filename, framework, identities, str(device), **opts)

        return safe_open

    def load_file_shim(framework: str) -> Any:
        def make(original: Any) -> Any:
            def load_file(filename: Any, *args: Any, **kwargs: Any) -> Any:
                if not is_sealed(filename):
                    checks.refuse_plain(filename)
                    return original(filename, *args, **kwargs)
                api = importlib.import_module(f"tensorseal.{framework}")
                if framework == "torch":
                    device = kwargs.get("device", args[0] if args else "cpu")
                    return api.load_file(filename, identities, str(device), **opts)
                return api.load_file(filename, identities, **opts)

            return load_file

        return make

    patch(safetensors, "safe_open", safe_open_shim)
    for framework in ("numpy", "torch"):
        try:
            module = importlib.import_module(f"safetensors.{framework}")
        except ImportError:  # safetensors.torch without torch
            continue
        patch(module, "load_file", load_file_shim(framework))
        patch(module, "safe_open", safe_open_shim)
    shims = {id(original): getattr(module, name) for module, name, original in patches}
    for prefix in also_patch:
        for mod_name, mod in list(sys.modules.items()):
            if mod is None or not (mod_name == prefix or mod_name.startswith(prefix + ".")):
                continue
            for attr, value in list(vars(mod).items()):
                if id(value) in shims and callable(value):
                    patches.append((mod, attr, value))
                    setattr(mod, attr, shims[id(value)])
    try:
        yield
    finally:
        for module, name, original in reversed(patches):
            setattr(module, name, original)
