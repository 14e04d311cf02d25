"""Selective encryption: which tensors of a file stay in clear.

Patterns are shell-style globs matched against whole tensor names (``fnmatch``, case
sensitive; ``*`` also matches dots). ``encrypt_only`` keeps every tensor that matches none
of its patterns in clear; ``plain`` keeps the tensors that match in clear. Plain tensors
are still authenticated (docs/FORMAT.md section 10.4). A pattern that matches no tensor is
an error, never a silently plain file, and so is a selection that would encrypt nothing.
"""

from __future__ import annotations

import glob
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

from .errors import UsageError


@dataclass(frozen=True)
class Selection:
    """The tensors (numbers in data order) left in clear, and the patterns that matched."""

    plain: frozenset[int]
    matched: frozenset[str]


def exact(names: Iterable[str]) -> tuple[str, ...]:
    """Patterns that match exactly these names (glob characters escaped)."""
    return tuple(glob.escape(n) for n in names)


def select(
    names: Sequence[str], sizes: Sequence[int], encrypt_only: Sequence[str] = (), plain: Sequence[str] = (),
    *, where: str = "the file", require_match: bool = True,
) -> Selection:  # fmt: skip
    """Apply the patterns to ``names`` (with their byte ``sizes``), in data order.

    Raises UsageError if a pattern matches nothing (unless ``require_match`` is false: a
    model directory checks that over all its shards) or if no byte would be encrypted.
    """
    if not encrypt_only and not plain:
        return Selection(frozenset(), frozenset())
    matched: set[str] = set()
    left_plain: set[int] = set()
    for i, name in enumerate(names):
        hits_only = [p for p in encrypt_only if fnmatchcase(name, p)]
        hits_plain = [p for p in plain if fnmatchcase(name, p)]
        matched.update(hits_only, hits_plain)
        if (encrypt_only and not hits_only) or hits_plain:
            left_plain.add(i)
    if require_match:
        check_all_matched(encrypt_only, plain, matched, where)
    left_plain = {i for i in left_plain if sizes[i] > 0}  # an empty tensor has nothing to store
    if sum(sizes) and sum(sizes[i] for i in left_plain) == sum(sizes):
        raise UsageError(
            f"the selection leaves every tensor of {where} unencrypted",
            hint="--encrypt-only/--plain must leave at least one tensor with data encrypted",
        )
    return Selection(frozenset(left_plain), frozenset(matched))


def check_all_matched(encrypt_only: Sequence[str], plain: Sequence[str], matched: Iterable[str], where: str) -> None:
    """Raises UsageError naming the first pattern that matched no tensor."""
    seen = set(matched)
    for flag, patterns in (("--encrypt-only", encrypt_only), ("--plain", plain)):
        for p in patterns:
            if p not in seen:
                raise UsageError(f"{flag} {p!r} matches no tensor in {where}", hint="patterns are globs on tensor names")
