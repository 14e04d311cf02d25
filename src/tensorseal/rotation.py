"""Key rotation: rewrap (new recipient stanzas, same data) and rekey (new file key).

``rewrap`` touches only the head slot that is not in use, then clears the old one
(docs/FORMAT.md section 19): its cost does not depend on the model size, and a crash at
any point leaves a file that opens with the old or the new recipients. ``rekey`` draws a
new file key and re-encrypts every segment, streaming, into a temp file that replaces the
original only when complete.
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ._atomic import atomic_output
from .errors import IncorrectIdentityError, UsageError
from .files import IdentityArg
from .format import constants as C
from .format.header import Header, Stanza, encode_header, pad_header, slot_offset
from .format.segments import Segment
from .reader import SealedFile
from .recipients import Identity, KeyContext, Recipient, to_recipients
from .signing import SigningKey, to_signing_keys
from .writer import SealOptions, head_bytes, write_sealed

__all__ = ["RewrapResult", "rekey", "rewrap"]


@dataclass(frozen=True)
class RewrapResult:
    header: Header
    kept: int  # stanzas kept from the file
    added: int
    removed: int
    in_place: bool  # False: the new header did not fit its slot and the file was copied
    dropped_signatures: int


def _removes(item: Recipient | Identity, stanza: Stanza, context: KeyContext) -> bool:
    """Whether ``item`` names ``stanza``: a recipient that can tell (key services name their
    key in the stanza), or an identity that opens it."""
    matches: Callable[[Stanza], bool] | None = getattr(item, "matches", None)
    if matches is not None:
        return matches(stanza)
    unwrap = getattr(item, "unwrap", None)
    if unwrap is None:
        raise UsageError(
            f"{type(item).__name__} stanzas do not name their recipient",
            hint="remove them with the recipient's identity (--remove-identity FILE), or list the new recipients with -r",
        )
    try:
        unwrap([stanza], context)
        return True
    except IncorrectIdentityError:
        return False


def _new_stanzas(
    header: Header, file_key: bytes, recipients: Sequence[Recipient | str] | None,
    add: Sequence[Recipient | str], remove: Sequence[Recipient | Identity],
) -> tuple[list[Stanza], int, int, int]:  # fmt: skip
    context = KeyContext(header.identity)
    kept = [] if recipients is not None else list(header.recipients)
    removed = 0
    for item in remove:
        before = len(kept)
        kept = [s for s in kept if not _removes(item, s, context)]
        if len(kept) == before:
            raise UsageError(f"{item!r} matches none of the file's recipients")
        removed += before - len(kept)
    if recipients is not None:
        removed = len(header.recipients)
    new_recipients = [*(to_recipients(recipients) if recipients is not None else []), *(to_recipients(add) if add else [])]
    added = [s for r in new_recipients for s in r.wrap(file_key, context)]
    stanzas = kept + added
    if not stanzas:
        raise UsageError("the file would have no recipient left")
    if len(stanzas) > C.MAX_STANZAS:
        raise UsageError(f"more than {C.MAX_STANZAS} recipient stanzas")
    if any(s.type == "scrypt" for s in stanzas) and len(stanzas) != 1:
        raise UsageError("a passphrase cannot be combined with other recipients")
    return stanzas, len(kept), len(added), removed


def _fsync(fd: int, durable: bool) -> None:
    if durable:
        os.fsync(fd)


def rewrap(
    path: str | os.PathLike[str],
    identities: IdentityArg | None,
    *,
    recipients: Sequence[Recipient | str] | None = None,
    add: Sequence[Recipient | str] = (),
    remove: Sequence[Recipient | Identity] = (),
    durable: bool = True,
    _stop_after: int | None = None,
) -> RewrapResult:
    """Change who can open ``path`` without touching its data. ``recipients``: the new
    recipients, replacing every stanza; else the file's stanzas are kept, minus those that
    ``remove`` names (key-service recipients, or identities that open them), plus ``add``.
    Signatures are removed (they signed the old stanzas): sign again with ``sign_file``.

    A removed recipient who kept the file key can still read the data; after a key
    compromise use :func:`rekey`. ``_stop_after`` (tests) stops after that protocol step.
    Raises UsageError, and the errors of opening the file with ``identities``.
    """
    # with no change asked for, the stanzas are written again: that repairs a damaged slot
    fd = os.open(path, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # one rewrap at a time; readers need no lock
        with SealedFile(path) as sealed:
            sealed.unlock(identities)
            h, hlen = sealed.header, sealed.header_len
            stanzas, kept, added, removed = _new_stanzas(h, sealed.file_key, recipients, add, remove)
            generation = max(c.header.generation for c in sealed.candidates) + 1
            new = dataclasses.replace(h, recipients=tuple(stanzas), generation=generation)
            raw = encode_header(new)
            signatures = len(sealed.signatures)
            if len(raw) > hlen:  # no room in the slot: write a new file with a larger one
                _rewrite_with_new_head(sealed, new, durable)
                return RewrapResult(new, kept, added, removed, False, signatures)
            area = pad_header(raw, hlen)
            head = area + sealed.header_mac(area)
            current, spare = sealed.slot, 1 - sealed.slot
        steps = [
            lambda: os.ftruncate(fd, h.file_size) if signatures else None,  # 1: signatures covered the old stanzas
            lambda: os.pwrite(fd, head, slot_offset(spare, hlen)),  # 2: the new head, in the spare slot
            lambda: os.pwrite(fd, bytes(hlen + C.MAC_SIZE), slot_offset(current, hlen)),  # 3: clear the old one
        ]
        for number, step in enumerate(steps, 1):
            step()
            _fsync(fd, durable)
            if _stop_after == number:
                break
        return RewrapResult(new, kept, added, removed, True, signatures)
    finally:
        os.close(fd)


def _rewrite_with_new_head(sealed: SealedFile, header: Header, durable: bool) -> None:
    """The slow path of rewrap: a copy with room for the new header (data copied as is)."""
    raw = encode_header(header)
    hlen = len(raw) + C.HEADER_RESERVE
    index = sealed.index_section
    shift = slot_offset(C.HEAD_SLOTS, hlen) - slot_offset(C.HEAD_SLOTS, sealed.header_len)
    tags_offset = header.tags_offset + shift
    data_offset = -(-(tags_offset + header.tags_length) // C.DATA_ALIGNMENT) * C.DATA_ALIGNMENT
    header = dataclasses.replace(header, tags_offset=tags_offset, data_offset=data_offset)
    raw = encode_header(header)
    if len(raw) > hlen:  # the offsets grew by a digit or two: the reserve absorbs it
        raise UsageError("header does not fit after relayout")  # pragma: no cover (4096 spaces of reserve)
    area = pad_header(raw, hlen)
    front = head_bytes(area, sealed.mac_function, index)
    with atomic_output(sealed.path, durable=durable) as out:
        os.pwrite(out, front, 0)
        os.pwrite(out, sealed.tag_table, tags_offset)
        os.ftruncate(out, data_offset)
        src_off, dst_off, left = sealed.header.data_offset, data_offset, header.data_length
        src = sealed.fileno()
        while left:
            n = os.copy_file_range(src, out, min(left, 1 << 30), src_off, dst_off)
            if n <= 0:
                raise UsageError("the file shrank while it was being rewrapped")
            src_off, dst_off, left = src_off + n, dst_off + n, left - n


def rekey(
    path: str | os.PathLike[str],
    identities: IdentityArg | None,
    recipients: Sequence[Recipient | str],
    *,
    output: str | os.PathLike[str] | None = None,
    threads: int | None = None,
    sign_with: Sequence[SigningKey | str | os.PathLike[str]] = (),
    durable: bool = True,
) -> Header:
    """Re-encrypt ``path`` under a new file key for ``recipients``, streaming segment by
    segment into a temp file renamed onto ``output`` (default: ``path`` itself) when
    complete. Cipher, segment size, index visibility, plain tensors and model identity
    are kept. Raises UsageError, and the errors of opening and decrypting the file."""
    with SealedFile(path) as sealed:
        sealed.unlock(identities)
        h = sealed.header
        options = SealOptions(cipher=h.cipher, segment_size=h.segment_size, public_index=not h.index_encrypted,
                              identity=h.identity)  # fmt: skip
        lengths = [run.length for run in sealed.runs]

        def source(seg: Segment, scratch: memoryview) -> memoryview:
            sealed.decrypt_segment(seg, scratch)
            return scratch

        return write_sealed(
            path if output is None else output, mode=h.mode, lengths=lengths, source=source, recipients=recipients,
            index=sealed.index.raw if h.mode == "tensors" else b"", options=options, threads=threads,
            durable=durable, signers=to_signing_keys(sign_with), plain=h.plain,
        )  # fmt: skip
