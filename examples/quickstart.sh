#!/usr/bin/env bash
# End-to-end tour on a small model this script makes itself:
# keygen -> encrypt -> inspect -> verify -> load in Python and compare -> tamper check.
set -euo pipefail
out=${1:-demo-out}
rm -rf "$out" && mkdir -p "$out"
cd "$out"

echo "== 1. a small model (a 3-layer MLP, float32) saved with safetensors"
python - <<'PY'
import numpy as np
from safetensors.numpy import save_file
rng = np.random.default_rng(0)
dims = [256, 512, 512, 10]
weights = {}
for i, (a, b) in enumerate(zip(dims, dims[1:])):
    weights[f"layers.{i}.weight"] = (rng.standard_normal((b, a)) / np.sqrt(a)).astype(np.float32)
    weights[f"layers.{i}.bias"] = np.zeros(b, dtype=np.float32)
save_file(weights, "model.safetensors", metadata={"arch": "mlp"})
print(f"model.safetensors: {sum(w.nbytes for w in weights.values())} bytes of weights")
PY

echo "== 2. keygen"
tensorseal keygen -o key.txt
recipient=$(tensorseal keygen -y key.txt)

echo "== 3. encrypt (tensor names are encrypted too)"
tensorseal encrypt model.safetensors -r "$recipient" -o model.tseal --name demo-mlp --model-version 1.0

echo "== 4. inspect without and with the key"
tensorseal inspect model.tseal
tensorseal inspect model.tseal -i key.txt

echo "== 5. verify every byte"
tensorseal verify model.tseal -i key.txt

echo "== 6. load in Python (no plaintext file) and compare with the original"
python - <<'PY'
import numpy as np
import tensorseal
import tensorseal.numpy
from safetensors.numpy import load_file

plain = load_file("model.safetensors")
sealed = tensorseal.numpy.load_file("model.tseal", identities=["key.txt"])
assert sorted(plain) == sorted(sealed)
assert all(np.array_equal(plain[k], sealed[k]) for k in plain)

def forward(w, x):
    for i in range(3):
        x = x @ w[f"layers.{i}.weight"].T + w[f"layers.{i}.bias"]
        x = np.maximum(x, 0) if i < 2 else x
    return x

x = np.random.default_rng(1).standard_normal((4, 256)).astype(np.float32)
assert np.array_equal(forward(plain, x), forward(sealed, x))
print(f"identical: {len(sealed)} tensors, same outputs on a batch of 4")
raw = open("model.tseal", "rb").read()
assert plain["layers.0.weight"].tobytes()[:64] not in raw and b"layers.0.weight" not in raw
print("the sealed file contains neither the weights nor the tensor names in clear")
PY

echo "== 7. a single flipped byte is caught"
cp model.tseal tampered.tseal
python -c "
d = bytearray(open('tampered.tseal','rb').read()); d[-100] ^= 1
open('tampered.tseal','wb').write(d)"
if tensorseal verify tampered.tseal -i key.txt; then echo "tampering NOT detected"; exit 1; fi
echo "== 8. give a colleague access without re-encrypting (rewrap), then take it away"
tensorseal keygen -o colleague.txt
before=$(python -c "import hashlib; d=open('model.tseal','rb').read(); print(hashlib.sha256(d[-4096:]).hexdigest())")
tensorseal rewrap model.tseal -i key.txt --add -r "$(tensorseal keygen -y colleague.txt)"
tensorseal verify model.tseal -i colleague.txt
tensorseal rewrap model.tseal -i key.txt --remove-identity colleague.txt
if tensorseal verify model.tseal -i colleague.txt -q 2>/dev/null; then echo "removed recipient still opens the file"; exit 1; fi
after=$(python -c "import hashlib; d=open('model.tseal','rb').read(); print(hashlib.sha256(d[-4096:]).hexdigest())")
[ "$before" = "$after" ] && echo "the encrypted data was not touched: only the header changed"

echo "== done: everything above ran in $(pwd)"
