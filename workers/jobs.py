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

    def describe(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


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
            "destinations": [
                {"ae_title": d.ae_title, "host": d.host, "port": d.port} for d in self.destinations
            ],
        }

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> AnalysisJob:
        try:
            return cls(
                study_uid=str(message["study_uid"]),
                generation=int(message["generation"]),
                destinations=tuple(
                    Address(str(d["ae_title"]), str(d["host"]), int(d["port"]))
                    for d in message.get("destinations", [])
                ),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"malformed analysis job message {message!r}: {e}") from e
