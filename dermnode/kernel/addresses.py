"""Where a DICOM application entity is reached: one :class:`Address` type for destinations, deliveries
and the queue messages, and the AE title rule (PS3.5 6.2)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from dermnode.kernel.errors import ConfigurationError

_AE_RE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # PS3.5 6.2: 16 chars, no backslash, no control


def check_ae_title(value: str, what: str) -> str:
    """``value`` stripped, or ValueError naming ``what`` when it is not a valid AE title."""
    value = value.strip()
    if not value or not _AE_RE.match(value):
        raise ValueError(
            f"{what} {value!r} is not a valid AE title: use 1 to 16 printable ASCII characters, no backslash"
        )
    return value


@dataclass(frozen=True)
class Address:
    """A DICOM application entity reachable over the network (``tls``: DICOM over TLS, PS3.15 B.1)."""

    ae_title: str
    host: str
    port: int
    tls: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "ae_title", check_ae_title(self.ae_title, "destination AE title"))
        if not self.host:
            raise ValueError(f"destination {self.ae_title!r} needs a host (AE@HOST:PORT)")
        if not 1 <= int(self.port) <= 65535:
            raise ValueError(f"destination {self.ae_title!r}: port {self.port} is not between 1 and 65535")

    @classmethod
    def parse(cls, text: str) -> Address:
        """Parse ``AE@HOST:PORT``, or ``AE@HOST:PORT/tls`` for DICOM over TLS."""
        tls = text.endswith("/tls")
        plain = text.removesuffix("/tls")
        ae, at, rest = plain.partition("@")
        host, colon, port = rest.rpartition(":")
        if not at or not colon or not port.isdigit():
            raise ConfigurationError(
                f"destination {text!r} is not AE@HOST:PORT (for example PACS@127.0.0.1:4242) or 'sender'"
            )
        try:
            return cls(ae, host, int(port), tls)
        except ValueError as e:
            raise ConfigurationError(f"destination {text!r}: {e}") from e

    def describe(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}{'/tls' if self.tls else ''}"

    def to_message(self) -> dict[str, Any]:
        return {"ae_title": self.ae_title, "host": self.host, "port": self.port, "tls": self.tls}

    @classmethod
    def from_message(cls, d: dict[str, Any]) -> Address:
        return cls(str(d["ae_title"]), str(d["host"]), int(d["port"]), bool(d.get("tls", False)))
