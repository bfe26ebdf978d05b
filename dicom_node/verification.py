"""C-ECHO SCU (Verification Service Class, PS3.4 Annex A): can this node reach a destination?

The administrator's test of a destination (``dermnode echo DEST``, ``POST /api/destinations/{ae}/echo``)
uses the same AE title, timeouts and TLS as the deliveries, so a success means a delivery can associate.
"""

from __future__ import annotations

from dataclasses import dataclass

from pynetdicom import AE

from dermnode.kernel.addresses import Address
from dermnode.kernel.settings import Settings
from dicom_node.contexts import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME, VERIFICATION_SOP_CLASS
from dicom_node.status import Status
from dicom_node.tls import client_context


@dataclass(frozen=True)
class EchoResult:
    destination: str
    ok: bool
    detail: str


def echo(settings: Settings, dest: Address) -> EchoResult:
    """One association with one C-ECHO; never raises for network or peer failures."""
    ae = AE(ae_title=settings.ae_title)
    ae.implementation_class_uid = IMPLEMENTATION_CLASS_UID
    ae.implementation_version_name = IMPLEMENTATION_VERSION_NAME
    ae.add_requested_context(VERIFICATION_SOP_CLASS)
    for attr in ("acse_timeout", "dimse_timeout", "network_timeout"):
        setattr(ae, attr, settings.network_timeout_s)
    where = dest.describe()
    if dest.tls and settings.tls is None:
        return EchoResult(where, False, f"{where} asks for TLS but no tls certificate is configured")
    tls_args = (client_context(settings.tls), dest.host) if dest.tls and settings.tls is not None else None
    try:
        assoc = ae.associate(dest.host, dest.port, ae_title=dest.ae_title, tls_args=tls_args)
    except Exception as e:  # e.g. TLS or address errors: a failed echo like a refused association
        return EchoResult(where, False, f"{type(e).__name__}: {e}")
    if not assoc.is_established:
        if assoc.is_rejected:
            return EchoResult(where, False, f"association rejected by {where} (check that it knows our AE title "
                                            f"{settings.ae_title!r})")
        return EchoResult(where, False, f"no association with {where} (refused, aborted or timed out)")
    try:
        status = assoc.send_c_echo()
        code = int(getattr(status, "Status", -1)) if status is not None else -1
    finally:
        if assoc.is_established:
            assoc.release()
    if code != Status.SUCCESS:
        return EchoResult(where, False, f"{where} answered C-ECHO with 0x{code:04X}" if code >= 0
                          else f"no C-ECHO response from {where}")
    return EchoResult(where, True, "C-ECHO succeeded")
