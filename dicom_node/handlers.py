"""pynetdicom event handlers: association policy, C-ECHO, C-STORE; their return value is the status."""

from __future__ import annotations

import contextlib
import logging
import shutil
import socket
from dataclasses import dataclass
from typing import cast

from pynetdicom import evt
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.events import Event

from dermnode.kernel.errors import DermnodeError, SpoolError
from dermnode.kernel.settings import Settings
from dicom_node.completion import OpenAssociations
from dicom_node.guard import AssociationGuard
from dicom_node.intake import IntakeError, check_received
from dicom_node.ledger import Ledger, ReceivedInstance
from dicom_node.policy import decide
from dicom_node.sandbox import DecodeSandbox
from dicom_node.spool import Spool
from dicom_node.status import Status

LOG = logging.getLogger("dermnode.node")


def _peer(event: Event) -> tuple[str, str]:
    req = event.assoc.requestor
    title = req.ae_title or (req.primitive.calling_ae_title if req.primitive is not None else "")
    return (title or "").strip(), req.address


@dataclass
class NodeHandlers:
    """The node's behaviour on each network event; bound to the AE by :func:`handlers`."""

    settings: Settings
    spool: Spool
    ledger: Ledger
    associations: OpenAssociations
    guard: AssociationGuard
    #: Where intake decodes compressed pixel data (started and stopped by the node).
    sandbox: DecodeSandbox

    def _audit_rejection(self, sop_instance_uid: str, calling: str, reason: str) -> None:
        """Record a refusal in the ledger; a failing ledger is logged and never turns a refusal into success."""
        try:
            self.ledger.record_rejection(sop_instance_uid, calling, reason)
        except DermnodeError as e:
            LOG.error("the ledger could not audit the refusal of %s from %s: %s", sop_instance_uid or "an association",
                      calling, e)

    def _check_free_space(self, sop: str) -> None:
        """The disk watermark: refuse new instances before the disk is full, so analysis keeps room."""
        free_mb = shutil.disk_usage(self.spool.root).free // (1 << 20)
        if free_mb < self.settings.min_free_disk_mb:
            raise SpoolError(
                f"instance {sop}: {free_mb} MB free in {self.spool.root}, below the watermark of "
                f"{self.settings.min_free_disk_mb} MB (min_free_disk_mb); free space or purge finished studies"
            )

    def on_conn_open(self, event: Event) -> None:
        if not self.guard.open(event.assoc, event.assoc.requestor.address):
            return
        # Nagle costs ~40 ms per DIMSE message on loopback (DESIGN.md): turn it off.
        sock = getattr(event.assoc.dul.socket, "socket", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.associations.opened(id(event.assoc))

    def on_conn_close(self, event: Event) -> None:
        self.guard.close(event.assoc, event.assoc.requestor.address)
        self.associations.closed(id(event.assoc))

    def on_requested(self, event: Event) -> None:
        rq = event.assoc.requestor.primitive
        called = (rq.called_ae_title or "").strip() if rq is not None else ""
        calling, host = _peer(event)
        decision = decide(self.settings, called, calling, host)
        if not decision.accepted:
            assert decision.reason is not None
            LOG.warning("association rejected (reason 0x%02x): %s", decision.reason, decision.advice)
            # Fail closed: the reject goes out before anything that can fail (the audit row below).
            event.assoc.acse.send_reject(0x01, 0x01, int(decision.reason))
            event.assoc.kill()
            self._audit_rejection("", calling, f"association rejected: {decision.advice}")
            return
        LOG.info("association requested by %s@%s accepted", calling, host)

    def on_echo(self, event: Event) -> int:
        calling, host = _peer(event)
        LOG.info("C-ECHO from %s@%s", calling, host)
        return Status.SUCCESS

    def on_store(self, event: Event) -> int:
        calling, host = _peer(event)
        request = cast(C_STORE, event.request)
        affected_class = str(request.AffectedSOPClassUID or "")
        affected_sop = str(request.AffectedSOPInstanceUID or "")
        try:
            self._check_free_space(affected_sop)
            checked = check_received(
                event.dataset_path, affected_class, affected_sop, self.settings.max_image_pixels,
                sandbox=self.sandbox, max_decode_s=self.settings.max_decode_s,
            )
            path = self.spool.adopt(event.dataset_path, checked.study_uid, checked.sop_instance_uid)
            self.ledger.record_instance(
                ReceivedInstance(
                    sop_instance_uid=checked.sop_instance_uid,
                    study_uid=checked.study_uid,
                    series_uid=checked.series_uid,
                    sop_class_uid=checked.sop_class_uid,
                    transfer_syntax=checked.transfer_syntax,
                    path=path,
                    calling_ae=calling,
                    peer_host=host,
                    patient_id=checked.patient_id,
                    accession=checked.accession,
                )
            )
            self.associations.sent(id(event.assoc), checked.study_uid)
        except IntakeError as e:
            LOG.error("C-STORE from %s@%s refused with status 0x%04X: %s", calling, host, e.status, e)
            self._audit_rejection(affected_sop, calling, f"0x{e.status:04X}: {e}")
            return e.status
        except DermnodeError as e:
            LOG.error("C-STORE of %s from %s@%s failed, out of resources: %s", affected_sop, calling, host, e)
            self._audit_rejection(affected_sop, calling, f"0x{Status.OUT_OF_RESOURCES:04X}: {e}")
            return Status.OUT_OF_RESOURCES
        LOG.debug("stored %s (study %s) from %s", affected_sop, checked.study_uid, calling)
        return Status.SUCCESS


def handlers(node: NodeHandlers) -> list[tuple[evt.EventType, object]]:
    """The (event, handler) pairs to pass to ``AE.start_server``."""
    return [
        (evt.EVT_CONN_OPEN, node.on_conn_open),
        (evt.EVT_CONN_CLOSE, node.on_conn_close),
        (evt.EVT_REQUESTED, node.on_requested),
        (evt.EVT_C_ECHO, node.on_echo),
        (evt.EVT_C_STORE, node.on_store),
    ]
