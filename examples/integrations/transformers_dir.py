"""Seal a Hugging Face model directory and load it with transformers, no plaintext file.

    python examples/integrations/transformers_dir.py [WORKDIR]

Builds a tiny BERT from a config (offline), saves it sharded, seals the directory (config
and tokenizer files too, with seal_config=True) and loads it back with
tensorseal.transformers.from_pretrained: the same parameters and outputs, bit for bit.
"""

import os
import sys
import tempfile

import torch
import transformers

import tensorseal
import tensorseal.transformers

work = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp()
plain, sealed = os.path.join(work, "bert"), os.path.join(work, "bert-sealed")
config = transformers.BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                 intermediate_size=64, vocab_size=100, max_position_embeddings=32)
torch.manual_seed(0)
transformers.BertModel(config).save_pretrained(plain, max_shard_size="40KB")  # several shards

key = tensorseal.X25519Identity.generate()
tensorseal.encrypt_directory(plain, sealed, [key.recipient()], seal_config=True)

original = transformers.AutoModel.from_pretrained(plain)
model = tensorseal.transformers.from_pretrained(sealed, identities=[key])
ids = torch.tensor([[1, 5, 7, 9, 2]])
with torch.no_grad():
    assert torch.equal(original(ids).last_hidden_state, model(ids).last_hidden_state)
assert all(torch.equal(a, b) for a, b in zip(original.state_dict().values(), model.state_dict().values()))
print(f"ok: {len(os.listdir(sealed))} sealed files, same model and outputs")
