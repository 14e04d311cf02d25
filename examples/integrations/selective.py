"""Selective encryption: seal only some tensors; the others stay readable but authenticated.

    python examples/integrations/selective.py [WORKDIR]
"""

import os
import sys
import tempfile

import numpy as np

import tensorseal
import tensorseal.numpy
from tensorseal.errors import SegmentAuthenticationError, UsageError

work = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp()
path = os.path.join(work, "model.tseal")
key = tensorseal.X25519Identity.generate()
rng = np.random.default_rng(0)
tensors = {"base.embed": rng.standard_normal((64, 16)).astype(np.float32),
           "lora.A": rng.standard_normal((16, 4)).astype(np.float32)}
tensorseal.numpy.save_file(tensors, path, recipients=[key.recipient()], encrypt_only=["lora.*"])
raw = open(path, "rb").read()
assert tensors["base.embed"].tobytes() in raw and tensors["lora.A"].tobytes() not in raw
assert all(np.array_equal(v, tensorseal.numpy.load_file(path, [key])[k]) for k, v in tensors.items())

try:  # a filter that matches nothing is an error, never a silently plain file
    tensorseal.numpy.save_file(tensors, path + "2", recipients=[key.recipient()], encrypt_only=["adapter.*"])
    raise SystemExit("a filter that matched nothing was accepted")
except UsageError:
    pass
tampered = bytearray(raw)
tampered[raw.index(tensors["base.embed"].tobytes()) + 3] ^= 1  # a byte of the PLAIN tensor
open(path, "wb").write(bytes(tampered))
try:
    tensorseal.numpy.load_file(path, [key])
    raise SystemExit("a changed plain tensor was accepted")
except SegmentAuthenticationError:
    pass
print("ok: lora.* encrypted, base.* plain but authenticated")
