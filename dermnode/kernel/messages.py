"""The messages between the node and its workers: the contract both sides import.

- :class:`AnalysisJob` travels on the broker (JSON): analyse generation N of a study; for a worker on another
  host it names where the node's worker API is and carries a credential scoped to that study generation.
- :class:`Claim` and :class:`AnalysisReport` travel back over the worker API (JSON): what the worker may read,
  and what it produced. The worker never writes the node's ledger, spool or outbox itself.
- :class:`DeliveryJob` stays inside the node: one delivery of a generation's outputs to one destination.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from dermnode.kernel.addresses import Address


@dataclass(frozen=True)
class NodeEndpoint:
    """Where a remote worker reaches the node (its worker API) and the token that lets it in for one job."""

    url: str
    token: str
    heartbeat_s: float

    def to_message(self) -> dict[str, Any]:
        return {"url": self.url, "token": self.token, "heartbeat_s": self.heartbeat_s}

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> NodeEndpoint:
        return cls(str(message["url"]), str(message["token"]), float(message["heartbeat_s"]))


@dataclass(frozen=True)
class OutputOptions:
    """The node's settings that shape the outputs (so every worker builds the same UIDs and objects)."""

    uid_prefix: str
    attention: bool = True

    def to_message(self) -> dict[str, Any]:
        return {"uid_prefix": self.uid_prefix, "attention": self.attention}

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> OutputOptions:
        return cls(str(message["uid_prefix"]), bool(message.get("attention", True)))


@dataclass(frozen=True)
class AnalysisJob:
    """Analyse generation ``generation`` of a study; ``node`` is None when the worker runs inside the node."""

    study_uid: str
    generation: int
    node: NodeEndpoint | None = None
    options: OutputOptions | None = None

    def to_message(self) -> dict[str, Any]:
        message: dict[str, Any] = {"study_uid": self.study_uid, "generation": self.generation}
        if self.node is not None:
            message["node"] = self.node.to_message()
        if self.options is not None:
            message["options"] = self.options.to_message()
        return message

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> AnalysisJob:
        try:
            node = message.get("node")
            options = message.get("options")
            return cls(
                study_uid=str(message["study_uid"]),
                generation=int(message["generation"]),
                node=NodeEndpoint.from_message(node) if node else None,
                options=OutputOptions.from_message(options) if options else None,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ValueError(f"malformed analysis job message: {e}") from e  # no token in logs


@dataclass(frozen=True)
class InstanceRef:
    """One instance the worker may retrieve (WADO-RS: studies/{study}/series/{series}/instances/{sop})."""

    study_uid: str
    series_uid: str
    sop_instance_uid: str

    def to_message(self) -> dict[str, str]:
        return {"study_uid": self.study_uid, "series_uid": self.series_uid, "sop_instance_uid": self.sop_instance_uid}

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> InstanceRef:
        return cls(str(message["study_uid"]), str(message["series_uid"]), str(message["sop_instance_uid"]))


@dataclass(frozen=True)
class Claim:
    """The node's answer to a worker that starts a job: the images to analyse and the earlier reports
    of the study (the new report names them as predecessors)."""

    instances: tuple[InstanceRef, ...]
    previous_reports: tuple[InstanceRef, ...] = ()

    def to_message(self) -> dict[str, Any]:
        return {"instances": [i.to_message() for i in self.instances],
                "previous_reports": [r.to_message() for r in self.previous_reports]}

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> Claim:
        try:
            return cls(tuple(InstanceRef.from_message(i) for i in message["instances"]),
                       tuple(InstanceRef.from_message(r) for r in message.get("previous_reports", [])))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"malformed claim: {e}") from e


@dataclass(frozen=True)
class OutputRef:
    """An output the worker stored (STOW-RS) on the node, and its kind (``seg``, ``attention-seg``,
    ``attention-levels-seg``, ``sr``: also the send order)."""

    sop_instance_uid: str
    kind: str


@dataclass(frozen=True)
class NotAnalysedRef:
    sop_instance_uid: str
    reason: str


@dataclass(frozen=True)
class AnalysisReport:
    """What a worker reports at the end of a job: its stored outputs and left-out images, or why it failed."""

    outputs: tuple[OutputRef, ...] = ()
    not_analysed: tuple[NotAnalysedRef, ...] = field(default=())
    failure: str = ""

    def to_message(self) -> dict[str, Any]:
        return {
            "outputs": [{"sop_instance_uid": o.sop_instance_uid, "kind": o.kind} for o in self.outputs],
            "not_analysed": [{"sop_instance_uid": n.sop_instance_uid, "reason": n.reason} for n in self.not_analysed],
            "failure": self.failure,
        }

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> AnalysisReport:
        try:
            return cls(
                tuple(OutputRef(str(o["sop_instance_uid"]), str(o["kind"])) for o in message.get("outputs", [])),
                tuple(NotAnalysedRef(str(n["sop_instance_uid"]), str(n["reason"]))
                      for n in message.get("not_analysed", [])),
                str(message.get("failure", "")),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ValueError(f"malformed analysis report: {e}") from e


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
