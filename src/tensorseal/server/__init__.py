"""The tensorseal HTTPS server (``tensorseal serve``; ``pip install 'tensorseal[server]'``).

* :mod:`.catalogue`: the sealed models under a directory, by name and version;
* :mod:`.licences`: the licence database (SQLAlchemy: SQLite or PostgreSQL) with atomic
  seat limits and revocation;
* :mod:`.app`: the aiohttp application: TLS 1.3 with client certificates, models with
  Range and ETags, signed manifests, ``POST /activate``.

The client side is :mod:`tensorseal.client` (``tensorseal pull https://...``,
``tensorseal activate``). docs/SERVING.md walks through it.
"""

from __future__ import annotations

__all__ = ["ServerConfig", "run"]


def __getattr__(name: str) -> object:  # aiohttp is imported only when the server is used
    if name in __all__:
        from . import app

        return getattr(app, name)
    raise AttributeError(name)
