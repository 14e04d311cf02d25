"""A pickled torch checkpoint, sealed as a blob and loaded with torch.load from memory.

    python examples/integrations/torch_checkpoint.py [WORKDIR]
"""

import os
import sys
import tempfile

import torch

import tensorseal
import tensorseal.torch

work = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp()
plain, sealed = os.path.join(work, "ckpt.pt"), os.path.join(work, "ckpt.pt.tseal")
ckpt = {"model": torch.nn.Linear(8, 4).state_dict(), "step": 1200}
torch.save(ckpt, plain)
key = tensorseal.X25519Identity.generate()
tensorseal.encrypt_file(plain, sealed, [key.recipient()])  # not safetensors: blob mode
os.remove(plain)

loaded = tensorseal.torch.load(sealed, identities=[key])  # weights_only=True, as torch
assert loaded["step"] == 1200 and torch.equal(loaded["model"]["weight"], ckpt["model"]["weight"])
print("ok: torch.load from memory")
