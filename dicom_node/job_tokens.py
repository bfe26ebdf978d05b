"""Credentials of the worker API: one token per analysis job, scoped to one study generation.

The node signs ``study UID, generation, expiry`` with HMAC-SHA256 and a key only it holds (created 0600 in
its data directory on first start); the token travels to the worker inside the job message. A token lets
its bearer read that study's images and report results for that generation, nothing else, until it
expires. No worker needs a configured secret, and a leaked token exposes one study for a bounded time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dermnode.kernel.errors import DermnodeError
from dermnode.kernel.files import PRIVATE_FILE_MODE, private_dir

KEY_BYTES = 32
#: A job waits in the broker at most this long before its token is refused (the node re-queues stalled
#: studies with a fresh token long before).
DEFAULT_LIFETIME_S = 24 * 3600.0


class TokenError(DermnodeError):
    """A worker API token is missing, forged, expired or for another study."""


@dataclass(frozen=True)
class Grant:
    study_uid: str
    generation: int
    expires: float


def load_or_create_key(path: Path) -> bytes:
    """The signing key at ``path``: created once (0600), read afterwards."""
    private_dir(path.parent)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, PRIVATE_FILE_MODE)
    except FileExistsError:
        key = path.read_bytes()
        if len(key) != KEY_BYTES:
            raise DermnodeError(f"{path} is not a worker API key ({len(key)} bytes): delete it and restart the "
                                "node (running jobs will be queued again with new tokens)") from None
        return key
    key = secrets.token_bytes(KEY_BYTES)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
        f.flush()
        os.fsync(f.fileno())
    return key


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class JobTokens:
    """Issues and checks job tokens with one key."""

    def __init__(self, key: bytes, lifetime_s: float = DEFAULT_LIFETIME_S,
                 clock: Callable[[], float] = time.time) -> None:
        self._key = key
        self._lifetime = lifetime_s
        self._clock = clock

    def _sign(self, body: str) -> str:
        return _b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest())

    def issue(self, study_uid: str, generation: int) -> str:
        body = _b64(json.dumps({"s": study_uid, "g": generation, "e": round(self._clock() + self._lifetime)},
                               separators=(",", ":")).encode())
        return f"{body}.{self._sign(body)}"

    def check(self, token: str | None, study_uid: str, generation: int | None = None) -> Grant:
        """The grant of ``token`` if it is genuine, unexpired and for ``study_uid`` (and ``generation``)."""
        if not token:
            raise TokenError("no token: send Authorization: Bearer <the token of the job message>")
        body, _, signature = token.partition(".")
        if not hmac.compare_digest(signature.encode(), self._sign(body).encode()):
            raise TokenError("the token is not one this node issued (was the node's worker-api.key replaced?)")
        try:
            claims = json.loads(_unb64(body))
            grant = Grant(str(claims["s"]), int(claims["g"]), float(claims["e"]))
        except (ValueError, KeyError, TypeError) as e:
            raise TokenError("the token is malformed") from e
        if grant.expires < self._clock():
            raise TokenError("the token has expired: the node queues the study again with a new one")
        if grant.study_uid != study_uid or (generation is not None and grant.generation != generation):
            raise TokenError("the token is for another study or generation")
        return grant
