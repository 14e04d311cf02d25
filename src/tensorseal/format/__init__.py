"""Sealed format v1: strict parsing and writing, key schedule, segment layout.

No file I/O policy and no key handling beyond the format's own key schedule live here.
"""
