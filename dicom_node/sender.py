"""C-STORE SCU: deliver output objects to a destination, with bounded retries and back-off."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread
from pynetdicom import AE, build_context

from dicom_node.contexts import (
    IMPLEMENTATION_CLASS_UID,
    IMPLEMENTATION_VERSION_NAME,
    PROPOSED_OUTPUT_SOP_CLASSES,
    PROPOSED_TRANSFER_SYNTAXES,
)
from dicom_node.tls import TLSSettings, client_context
from workers.jobs import Address

LOG = logging.getLogger("dermnode.sender")


@dataclass(frozen=True)
class DeliveryResult:
    destination: str
    delivered: bool
    attempts: int
    detail: str


class StoreSender:
    """Sends files to one AE per association; retries the whole batch with exponential back-off.

    Re-sending is safe: outputs have deterministic UIDs, so a destination that already stored an
    object overwrites it rather than storing a duplicate.
    """

    def __init__(
        self,
        calling_ae: str,
        attempts: int = 5,
        backoff_s: float = 2.0,
        timeout_s: float = 30.0,
        max_pdu: int = 131072,
        sleep: Callable[[float], None] = time.sleep,
        tls: TLSSettings | None = None,
    ) -> None:
        self._calling_ae = calling_ae
        self._attempts = attempts
        self._backoff = backoff_s
        self._timeout = timeout_s
        self._max_pdu = max_pdu
        self._sleep = sleep
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
        try:
            for path in files:
                ds = dcmread(path)
                status = assoc.send_c_store(ds)
                code = int(getattr(status, "Status", -1)) if status is not None else -1
                if code == -1:
                    return f"no C-STORE response from {dest.describe()} for {ds.SOPInstanceUID}"
                if code != 0x0000 and not (0xB000 <= code <= 0xBFFF):
                    return f"{dest.describe()} answered C-STORE of {ds.SOPInstanceUID} with 0x{code:04X}"
            return None
        finally:
            if assoc.is_established:
                assoc.release()

    def send(self, dest: Address, files: Sequence[Path]) -> DeliveryResult:
        reason = "nothing sent"
        for attempt in range(1, self._attempts + 1):
            try:
                failure = self._send_once(dest, files)
            except Exception as e:  # socket and encoding errors: retried like a refused association
                failure = f"{type(e).__name__}: {e}"
            if failure is None:
                LOG.info("delivered %d object(s) to %s (attempt %d)", len(files), dest.describe(), attempt)
                return DeliveryResult(dest.describe(), True, attempt, "delivered")
            reason = failure
            LOG.warning("delivery to %s failed (attempt %d/%d): %s", dest.describe(), attempt, self._attempts,
                        failure)
            if attempt < self._attempts:
                self._sleep(self._backoff * (2 ** (attempt - 1)))
        return DeliveryResult(dest.describe(), False, self._attempts, reason)
