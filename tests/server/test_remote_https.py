"""safe_open straight from the model server over mutual TLS: the header with one range
request, then only the tensors asked for (fsspec over aiohttp, the client's own TLS 1.3
context with its certificate)."""

from __future__ import annotations

import numpy as np
import pytest

import tensorseal
from tensorseal.errors import NoIdentityMatchError
from tensorseal.recipients import X25519Identity
from tensorseal.tls import client_context

pytest.importorskip("fsspec")


def test_safe_open_over_https_with_a_client_certificate(server, certs, vendor):
    ctx = client_context(certs.client_cert, certs.client_key, certs.ca)
    url = server.url + "/models/acme-llm/1.0"
    with tensorseal.safe_open(url, "np", [vendor.master], storage_options={"ssl": ctx}, expect_name="acme-llm") as f:
        np.testing.assert_array_equal(f.get_tensor("b"), vendor.tensors["b"])
        np.testing.assert_array_equal(f.get_slice("w")[:10], vendor.tensors["w"][:10])
    with pytest.raises(NoIdentityMatchError):
        tensorseal.safe_open(url, "np", [X25519Identity.generate()], storage_options={"ssl": ctx})


def test_safe_open_over_https_without_a_client_certificate_fails(server, certs, vendor):
    import ssl

    no_cert = ssl.create_default_context(cafile=str(certs.ca))
    with pytest.raises(OSError):  # the handshake fails (aiohttp's connection errors are OSErrors)
        tensorseal.safe_open(server.url + "/models/acme-llm/1.0", "np", [vendor.master], storage_options={"ssl": no_cert})
