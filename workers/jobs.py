"""The message a complete study becomes on the queue (JSON only)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Address:
    """A DICOM application entity reachable over the network."""

    ae_title: str
    host: str
    port: int
    tls: bool = False

    def describe(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}{'/tls' if self.tls else ''}"

    def to_message(self) -> dict[str, Any]:
        return {"ae_title": self.ae_title, "host": self.host, "port": self.port, "tls": self.tls}

    @classmethod
    def from_message(cls, d: dict[str, Any]) -> Address:
        return cls(str(d["ae_title"]), str(d["host"]), int(d["port"]), bool(d.get("tls", False)))


@dataclass(frozen=True)
class AnalysisJob:
    """Analyse generation ``generation`` of a study and deliver to ``destinations``."""

    study_uid: str
    generation: int
    destinations: tuple[Address, ...]

    def to_message(self) -> dict[str, Any]:
        return {
            "study_uid": self.study_uid,
            "generation": self.generation,
            "destinations": [d.to_message() for d in self.destinations],
        }

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> AnalysisJob:
        try:
            return cls(
                study_uid=str(message["study_uid"]),
                generation=int(message["generation"]),
                destinations=tuple(Address.from_message(d) for d in message.get("destinations", [])),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"malformed analysis job message {message!r}: {e}") from e
