"""C-STORE SCU: deliver output objects to a destination in one association.

One call is one attempt; retrying is the caller's business (the delivery queue re-queues failed attempts
under the single :class:`dermnode.kernel.retry.RetryPolicy`), so no thread ever sleeps here.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread
from pynetdicom import AE, build_context
from pynetdicom.association import Association

from dermnode.kernel.addresses import Address
from dicom_node.contexts import (
    IMPLEMENTATION_CLASS_UID,
    IMPLEMENTATION_VERSION_NAME,
    PROPOSED_OUTPUT_SOP_CLASSES,
    PROPOSED_TRANSFER_SYNTAXES,
)
from dicom_node.status import Status
from dicom_node.tls import TLSSettings, client_context

LOG = logging.getLogger("dermnode.sender")


@dataclass(frozen=True)
class DeliveryResult:
    """What one attempt achieved: ``detail`` says why it failed (or "delivered")."""

    destination: str
    delivered: bool
    detail: str


def hand_back_stolen_responses(assoc: Association) -> None:
    """Work around a race in pynetdicom (3.0.4 and its main branch): a requestor's reactor thread pauses at a
    checkpoint while ``send_c_store`` waits for the response, but the pause can be observed a moment before
    the reactor has really stopped; the reactor then takes the C-STORE-RSP off the DIMSE queue, drops it
    ("Received unexpected C-STORE service message") and ``send_c_store`` waits out the DIMSE timeout (30 s,
    then a failed attempt). Seen under CPU load in ``bench/bench_workers.py``. A response the reactor takes
    is put back on the queue, where ``send_c_store`` is waiting for it; requests are served as before.
    """
    serve_request = assoc._serve_request

    def serve(msg: object, context_id: int) -> None:
        if getattr(msg, "is_valid_response", False):
            LOG.debug("the association reactor took a %s; handed back", type(msg).__name__)
            assoc.dimse.msg_queue.put((context_id, msg))  # type: ignore[arg-type]
            return
        serve_request(msg, context_id)  # type: ignore[arg-type]

    assoc._serve_request = serve  # type: ignore[method-assign]


class StoreSender:
    """Sends files to one AE in one association per :meth:`send`.

    Re-sending is safe: outputs have deterministic UIDs, so a destination that already stored an
    object overwrites it rather than storing a duplicate.
    """

    def __init__(
        self,
        calling_ae: str,
        timeout_s: float = 30.0,
        max_pdu: int = 131072,
        tls: TLSSettings | None = None,
    ) -> None:
        self._calling_ae = calling_ae
        self._timeout = timeout_s
        self._max_pdu = max_pdu
        self._tls = client_context(tls) if tls is not None else None

    def _ae(self) -> AE:
        ae = AE(ae_title=self._calling_ae)
        ae.implementation_class_uid = IMPLEMENTATION_CLASS_UID
        ae.implementation_version_name = IMPLEMENTATION_VERSION_NAME
        ae.requested_contexts = [
            build_context(sop, list(PROPOSED_TRANSFER_SYNTAXES)) for sop in PROPOSED_OUTPUT_SOP_CLASSES
        ]
        ae.acse_timeout = self._timeout
        ae.dimse_timeout = self._timeout
        ae.network_timeout = self._timeout
        ae.maximum_pdu_size = self._max_pdu
        return ae

    def _send_once(self, dest: Address, files: Sequence[Path]) -> str | None:
        """One association for all files; returns None on success or the reason it failed."""
        if dest.tls and self._tls is None:
            return f"{dest.describe()} asks for TLS but no tls certificate is configured"
        tls_args = (self._tls, dest.host) if dest.tls and self._tls is not None else None
        assoc = self._ae().associate(dest.host, dest.port, ae_title=dest.ae_title, tls_args=tls_args)
        if not assoc.is_established:
            if assoc.is_rejected:
                return f"association rejected by {dest.describe()} (check that it knows our AE title "\
                       f"{self._calling_ae!r})"
            return f"no association with {dest.describe()} (refused, aborted or timed out)"
        hand_back_stolen_responses(assoc)
        try:
            for path in files:
                ds = dcmread(path)
                status = assoc.send_c_store(ds)
                code = int(getattr(status, "Status", -1)) if status is not None else -1
                if code == -1:
                    return f"no C-STORE response from {dest.describe()} for {ds.SOPInstanceUID}"
                if not Status.is_success_or_warning(code):
                    return f"{dest.describe()} answered C-STORE of {ds.SOPInstanceUID} with 0x{code:04X}"
            return None
        finally:
            if assoc.is_established:
                assoc.release()

    def send(self, dest: Address, files: Sequence[Path]) -> DeliveryResult:
        """One attempt to store ``files`` at ``dest``; never raises for network or peer failures."""
        try:
            failure = self._send_once(dest, files)
        except Exception as e:  # socket and encoding errors: a failed attempt like a refused association
            failure = f"{type(e).__name__}: {e}"
        if failure is None:
            LOG.info("delivered %d object(s) to %s", len(files), dest.describe())
            return DeliveryResult(dest.describe(), True, "delivered")
        LOG.warning("delivery to %s failed: %s", dest.describe(), failure)
        return DeliveryResult(dest.describe(), False, failure)
