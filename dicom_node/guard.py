"""Association resources: no peer may hold the node's slots or memory (PS3.8 9.3, 9.1.6 ARTIM).

pynetdicom bounds only idle time: a PDU whose bytes trickle in never times out, a PDU of any announced
length is read into memory in full, and one host may take every association slot. The guard closes
those gaps from the node's side:

- a connection that sends no A-ASSOCIATE-RQ within ``association_request_timeout_s`` is closed
  (the ARTIM timer, ``AE.acse_timeout``, set in :func:`dicom_node.node.build_ae`);
- each PDU must arrive within ``network_timeout_s`` plus its length at ``min_receive_rate`` bytes/s,
  and the association within ``association_max_s`` in all;
- a P-DATA-TF PDU longer than the agreed maximum (``max_pdu_size``), or any other PDU longer than
  :data:`MAX_CONTROL_PDU`, is refused with an A-ABORT when its header arrives, before its body is read;
- at most ``max_associations_per_host`` connections per peer address; more are closed on connect.

The guard replaces the ``recv`` of each association's :class:`pynetdicom.transport.AssociationSocket`,
which pynetdicom's DUL calls once for each PDU header (6 bytes) and once for each PDU body.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from pynetdicom.association import Association
from pynetdicom.pdu import A_ABORT_RQ
from pynetdicom.transport import AssociationSocket

LOG = logging.getLogger("dermnode.node")

#: P-DATA-TF (PS3.8 9.3.5), the only PDU type bounded by the negotiated maximum length.
P_DATA_TF = 0x04
#: Longest non-data PDU accepted (an A-ASSOCIATE-RQ with many contexts is a few KB).
MAX_CONTROL_PDU = 1 << 20
#: Bound on P-DATA-TF when ``max_pdu_size`` is 0 (unlimited by negotiation).
MAX_UNLIMITED_PDU = 64 << 20
_HEADER = 6


class GuardAbort(OSError):
    """The guard ended an association; pynetdicom treats it as a closed transport connection."""


@dataclass(frozen=True)
class AssociationLimits:
    max_pdu_size: int
    network_timeout_s: float
    association_max_s: float
    min_receive_rate: float
    max_associations_per_host: int
    #: The AE's total (pynetdicom rejects beyond it, reason 2); a per-host limit this high is off.
    max_associations: int = 10


def _abort_pdu() -> bytes:
    pdu = A_ABORT_RQ()
    pdu.source = 0x02  # service-provider initiated
    pdu.reason_diagnostic = 0x06  # invalid PDU parameter value
    return bytes(pdu.encode())


class GuardedReceive:
    """The ``recv`` of one association's socket, with the PDU length, rate and time limits."""

    def __init__(
        self, assoc_socket: AssociationSocket, limits: AssociationLimits, peer: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._assoc_socket = assoc_socket
        self._limits = limits
        self._peer = peer
        self._clock = clock
        self._deadline = clock() + limits.association_max_s
        self._next_is_header = True

    def _abort(self, why: str) -> GuardAbort:
        LOG.warning("association from %s aborted: %s", self._peer, why)
        sock = self._assoc_socket.socket
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.settimeout(1.0)
                sock.sendall(_abort_pdu())
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        return GuardAbort(why)

    def _read(self, nr_bytes: int) -> bytearray:
        sock = self._assoc_socket.socket
        if sock is None:
            return bytearray()
        limits = self._limits
        budget_end = min(self._deadline, self._clock() + limits.network_timeout_s + nr_bytes / limits.min_receive_rate)
        data = bytearray()
        try:
            while len(data) < nr_bytes:
                remaining = budget_end - self._clock()
                if remaining <= 0:
                    if budget_end >= self._deadline:
                        raise self._abort(f"the association's time budget of {limits.association_max_s:g} s is spent")
                    raise self._abort(
                        f"a PDU of {nr_bytes} bytes arrives slower than {limits.min_receive_rate:g} bytes/s "
                        f"({len(data)} received)"
                    )
                sock.settimeout(remaining)
                try:
                    chunk = sock.recv(min(nr_bytes - len(data), 65536))
                except TimeoutError:
                    continue  # the loop decides: budget spent
                if not chunk:
                    return data  # the peer closed: pynetdicom sees a short read
                data.extend(chunk)
        finally:
            with contextlib.suppress(OSError):
                sock.settimeout(limits.network_timeout_s)
        return data

    def __call__(self, nr_bytes: int) -> bytearray:
        if not self._next_is_header:
            self._next_is_header = True
            return self._read(nr_bytes)
        header = self._read(nr_bytes)
        if nr_bytes == _HEADER and len(header) == _HEADER:
            pdu_type, _, length = struct.unpack(">BBL", header)
            limit = (self._limits.max_pdu_size or MAX_UNLIMITED_PDU) if pdu_type == P_DATA_TF else MAX_CONTROL_PDU
            if length > limit:
                raise self._abort(f"PDU type 0x{pdu_type:02X} of {length} bytes exceeds the maximum of {limit}")
            self._next_is_header = False
        return header


class AssociationGuard:
    """Counts connections per peer host and installs :class:`GuardedReceive` on each one."""

    def __init__(self, limits: AssociationLimits) -> None:
        self.limits = limits
        self._lock = threading.Lock()
        self._by_host: dict[str, set[Association]] = {}

    def open(self, assoc: Association, host: str) -> bool:
        """Admit a new connection (True) or close it at once (False: its host has its share)."""
        with self._lock:
            mine = self._by_host.setdefault(host, set())
            mine.difference_update({a for a in mine if a.ident is not None and not a.is_alive()})  # ended unseen
            share = self.limits.max_associations_per_host
            admitted = len(mine) < share or share >= self.limits.max_associations
            if admitted:
                mine.add(assoc)
        assoc_socket = assoc.dul.socket
        if assoc_socket is None:
            return admitted
        if not admitted:
            LOG.warning("connection from %s closed: it already holds %d association(s), the per-host limit",
                        host, self.limits.max_associations_per_host)
            assoc_socket.close()
            return False
        assoc_socket.recv = GuardedReceive(assoc_socket, self.limits, host)  # type: ignore[method-assign]
        return True

    def close(self, assoc: Association, host: str) -> None:
        with self._lock:
            self._by_host.get(host, set()).discard(assoc)

    def count(self, host: str) -> int:
        with self._lock:
            return len(self._by_host.get(host, set()))
