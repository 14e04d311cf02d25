"""A framework that only opens files by name: a memory-only path (weaker; see SECURITY.md).

    python examples/integrations/path_only.py [WORKDIR]
"""

import os
import sys
import tempfile

import silero_vad
import torch

import tensorseal
import tensorseal.memfile

work = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp()
jit_path = os.path.join(os.path.dirname(silero_vad.__file__), "data", "silero_vad.jit")
sealed = os.path.join(work, "vad.jit.tseal")
key = tensorseal.X25519Identity.generate()
tensorseal.encrypt_file(jit_path, sealed, [key.recipient()])

with tensorseal.memfile.plaintext_path(sealed, [key]) as path:  # /proc/self/fd/N, never on disk
    model = torch.jit.load(path)
assert not os.path.exists(path)  # gone, and its memory zeroed
print(f"ok: torch.jit.load read {path} while the block ran")
