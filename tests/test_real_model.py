"""A real model shipped in a package: silero-vad's safetensors weights.

The weights are sealed, loaded back through tensorseal.torch, put into the model's
architecture (the same layers as silero-vad's own tinygrad port), and run on audio; the
outputs must be bit-identical to the plain model's.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
silero_vad = pytest.importorskip("silero_vad")

from safetensors.torch import load_file as st_load  # noqa: E402

import tensorseal  # noqa: E402
import tensorseal.torch as tspt  # noqa: E402

WEIGHTS = os.path.join(os.path.dirname(silero_vad.__file__), "data", "silero_vad_16k.safetensors")


class SileroVAD(torch.nn.Module):
    """silero-vad 16 kHz network, layer names matching its safetensors file."""

    def __init__(self) -> None:
        super().__init__()
        nn = torch.nn
        self.stft_conv = nn.Conv1d(1, 258, kernel_size=256, stride=128, bias=False)
        self.conv1 = nn.Conv1d(129, 128, 3, padding=1)
        self.conv2 = nn.Conv1d(128, 64, 3, stride=2, padding=1)
        self.conv3 = nn.Conv1d(64, 64, 3, stride=2, padding=1)
        self.conv4 = nn.Conv1d(64, 128, 3, padding=1)
        self.lstm_cell = nn.LSTMCell(128, 128)
        self.final_conv = nn.Conv1d(128, 1, 1)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """Speech probability per 512-sample chunk (with 64 samples of context)."""
        state, probs = None, []
        wav = torch.nn.functional.pad(wav, (64, 0))
        for i in range(64, wav.shape[1] - 511, 512):
            x = torch.nn.functional.pad(wav[:, i - 64 : i + 512], (0, 64), mode="reflect").unsqueeze(1)
            x = self.stft_conv(x)
            x = (x[:, :129] ** 2 + x[:, 129:] ** 2).sqrt()
            for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
                x = conv(x).relu()
            h, c = self.lstm_cell(x.squeeze(-1), state)
            state = (h, c)
            probs.append(self.final_conv(h.unsqueeze(-1).relu()).sigmoid().squeeze(1).mean(dim=1))
        return torch.stack(probs, dim=1)


def model_from(state_dict) -> SileroVAD:
    m = SileroVAD().eval()
    m.load_state_dict(state_dict, strict=True)
    return m


def audio() -> torch.Tensor:
    """Two seconds at 16 kHz: silence, then a voiced-like harmonic burst with noise."""
    t = np.arange(32000) / 16000
    voice = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((140, 280, 420, 560), 1))
    env = (t > 0.8) * (t < 1.7)
    wav = 0.3 * voice * env + 0.01 * np.random.default_rng(0).standard_normal(t.size)
    return torch.tensor(wav, dtype=torch.float32).unsqueeze(0)


def test_silero_vad_sealed_outputs_identical(tmp_path, identity):
    sealed = tmp_path / "silero_vad.tseal"
    tensorseal.encrypt_file(WEIGHTS, sealed, [identity.recipient()])
    plain_sd = st_load(WEIGHTS)
    sealed_sd = tspt.load_file(sealed, [identity])
    assert sorted(plain_sd) == sorted(sealed_sd)
    for k in plain_sd:
        assert torch.equal(plain_sd[k], sealed_sd[k]), k
    with torch.no_grad():
        expected = model_from(plain_sd)(audio())
        got = model_from(sealed_sd)(audio())
    assert torch.equal(expected, got)
    assert expected.std() > 0  # the model does something on this input
    # decrypting the file gives the package's file back byte for byte
    back = tmp_path / "back.safetensors"
    tensorseal.decrypt_file(sealed, back, [identity])
    with open(WEIGHTS, "rb") as f:
        assert back.read_bytes() == f.read()


def test_silero_vad_jit_model_as_blob(tmp_path, identity):
    """The TorchScript model is sealed as a blob and loaded from memory, no file."""
    import io

    jit_path = os.path.join(os.path.dirname(WEIGHTS), "silero_vad.jit")
    sealed = tmp_path / "vad.jit.tseal"
    tensorseal.encrypt_file(jit_path, sealed, [identity.recipient()])
    model = torch.jit.load(io.BytesIO(tensorseal.read_blob(sealed, [identity])))
    reference = torch.jit.load(jit_path)
    chunk = audio()[:, 16000:16512]
    assert torch.equal(model(chunk, 16000), reference(chunk, 16000))
