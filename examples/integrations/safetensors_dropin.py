"""Make code written against safetensors read sealed files, unchanged.

    python examples/integrations/safetensors_dropin.py [WORKDIR]
"""

import os
import sys
import tempfile

import numpy as np
import safetensors.numpy

import tensorseal
import tensorseal.compat
import tensorseal.numpy

work = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp()
path = os.path.join(work, "model.safetensors")
key = tensorseal.X25519Identity.generate()
weights = {"w": np.arange(12, dtype=np.float32).reshape(3, 4)}
tensorseal.numpy.save_file(weights, path, recipients=[key.recipient()])  # sealed, same name


def existing_code(p):  # somebody else's loader, written for safetensors
    with safetensors.safe_open(p, framework="np") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


with tensorseal.compat.sealed_safetensors(identities=[key], require_encrypted=True):
    assert np.array_equal(safetensors.numpy.load_file(path)["w"], weights["w"])
    assert np.array_equal(existing_code(path)["w"], weights["w"])
print("ok: safetensors.safe_open and load_file read the sealed file")
