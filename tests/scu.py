"""A pynetdicom storage SCU for tests that must send what DCMTK would refuse to (malformed data)."""

from __future__ import annotations

from collections.abc import Sequence

from pydicom import Dataset
from pynetdicom import AE


def c_store(
    port: int, ds: Dataset, transfer_syntaxes: Sequence[str] | None = None, calling: str = "PYSCU",
    called: str = "DERMNODE",
) -> int:
    """Send ``ds`` in one association and return the C-STORE status (asserts the association is accepted)."""
    ae = AE(ae_title=calling)
    syntaxes = list(transfer_syntaxes or [str(ds.file_meta.TransferSyntaxUID)])
    ae.add_requested_context(ds.SOPClassUID, syntaxes)
    assoc = ae.associate("127.0.0.1", port, ae_title=called)
    assert assoc.is_established, f"association with {called} on port {port} was not accepted"
    try:
        return int(assoc.send_c_store(ds).Status)
    finally:
        assoc.release()
