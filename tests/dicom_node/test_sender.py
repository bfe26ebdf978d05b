from __future__ import annotations

from pathlib import Path

from dicom_node.sender import StoreSender
from tests import dcmtk
from tests.factories import minimal_output_file
from workers.jobs import Address


def test_retries_with_exponential_backoff_then_reports_failure(tmp_path: Path) -> None:
    sleeps: list[float] = []
    sender = StoreSender("DERMNODE", attempts=3, backoff_s=0.5, timeout_s=5, sleep=sleeps.append)
    result = sender.send(Address("NOBODY", "127.0.0.1", dcmtk.free_port()), [minimal_output_file(tmp_path)])
    assert not result.delivered and result.attempts == 3
    assert "no association with NOBODY@127.0.0.1" in result.detail
    assert sleeps == [0.5, 1.0]


def test_delivers_to_storescp(tmp_path: Path) -> None:
    scp = dcmtk.StoreSCP(tmp_path / "in")
    try:
        result = StoreSender("DERMNODE", attempts=2, backoff_s=0).send(
            Address(scp.ae_title, "127.0.0.1", scp.port), [minimal_output_file(tmp_path)])
        assert result.delivered and result.attempts == 1
        assert len(scp.wait_for(1)) == 1
    finally:
        scp.stop()
