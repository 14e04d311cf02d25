"""Every example in examples/integrations runs, offline, and ends with its "ok" line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).parent.parent / "examples" / "integrations").glob("*.py"))
NEEDS = {  # module each example needs beyond tensorseal, numpy and safetensors
    "onnx_session": "onnxruntime",
    "path_only": "torch",
    "torch_checkpoint": "torch",
    "transformers_dir": "transformers",
}


def test_there_is_an_example_per_integration():
    assert {p.stem for p in EXAMPLES} >= {"transformers_dir", "safetensors_dropin", "torch_checkpoint",
                                          "onnx_session", "path_only", "selective"}  # fmt: skip


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_example_runs(example, tmp_path):
    if example.stem in NEEDS:
        pytest.importorskip(NEEDS[example.stem])
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run([sys.executable, str(example), str(tmp_path)], capture_output=True, text=True,
                          env=env, timeout=240, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1].startswith("ok:"), done.stdout


def test_quickstart_runs(tmp_path):
    script = Path(__file__).parent.parent / "examples" / "quickstart.sh"
    done = subprocess.run(["bash", str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "tampering NOT detected" not in done.stdout
    assert "the encrypted data was not touched" in done.stdout
    assert "== done" in done.stdout
