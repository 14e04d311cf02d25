"""Signed manifests for model directories (sharded checkpoints).

``tensorseal.manifest.json`` lists every regular file under the directory (relative
POSIX path, size, digest) and the model identity, signed by publishers. Verifying it
detects a shard removed, added, renamed, swapped with another shard or replaced by an
older one, and any change to the plain files beside them (config, index JSON). A sealed
file's digest is its file digest (docs/FORMAT.md section 18, the signature block
excluded, so shards can carry their own signatures too); any other file's is the BLAKE3
of its bytes. No decryption key is needed to sign or verify.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass

from blake3 import blake3

from ._atomic import atomic_output
from .errors import FormatError, ManifestError, NotSealedError, SignatureError, UsageError
from .format.constants import MAGIC
from .format.header import ModelIdentity, b64decode, b64encode, expect_keys, loads_strict
from .format.signatures import Signature
from .reader import SealedFile
from .signing import SigningKey, VerifyingKey, to_signing_keys, to_verifying_keys

MANIFEST_NAME = "tensorseal.manifest.json"
FORMAT = "tensorseal-manifest/v1"
CONTEXT = b"tensorseal/v1/manifest"
MAX_MANIFEST_SIZE = 16 << 20


@dataclass(frozen=True)
class Entry:
    path: str  # relative, POSIX separators
    size: int
    sealed: bool
    digest: bytes


def _is_sealed(path: str) -> bool:
    with open(path, "rb") as f:
        return f.read(len(MAGIC)) == MAGIC


def _digest_file(path: str, threads: int | None) -> tuple[bool, bytes]:
    if _is_sealed(path):
        with SealedFile(path) as sealed:
            return True, sealed.digest(threads=threads)
    h = blake3()
    with open(path, "rb") as f:
        while chunk := f.read(8 << 20):
            h.update(chunk)
    return False, h.digest()


def _walk(directory: str) -> list[str]:
    out = []
    for root, dirs, files in os.walk(directory):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(root, name)
            rel = os.path.relpath(full, directory).replace(os.sep, "/")
            if rel == MANIFEST_NAME or name.startswith(".") and name.endswith(".partial"):
                continue
            if os.path.islink(full) or not os.path.isfile(full):
                raise UsageError(f"{rel}: only regular files can be listed in a manifest")
            out.append(rel)
    return out


def manifest_body(entries: Sequence[Entry], identity: ModelIdentity) -> dict:
    return {
        "format": FORMAT,
        "identity": identity.to_json(),
        "files": [{"path": e.path, "size": e.size, "sealed": e.sealed, "digest": b64encode(e.digest)} for e in entries],
    }


def manifest_digest(body: dict) -> bytes:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")
    return blake3(canonical).digest()


def _scan(directory: str, threads: int | None) -> list[Entry]:
    entries = []
    for rel in _walk(directory):
        full = os.path.join(directory, *rel.split("/"))
        sealed, digest = _digest_file(full, threads)
        entries.append(Entry(rel, os.path.getsize(full), sealed, digest))
    return entries


def sign_directory(
    directory: str | os.PathLike[str], signing_keys: Sequence[SigningKey | str | os.PathLike[str]], *, threads: int | None = None
) -> str:
    """Write (atomically) a manifest of ``directory`` signed by ``signing_keys``; returns
    its path. The model identity is the one every sealed file agrees on.

    Raises UsageError (no sealed file, shards that disagree on the identity), OSError.
    """
    directory = os.fspath(directory)
    keys = to_signing_keys(signing_keys)
    if not keys:
        raise UsageError("at least one signing key is needed")
    entries = _scan(directory, threads)
    identities = set()
    for e in entries:
        if e.sealed:
            with SealedFile(os.path.join(directory, *e.path.split("/"))) as f:
                identities.add((f.header.identity.name, f.header.identity.version))
    if not identities:
        raise UsageError(f"{directory} holds no sealed file")
    if len(identities) > 1:
        raise UsageError(f"the sealed files disagree on the model identity: {sorted(identities, key=str)}")
    name, version = identities.pop()
    body = manifest_body(entries, ModelIdentity(name=name, version=version))
    digest = manifest_digest(body)
    sigs = [k.sign(digest, CONTEXT) for k in keys]
    doc = {"manifest": body, "signatures": [{"alg": s.alg, "key": b64encode(s.key), "sig": b64encode(s.sig)} for s in sigs]}
    path = os.path.join(directory, MANIFEST_NAME)
    with atomic_output(path) as fd:
        os.write(fd, json.dumps(doc, indent=1, sort_keys=True).encode("ascii") + b"\n")
    return path


@dataclass(frozen=True)
class VerifiedManifest:
    identity: ModelIdentity
    files: tuple[Entry, ...]
    signers: tuple[VerifyingKey, ...]


def parse_manifest(raw: bytes) -> tuple[dict, list[Signature], list[Entry], ModelIdentity]:
    doc = expect_keys(loads_strict(raw, "manifest"), {"manifest", "signatures"}, "manifest")
    body = expect_keys(doc["manifest"], {"format", "identity", "files"}, "manifest body")
    if body["format"] != FORMAT:
        raise FormatError(f"unknown manifest format {body['format']!r}")
    ident = expect_keys(body["identity"], set(), "manifest identity", frozenset({"name", "version", "file"}))
    if not all(isinstance(v, str) for v in ident.values()):
        raise FormatError("manifest identity values must be strings")
    if not isinstance(body["files"], list) or not isinstance(doc["signatures"], list):
        raise FormatError("manifest files and signatures must be lists")
    entries = []
    for i, item in enumerate(body["files"]):
        expect_keys(item, {"path", "size", "sealed", "digest"}, f"manifest file {i}")
        if not isinstance(item["path"], str) or type(item["size"]) is not int or not isinstance(item["sealed"], bool):
            raise FormatError(f"manifest file {i} has fields of the wrong type")
        entries.append(Entry(item["path"], item["size"], item["sealed"], b64decode(item["digest"], "file digest", 32)))
    sigs = []
    for i, s in enumerate(doc["signatures"]):
        expect_keys(s, {"alg", "key", "sig"}, f"manifest signature {i}")
        if s["alg"] != "ed25519":
            raise FormatError(f"manifest signature {i} has unknown algorithm {s['alg']!r}")
        sigs.append(Signature("ed25519", b64decode(s["key"], "signer key", 32), b64decode(s["sig"], "signature", 64)))
    return body, sigs, entries, ModelIdentity(**ident)


def verify_directory(
    directory: str | os.PathLike[str], signers: VerifyingKey | str | Sequence[VerifyingKey | str], *,
    threads: int | None = None, require_encrypted: bool = False,
) -> VerifiedManifest:  # fmt: skip
    """Check the manifest's signature and that the directory holds exactly the files it
    lists, each unchanged; with ``require_encrypted``, that every ``*.safetensors`` shard
    is sealed. Raises ManifestError (with what differs), SignatureError, NotSealedError."""
    directory = os.fspath(directory)
    trusted = to_verifying_keys(signers)
    path = os.path.join(directory, MANIFEST_NAME)
    if not os.path.isfile(path):
        raise ManifestError(f"{directory} has no {MANIFEST_NAME}", hint="sign it with `tensorseal sign DIR --sign-key K`")
    if os.path.getsize(path) > MAX_MANIFEST_SIZE:
        raise FormatError(f"{MANIFEST_NAME} is over {MAX_MANIFEST_SIZE} bytes")
    with open(path, "rb") as f:
        body, sigs, entries, identity = parse_manifest(f.read())
    digest = manifest_digest(body)
    good = [k for k in trusted if any(k.verifies(s, digest, CONTEXT) for s in sigs)]
    if not good:
        raise SignatureError("the manifest carries no valid signature from a trusted signer")
    listed = {e.path: e for e in entries}
    present = set(_walk(directory))
    missing, extra = sorted(set(listed) - present), sorted(present - set(listed))
    if missing or extra:
        parts = ([f"missing: {', '.join(missing)}"] if missing else []) + ([f"not in the manifest: {', '.join(extra)}"] if extra else [])
        raise ManifestError("the directory does not match its manifest (" + "; ".join(parts) + ")")
    for e in entries:
        full = os.path.join(directory, *e.path.split("/"))
        if os.path.getsize(full) != e.size:
            raise ManifestError(f"{e.path} changed size since the manifest was signed")
        sealed, digest = _digest_file(full, threads)
        if sealed != e.sealed or digest != e.digest:
            raise ManifestError(f"{e.path} changed since the manifest was signed")
    plain = [e.path for e in entries if e.path.endswith(".safetensors") and not e.sealed]
    if require_encrypted and plain:
        raise NotSealedError(f"{plain[0]} is not sealed and encryption is required ({len(plain)} plain shard(s))")
    return VerifiedManifest(identity, tuple(entries), tuple(good))
