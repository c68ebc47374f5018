"""WebSub content signatures: ``X-Hub-Signature: <alg>=<hex HMAC of the body>``
(pure; no I/O).

The hub signs each delivery with the secret we gave it when subscribing.
sha1 is what WebSub 0.4 hubs send; the 1.0 recommendation adds sha256,
sha384 and sha512. Comparison is constant-time, so a forger learns nothing
from how fast a wrong signature is refused.
"""

from __future__ import annotations

import hmac
from typing import Literal

ALGORITHMS = ("sha1", "sha256", "sha384", "sha512")

SignatureCheck = Literal["ok", "missing", "malformed", "unsupported", "mismatch"]


def sign(body: bytes, secret: str, algorithm: str = "sha256") -> str:
    """The header value a hub would send for ``body``."""
    digest = hmac.new(secret.encode(), body, algorithm).hexdigest()
    return f"{algorithm}={digest}"


def check_signature(header: str | None, body: bytes, secret: str) -> SignatureCheck:
    """Does ``header`` sign ``body`` with ``secret``? Anything but "ok" is a reject."""
    if not header:
        return "missing"
    algorithm, sep, given = header.strip().partition("=")
    algorithm = algorithm.strip().lower()
    if not sep or not given:
        return "malformed"
    if algorithm not in ALGORITHMS:
        return "unsupported"
    expected = hmac.new(secret.encode(), body, algorithm).hexdigest()
    # compare_digest wants ASCII on both sides; a non-hex header just fails.
    given_bytes = given.strip().lower().encode("ascii", "replace")
    return "ok" if hmac.compare_digest(expected.encode(), given_bytes) else "mismatch"
