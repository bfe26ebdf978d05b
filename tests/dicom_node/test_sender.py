from __future__ import annotations

from pathlib import Path

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
