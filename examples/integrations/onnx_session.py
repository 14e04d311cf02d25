"""An ONNX model (silero-vad's, shipped in its pip package) sealed and run from memory.

    python examples/integrations/onnx_session.py [WORKDIR]
"""

import os
import sys
import tempfile

import numpy as np
import onnxruntime
import silero_vad

import tensorseal
import tensorseal.onnx

work = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp()
onnx_path = os.path.join(os.path.dirname(silero_vad.__file__), "data", "silero_vad.onnx")
sealed = os.path.join(work, "vad.onnx.tseal")
key = tensorseal.X25519Identity.generate()
tensorseal.encrypt_file(onnx_path, sealed, [key.recipient()])

session = tensorseal.onnx.InferenceSession(sealed, identities=[key], providers=["CPUExecutionProvider"])
reference = onnxruntime.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
feed = {"input": np.sin(np.arange(512, dtype=np.float32) / 7)[None, :],
        "state": np.zeros((2, 1, 128), np.float32), "sr": np.array(16000, np.int64)}
assert all(np.array_equal(a, b) for a, b in zip(session.run(None, feed), reference.run(None, feed)))
print("ok: same outputs as the plain ONNX model")
