from __future__ import annotations

from pathlib import Path

from pydicom import dcmread

from dermnode.kernel.addresses import Address
from dicom_node.sender import StoreSender
from tests import dcmtk
from tests.factories import minimal_output_file


def test_one_attempt_reports_why_it_failed(tmp_path: Path) -> None:
    result = StoreSender("DERMNODE", timeout_s=5).send(
        Address("NOBODY", "127.0.0.1", dcmtk.free_port()), [minimal_output_file(tmp_path)]
    )
    assert not result.delivered
    assert "no association with NOBODY@127.0.0.1" in result.detail


def test_delivers_to_storescp(tmp_path: Path) -> None:
    scp = dcmtk.StoreSCP(tmp_path / "in")
    try:
        result = StoreSender("DERMNODE").send(
            Address(scp.ae_title, "127.0.0.1", scp.port), [minimal_output_file(tmp_path)])
        assert result.delivered and result.detail == "delivered"
        assert len(scp.wait_for(1)) == 1
    finally:
        scp.stop()


def test_a_response_the_reactor_takes_is_handed_back_to_the_waiting_store(tmp_path: Path) -> None:
    """pynetdicom's requestor reactor can take a C-STORE-RSP meant for ``send_c_store`` (a race under CPU
    load); the hook puts it back on the DIMSE queue instead of dropping it (a 30 s DIMSE timeout)."""
    from pynetdicom import AE
    from pynetdicom.dimse_primitives import C_STORE

    from dicom_node.sender import hand_back_stolen_responses

    scp = dcmtk.StoreSCP(tmp_path / "pacs", ae_title="PACS")
    try:
        ae = AE(ae_title="DERMNODE")
        ae.add_requested_context("1.2.840.10008.5.1.4.1.1.88.33")
        assoc = ae.associate("127.0.0.1", scp.port, ae_title="PACS")
        assert assoc.is_established
        try:
            hand_back_stolen_responses(assoc)
            response = C_STORE()
            response.MessageIDBeingRespondedTo = 1
            response.Status = 0x0000
            assert response.is_valid_response
            assoc._serve_request(response, 1)  # what the reactor does with a message it took
            assert assoc.dimse.get_msg(block=False) == (1, response)
            stored = assoc.send_c_store(dcmread(minimal_output_file(tmp_path / "out")))
            assert stored.Status == 0x0000  # the hooked association still stores
        finally:
            assoc.release()
    finally:
        scp.stop()
