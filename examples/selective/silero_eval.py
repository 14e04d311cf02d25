"""Evaluator for silero-vad (the 16 kHz weights shipped in the ``silero-vad`` package).

``evaluate(tensors)`` runs the network built from ``tensors`` on a test recording and
compares its per-chunk speech / non-speech decisions (probability > 0.5, one decision per
512 samples = 32 ms) with those of the original weights. The score is the informedness
of that agreement, |recall on the original's speech chunks + recall on its non-speech
chunks - 1| (absolute: a model that is reliably wrong is as useful as one that is right,
its user flips it). The original scores 1; a model that always answers the same, or at
random, scores about 0, so the score fits tensorseal.sensitivity's threshold, e.g.::

    tensorseal encrypt silero_vad_16k.safetensors -o vad.tseal -r tseal1... \\
        --critical auto --eval examples.selective.silero_eval:evaluate

Audio: the 16 kHz mono WAV named by ``SILERO_EVAL_WAV`` (docs/SELECTIVE.md uses CMU
ARCTIC's ``arctic_a0007.wav``, 4 s of read speech shipped in pysptk's source package),
with pink noise at 20 dB SNR, twice (the second copy at 0.3 of the level), between
stretches of pink noise alone only 10 dB below the speech (1.5 s, 1.5 s, 1 s): loudness
alone does not tell speech from noise, so a network with random weights that merely
tracks energy scores about 0. Without ``SILERO_EVAL_WAV``, a synthetic vowel-like
stand-in (see ``_synthetic_speech``).
"""

from __future__ import annotations

import functools
import os
import wave
from collections.abc import Mapping

import numpy as np
import torch

from tensorseal.errors import UsageError

SAMPLE_RATE = 16000
CHUNK = 512
CONTEXT = 64


def weights_path() -> str:
    """The package's own ``silero_vad_16k.safetensors`` (the original model)."""
    import silero_vad

    return os.path.join(os.path.dirname(silero_vad.__file__), "data", "silero_vad_16k.safetensors")


class SileroVAD(torch.nn.Module):
    """silero-vad's 16 kHz network (layer names as in its safetensors file), run over a
    whole recording: the stateless STFT and convolutions on every chunk at once, then the
    LSTM cell chunk by chunk."""

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
        """(samples,) float32 -> (chunks,) speech probabilities."""
        wav = torch.nn.functional.pad(wav[None], (CONTEXT, 0))[0]
        starts = range(CONTEXT, wav.shape[0] - CHUNK + 1, CHUNK)
        x = torch.stack([wav[i - CONTEXT : i + CHUNK] for i in starts])[:, None]
        x = torch.nn.functional.pad(x, (0, CONTEXT), mode="reflect")
        x = self.stft_conv(x)
        x = (x[:, :129] ** 2 + x[:, 129:] ** 2).sqrt()
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            x = conv(x).relu()
        x = x.squeeze(-1)
        state, probs = None, []
        for t in range(x.shape[0]):
            h, c = self.lstm_cell(x[t : t + 1], state)
            state = (h, c)
            probs.append(self.final_conv(h.unsqueeze(-1).relu()).sigmoid().reshape(()))
        return torch.stack(probs)


def _read_wav(path: str) -> np.ndarray:
    with wave.open(path) as w:
        if w.getframerate() != SAMPLE_RATE or w.getnchannels() != 1 or w.getsampwidth() != 2:
            raise UsageError(f"{path}: need 16 kHz mono 16-bit PCM")
        return np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float64) / 32768


def _synthetic_speech(rng: np.random.Generator) -> np.ndarray:
    """3 s of vowel-like sound (needs scipy): a glottal pulse train at a 100-180 Hz pitch
    through three formant resonators, five vowels in turn, syllable-rate envelope. A weak
    stand-in: the original model calls only about a tenth of the chunks speech."""
    import scipy.signal as ss

    t = np.arange(3 * SAMPLE_RATE) / SAMPLE_RATE
    periods = np.cumsum(140 + 40 * np.sin(2 * np.pi * 0.9 * t)) / SAMPLE_RATE
    pulses = np.diff(np.floor(periods), prepend=0)
    source = ss.lfilter([1], [1, -0.97], pulses) + 0.02 * rng.standard_normal(t.size)
    vowels = [(730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480), (660, 1720, 2410)]
    out, seg, r = np.zeros_like(t), SAMPLE_RATE // 4, np.exp(-np.pi * 80 / SAMPLE_RATE)
    for n, i in enumerate(range(0, t.size, seg)):
        for f in vowels[n % len(vowels)]:
            a = [1, -2 * r * np.cos(2 * np.pi * f / SAMPLE_RATE), r * r]
            out[i : i + seg] += ss.lfilter([1 - r], a, source[i : i + seg])
    return out * np.clip(np.sin(2 * np.pi * 2 * t), 0, None) ** 0.3 * ((t % 1.0) < 0.85)


