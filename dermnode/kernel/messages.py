"""The JSON messages on the queues: a complete study to analyse, and one delivery to one destination.

Both the node (producer) and the workers (consumers) import these; they are the contract between them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from dermnode.kernel.addresses import Address


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


@dataclass(frozen=True)
class DeliveryJob:
    """Send the outputs of one study generation to one destination; ``attempt`` counts from 1."""

    study_uid: str
    generation: int
    destination: Address
    attempt: int = 1

    def to_message(self) -> dict[str, Any]:
        return {"study_uid": self.study_uid, "generation": self.generation, "attempt": self.attempt,
                "destination": self.destination.to_message()}

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> DeliveryJob:
        try:
            return cls(str(message["study_uid"]), int(message["generation"]),
                       Address.from_message(message["destination"]), int(message.get("attempt", 1)))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"malformed delivery job message {message!r}: {e}") from e

    def next_attempt(self) -> DeliveryJob:
        return replace(self, attempt=self.attempt + 1)
