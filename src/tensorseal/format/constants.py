"""Constants and limits of sealed format v1 (docs/FORMAT.md is the normative text)."""

from __future__ import annotations

MAGIC = b"\x89TSEAL\r\n"
VERSION = 1
PREFIX_SIZE = 16  # magic (8) | version u16 LE | flags u16 LE | header area length u32 LE
HEAD_SLOTS = 2  # two header areas, each with its MAC: rewrap writes one while the other stays valid
HEADER_RESERVE = 4096  # spaces after the JSON in a new file: room for recipients added by rewrap

KEY_SIZE = 32  # file key, subkeys
SALT_SIZE = 32
MAC_SIZE = 32  # HMAC-SHA256
TAG_SIZE = 16  # AEAD tag of a segment
NONCE_SIZE = 12

CIPHERS = ("aes-256-gcm", "chacha20-poly1305")
DEFAULT_CIPHER = "aes-256-gcm"
MODES = ("tensors", "blob")

MIN_SEGMENT_SIZE = 1 << 12  # 4 KiB
MAX_SEGMENT_SIZE = 1 << 26  # 64 MiB
DEFAULT_SEGMENT_SIZE = 1 << 20  # 1 MiB: see BENCHMARKS.md for the measurement
DATA_ALIGNMENT = 4096  # writers start the data region on a page boundary

# Limits, checked before the thing they bound is read or parsed.
MAX_HEADER_SIZE = 16 << 20
MAX_INDEX_SIZE = 8 + 100_000_000 + TAG_SIZE  # length field + the safetensors header cap + a tag
MAX_STANZAS = 1024
MAX_STANZA_ARGS = 8
MAX_STANZA_ARG_SIZE = 1024
MAX_STANZA_BODY_SIZE = 16 << 10
MAX_STANZA_TYPE_SIZE = 64
MAX_GAP = 16 << 20  # zero bytes allowed between sections
MAX_SEGMENTS_PER_TENSOR = 1 << 32
MAX_TENSOR_NUMBER = (1 << 32) - 1  # the nonce holds it in 32 bits
MAX_IDENTITY_FIELD = 256
MAX_DATA_LENGTH = 1 << 53
