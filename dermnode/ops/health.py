"""Health (``/healthz``: can the node keep what it acknowledges?) and readiness (``/readyz``: is it
accepting associations?), as checks that each say what is wrong."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from dermnode.kernel.errors import DermnodeError
from dermnode.kernel.settings import Settings
from dicom_node.ledger import Ledger


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class Report:
    checks: tuple[Check, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def as_dict(self) -> dict[str, object]:
        return {"status": "ok" if self.ok else "failing",
                "checks": {c.name: {"ok": c.ok, "detail": c.detail} for c in self.checks}}


class Broker:
    """The Redis broker, when one is configured: reachable? how long are the queues?"""

    def __init__(self, url: str, queues: tuple[str, ...], timeout_s: float = 2.0) -> None:
        import redis  # only with a Redis broker

        self.url = re.sub(r"//[^@/]*@", "//***@", url)  # never show the broker's password
        self._queues = queues
        self._client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)

    def ping(self) -> None:
        try:
            self._client.ping()
        except Exception as e:  # redis-py raises its own ConnectionError / TimeoutError family
            raise DermnodeError(f"broker {self.url} is not reachable: {e}") from e

    def queue_lengths(self) -> Mapping[str, int]:
        try:
            return {name: int(self._client.llen(name)) for name in self._queues}
        except Exception:
            return {}


def broker_for(settings: Settings) -> Broker | None:
    if settings.broker_url and settings.broker_url.startswith(("redis://", "rediss://")):
        return Broker(settings.broker_url, (settings.queue_name,))
    return None


def health(settings: Settings, ledger: Ledger, broker: Broker | None,
           disk_free: Callable[[str], int] = lambda p: shutil.disk_usage(p).free) -> Report:
    """Ledger writable, spool file system above ``spool_min_free_mb``, broker reachable when configured."""
    checks = []
    try:
        ledger.check_writable()
        checks.append(Check("ledger", True, f"{ledger.path} writable"))
    except DermnodeError as e:
        checks.append(Check("ledger", False, str(e)))
    try:
        free_mb = disk_free(str(settings.spool_dir)) / 2**20
        ok = free_mb >= settings.spool_min_free_mb
        checks.append(Check("spool", ok, f"{free_mb:.0f} MB free in {settings.spool_dir} (watermark "
                                         f"{settings.spool_min_free_mb:g} MB)"
                                         + ("" if ok else ": free space or purge old studies (dermnode purge)")))
    except OSError as e:
        checks.append(Check("spool", False, f"cannot stat {settings.spool_dir}: {e}"))
    if broker is not None:
        try:
            broker.ping()
            checks.append(Check("broker", True, f"{broker.url} reachable"))
        except DermnodeError as e:
            checks.append(Check("broker", False, str(e)))
    return Report(tuple(checks))