def _pink(rng: np.random.Generator, n: int) -> np.ndarray:
    """Unit-variance pink (1/f) noise."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(spectrum.size, dtype=np.float64)
    f[0] = 1
    x = np.fft.irfft(spectrum / np.sqrt(f), n)
    return x / x.std()


@functools.lru_cache(maxsize=1)
def audio() -> np.ndarray:
    """The test recording (float32, 16 kHz): see the module doc."""
    rng = np.random.default_rng(7)
    path = os.environ.get("SILERO_EVAL_WAV")
    speech = _read_wav(path) if path else _synthetic_speech(rng)
    speech = 0.5 * speech / np.abs(speech).max()
    level = np.sqrt(np.mean(speech[np.abs(speech) > 0.02] ** 2))  # RMS of the active part

    def noise(seconds: float) -> np.ndarray:  # 10 dB below the speech
        return 0.3 * level * _pink(rng, int(seconds * SAMPLE_RATE))

    def noisy(gain: float) -> np.ndarray:  # at 20 dB SNR
        return gain * (speech + 0.1 * level * _pink(rng, speech.size))

    return np.concatenate([noise(1.5), noisy(1.0), noise(1.5), noisy(0.3), noise(1.0)]).astype(np.float32)


def audio_source() -> str:
    path = os.environ.get("SILERO_EVAL_WAV")
    return os.path.basename(path) if path else "synthetic (no SILERO_EVAL_WAV)"


@functools.lru_cache(maxsize=1)
def _network() -> SileroVAD:
    return SileroVAD().eval()


def probabilities(tensors: Mapping[str, np.ndarray]) -> np.ndarray:
    """Speech probability per 32 ms chunk of :func:`audio` with these weights."""
    model = _network()
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in tensors.items()}, strict=True)
    with torch.inference_mode():
        return model(torch.from_numpy(audio())).numpy().astype(np.float64)


@functools.lru_cache(maxsize=1)
def reference() -> np.ndarray:
    """The original model's probabilities (weights from the silero-vad package)."""
    from tensorseal.sensitivity import read_safetensors

    return probabilities(read_safetensors(weights_path()))


def metrics(tensors: Mapping[str, np.ndarray]) -> dict[str, float]:
    """``informedness`` (absolute), ``agreement`` (fraction of chunks with the original's decision) and
    ``mean_abs_diff`` (mean |probability - original's|)."""
    ref, got = reference(), np.nan_to_num(probabilities(tensors), nan=0.5)
    speech, decided = ref > 0.5, got > 0.5
    if speech.all() or not speech.any():
        raise UsageError("the test audio has only one class: the score would be meaningless")
    return {
        "informedness": abs(float(np.mean(decided[speech]) + np.mean(~decided[~speech]) - 1)),
        "agreement": float(np.mean(decided == speech)),
        "mean_abs_diff": float(np.mean(np.abs(got - ref))),
        "speech_fraction": float(np.mean(speech)),
    }


def evaluate(tensors: Mapping[str, np.ndarray]) -> float:
    """Informedness of the decisions against the original model's, 1 = the same."""
    return metrics(tensors)["informedness"]


def stft_basis() -> np.ndarray:
    """A periodic-Hann-windowed 256-point DFT basis (real parts, then imaginary parts), in
    the layout of ``stft_conv.weight``: anyone can compute it."""
    n, k = np.arange(256), np.arange(129)[:, None]
    window = np.hanning(257)[:-1]
    angle = 2 * np.pi * k * n / 256
    return np.concatenate([np.cos(angle) * window, -np.sin(angle) * window])[:, None, :].astype(np.float32)


# stft_conv.weight equals stft_basis() to within 1e-7 (examples/selective/measure.py checks
# it): an attacker recomputes it, so the analysis must not count on its secrecy.
evaluate.known_tensors = ("stft_conv.weight",)  # type: ignore[attr-defined]
