"""Association policy: who may talk to us (PS3.8 9.3.4 A-ASSOCIATE-RJ reasons)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from dermnode.kernel.settings import Settings


class RejectReason(IntEnum):
    """A-ASSOCIATE-RJ service-user reasons (source 1, result 1 = rejected-permanent)."""

    CALLING_AE_NOT_RECOGNISED = 0x03
    CALLED_AE_NOT_RECOGNISED = 0x07


@dataclass(frozen=True)
class Decision:
    accepted: bool
    reason: RejectReason | None = None
    advice: str = ""


def decide(settings: Settings, called_ae: str, calling_ae: str, peer_host: str) -> Decision:
    """Accept or reject an association request; the advice tells the admin what to change."""
    called = called_ae.strip()
    calling = calling_ae.strip()
    if called != settings.ae_title:
        return Decision(
            False,
            RejectReason.CALLED_AE_NOT_RECOGNISED,
            f"called AE title {called!r} is not ours ({settings.ae_title!r}): configure the sender "
            f"{calling!r} at {peer_host} to call {settings.ae_title!r}",
        )
    matches = [p for p in settings.allowed_peers if p.ae_title == calling]
    if not matches:
        return Decision(
            False,
            RejectReason.CALLING_AE_NOT_RECOGNISED,
            f"calling AE title {calling!r} from {peer_host} is not on the allow-list: add "
            f"'--allow {calling}@{peer_host}' or an allowed_peers entry to accept it",
        )
    if not any(p.host in (None, peer_host) for p in matches):
        hosts = ", ".join(sorted({p.host or "" for p in matches}))
        return Decision(
            False,
            RejectReason.CALLING_AE_NOT_RECOGNISED,
            f"calling AE title {calling!r} is allowed only from {hosts}, but called from {peer_host}: "
            f"add '--allow {calling}@{peer_host}' if this host is legitimate",
        )
    return Decision(True)
