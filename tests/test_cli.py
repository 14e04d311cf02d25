"""The CLI, run in-process through main() and once as the installed console script."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from safetensors.numpy import save_file as st_save

from tensorseal.cli import main

from .conftest import sample_tensors


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def model(tmp_path):
    path = tmp_path / "model.safetensors"
    st_save(sample_tensors(), path, metadata={"source": "test"})
    return path


@pytest.fixture
def keyfile(tmp_path, capsys):
    path = tmp_path / "key.txt"
    code, _, err = run(capsys, "keygen", "-o", path)
    assert code == 0 and "Public key: tseal1" in err
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    return path


def recipient_of(capsys, keyfile) -> str:
    code, out, _ = run(capsys, "keygen", "-y", keyfile)
    assert code == 0
    return out.strip()


def test_keygen_prints_to_stdout_and_refuses_overwrite(capsys, tmp_path, keyfile):
    code, out, _ = run(capsys, "keygen")
    assert code == 0 and "TSEAL-SECRET-KEY-1" in out and "# recipient: tseal1" in out
    code, _, err = run(capsys, "keygen", "-o", keyfile)
    assert code == 2 and "already exists" in err and "hint:" in err
    assert recipient_of(capsys, keyfile).startswith("tseal1")


def test_full_cycle(capsys, tmp_path, model, keyfile):
    rec = recipient_of(capsys, keyfile)
    sealed = tmp_path / "model.safetensors.tseal"
    code, _, err = run(capsys, "encrypt", model, "-r", rec, "--name", "demo", "--model-version", "1.2")
    assert code == 0 and sealed.exists(), err

    code, out, _ = run(capsys, "inspect", sealed, "--json")
    info = json.loads(out)
    assert code == 0 and info["index"] == "encrypted" and "tensors" not in info
    assert info["identity"] == {"name": "demo", "version": "1.2"} and info["recipients"] == ["X25519"]

    code, out, _ = run(capsys, "inspect", sealed, "-i", keyfile, "--json")
    info = json.loads(out)
    assert info["authenticated"] and {t["name"] for t in info["tensors"]} == set(sample_tensors())
    assert info["metadata"] == {"source": "test"}

    code, out, _ = run(capsys, "inspect", sealed, "-i", keyfile)
    assert code == 0 and "embed.weight" in out

    code, _, err = run(capsys, "verify", sealed, "-i", keyfile)
    assert code == 0 and "ok:" in err

    back = tmp_path / "back.safetensors"
    code, _, _ = run(capsys, "decrypt", sealed, "-i", keyfile, "-o", back)
    assert code == 0 and back.read_bytes() == model.read_bytes()
    code, _, err = run(capsys, "decrypt", sealed, "-i", keyfile, "-o", back)
    assert code == 2 and "--force" in err
    code, _, _ = run(capsys, "decrypt", sealed, "-i", keyfile, "-o", back, "--force", "-q")
    assert code == 0

    os.remove(model)  # default output name: strip .tseal
    code, _, _ = run(capsys, "decrypt", sealed, "-i", keyfile)
    assert code == 0 and model.read_bytes() == back.read_bytes()


def test_public_index_and_chacha(capsys, tmp_path, model, keyfile):
    out_path = tmp_path / "m.tseal"
    code, _, _ = run(capsys, "encrypt", model, "-o", out_path, "-r", recipient_of(capsys, keyfile),
                     "--public-index", "--cipher", "chacha20-poly1305", "-q")  # fmt: skip
    assert code == 0
    code, out, _ = run(capsys, "inspect", out_path, "--json")
    info = json.loads(out)
    assert info["cipher"] == "chacha20-poly1305" and info["index"] == "public"
    assert not info["authenticated"] and len(info["tensors"]) == len(sample_tensors())


def test_recipients_file_key_file_and_several_recipients(capsys, tmp_path, model, keyfile):
    rfile = tmp_path / "team.txt"
    rfile.write_text(f"# team\n{recipient_of(capsys, keyfile)}\n")
    sym = tmp_path / "sym.key"
    assert run(capsys, "keygen", "--symmetric", "-o", sym)[0] == 0
    out_path = tmp_path / "m.tseal"
    assert run(capsys, "encrypt", model, "-o", out_path, "-R", rfile, "--key-file", sym)[0] == 0
    for flag, key in (("-i", keyfile), ("--key-file", sym), ("-i", sym)):
        code, _, err = run(capsys, "verify", out_path, flag, key, "-q")
        assert code == 0, err


def test_passphrase_from_environment(capsys, tmp_path, model, monkeypatch):
    monkeypatch.setenv("TENSORSEAL_PASSPHRASE", "a long passphrase")
    out_path = tmp_path / "m.tseal"
    assert run(capsys, "encrypt", model, "-o", out_path, "--passphrase")[0] == 0
    # no identity flag: a passphrase file asks for the passphrase by itself
    back = tmp_path / "back.safetensors"
    assert run(capsys, "decrypt", out_path, "-o", back)[0] == 0
    assert back.read_bytes() == model.read_bytes()
    monkeypatch.setenv("TENSORSEAL_PASSPHRASE", "wrong")
    code, _, err = run(capsys, "verify", out_path)
    assert code == 4 and err.startswith("tensorseal: error: no identity matched")


def test_blob_mode(capsys, tmp_path, keyfile):
    blob = tmp_path / "model.gguf"
    blob.write_bytes(np.random.default_rng(0).bytes(100_000))
    assert run(capsys, "encrypt", blob, "-r", recipient_of(capsys, keyfile), "--segment-size", "4096")[0] == 0
    code, out, _ = run(capsys, "inspect", f"{blob}.tseal", "--json")
    assert json.loads(out)["mode"] == "blob" and json.loads(out)["segments"] == 25
    blob.unlink()
    assert run(capsys, "decrypt", f"{blob}.tseal", "-i", keyfile)[0] == 0
    assert blob.read_bytes() == np.random.default_rng(0).bytes(100_000)


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["encrypt", "{model}"], 2, "no recipients"),
        (["encrypt", "{model}", "-r", "tseal1abc"], 4, "X25519 recipient"),
        (["encrypt", "{model}", "-r", "{rec}", "--passphrase"], 2, "cannot be combined"),
        (["encrypt", "{model}", "-r", "{rec}", "--segment-size", "1000"], 2, "power of two"),
        (["encrypt", "{missing}", "-r", "{rec}"], 2, "does not exist"),
        (["decrypt", "{model}", "-i", "{key}", "-o", "{out}"], 3, "not a tensorseal file"),
        (["verify", "{sealed}", "-i", "{other}"], 4, "no identity matched"),
        (["verify", "{sealed}", "-i", "{model}"], 4, "identity"),
        (["frobnicate"], 2, "No such command"),
    ],
)
def test_errors_are_one_line_with_exit_codes(capsys, tmp_path, model, keyfile, args, code, message):
    rec = recipient_of(capsys, keyfile)
    other = tmp_path / "other.txt"
    run(capsys, "keygen", "-o", other)
    sealed = tmp_path / "s.tseal"
    assert run(capsys, "encrypt", model, "-o", sealed, "-r", rec, "-q")[0] == 0
    fmt = {"model": model, "rec": rec, "key": keyfile, "out": tmp_path / "o", "sealed": sealed, "other": other,
           "missing": tmp_path / "missing"}  # fmt: skip
    got, out, err = run(capsys, *[a.format(**fmt) for a in args])
    assert got == code, err
    assert err.startswith("tensorseal: error: ") and message in err
    assert "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_tampered_file_exit_code(capsys, tmp_path, model, keyfile):
    sealed = tmp_path / "s.tseal"
    run(capsys, "encrypt", model, "-o", sealed, "-r", recipient_of(capsys, keyfile))
    data = bytearray(sealed.read_bytes())
    data[-3] ^= 1
    sealed.write_bytes(bytes(data))
    code, _, err = run(capsys, "decrypt", sealed, "-i", keyfile, "-o", tmp_path / "o")
    assert code == 5 and "authentication failed" in err and not (tmp_path / "o").exists()


def test_console_script(tmp_path):
    exe = shutil.which("tensorseal") or None
    cmd = [exe] if exe else [sys.executable, "-m", "tensorseal.cli"]
    done = subprocess.run([*cmd, "--version"], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert done.returncode == 0 and "tensorseal" in done.stdout
    done = subprocess.run([*cmd, "decrypt", str(tmp_path / "nope")], capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.startswith("tensorseal: error:")


def _run_on_a_terminal(args: list[str], answers: list[bytes], timeout: float = 60) -> tuple[int, bytes]:
    """Run the CLI with a pseudo-terminal as its controlling terminal, typing ``answers``
    at each prompt, as a person would."""
    import pty
    import select
    import termios
    import time

    pid, fd = pty.fork()
    if pid == 0:  # child
        env = {k: v for k, v in os.environ.items() if k != "TENSORSEAL_PASSPHRASE"}
        os.execve(sys.executable, [sys.executable, "-m", "tensorseal.cli", *args], env)
    output, deadline = b"", time.monotonic() + timeout
    pending = list(answers)
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            output += chunk
        # answer only once the prompt is shown and echo is off: getpass flushes input
        # typed before it switches the terminal to hidden mode
        if pending and output.rstrip().endswith(b":") and not termios.tcgetattr(fd)[3] & termios.ECHO:
            os.write(fd, pending.pop(0) + b"\n")
            output += b"\n"
    else:
        os.kill(pid, 9)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), output


def test_passphrase_prompt_on_a_terminal(tmp_path, model):
    sealed, back = tmp_path / "m.tseal", tmp_path / "back.safetensors"
    code, out = _run_on_a_terminal(["encrypt", str(model), "-o", str(sealed), "--passphrase"], [b"s3cret pw", b"s3cret pw"])
    assert code == 0, out
    assert b"s3cret" not in out  # hidden input is not echoed
    code, out = _run_on_a_terminal(["decrypt", str(sealed), "-o", str(back)], [b"s3cret pw"])
    assert code == 0, out
    assert back.read_bytes() == model.read_bytes()
    code, out = _run_on_a_terminal(["verify", str(sealed)], [b"wrong"])
    assert code == 4 and b"no identity matched" in out


def test_publisher_signatures(capsys, tmp_path, model, keyfile):
    sk = tmp_path / "publisher.key"
    code, _, err = run(capsys, "keygen", "--signing", "-o", sk)
    assert code == 0 and "Public key: tsealpub1" in err
    code, pub, _ = run(capsys, "keygen", "-y", sk)
    pub = pub.strip()
    assert pub.startswith("tsealpub1")
    sealed = tmp_path / "m.tseal"
    assert run(capsys, "encrypt", model, "-o", sealed, "-r", recipient_of(capsys, keyfile), "--sign-key", sk)[0] == 0
    code, _, err = run(capsys, "verify", sealed, "--signer", pub)  # no decryption key
    assert code == 0 and "signature from a trusted signer" in err
    trusted = tmp_path / "trusted.txt"
    trusted.write_text(f"# publishers\n{pub}\n")
    assert run(capsys, "verify", sealed, "--trusted-signers", trusted, "-i", keyfile)[0] == 0
    code, out, _ = run(capsys, "inspect", sealed, "--json")
    assert json.loads(out)["signed_by"] == [pub]
    assert run(capsys, "decrypt", sealed, "-i", keyfile, "--signer", pub, "-o", tmp_path / "back")[0] == 0

    other = tmp_path / "other.key"
    run(capsys, "keygen", "--signing", "-o", other)
    _, other_pub, _ = run(capsys, "keygen", "-y", other)
    code, _, err = run(capsys, "verify", sealed, "--signer", other_pub.strip())
    assert code == 5 and "no signature from a trusted signer" in err
    code, _, err = run(capsys, "decrypt", sealed, "-i", keyfile, "--signer", other_pub.strip(), "-o", tmp_path / "no")
    assert code == 5 and not (tmp_path / "no").exists()
    assert run(capsys, "sign", sealed, "--sign-key", other)[0] == 0
    assert run(capsys, "verify", sealed, "--signer", other_pub.strip(), "-q")[0] == 0

    data = bytearray(sealed.read_bytes())
    data[5000] ^= 1
    sealed.write_bytes(bytes(data))
    code, _, err = run(capsys, "verify", sealed, "--signer", pub)
    assert code == 5 and "changed after it was signed" in err
