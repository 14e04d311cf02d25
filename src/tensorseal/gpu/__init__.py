"""Loading sealed tensors straight into GPU memory (the ``tensorseal[cuda]`` extra).

- :mod:`.pipeline`: the staged pipeline (read ciphertext into staging buffers, copy it to
  the tensors' memory, AES-CTR in place there, GCM tags checked on the host from the
  ciphertext) and its backend interface, with the :class:`~.pipeline.CpuBackend` that CI
  runs;
- :mod:`.ghash`: the GCM tag of a ciphertext without decrypting it;
- :mod:`.aes_kernel`: the AES-256-CTR CUDA kernel source and the host key schedule;
- :mod:`.cuda`: the CUDA backend (torch + CuPy, imported lazily);
- :mod:`.loader`: which path ``tensorseal.torch.load_file`` / ``safe_open`` take.

Users do not import this package: ``tensorseal.torch.load_file(path, ids, device="cuda")``
uses it when it can. Nothing here imports torch or CuPy at import time.
"""
