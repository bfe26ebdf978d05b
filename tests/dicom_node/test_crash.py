"""kill -9 of a receiving node: nothing acknowledged is lost, nothing unacknowledged stays (issue 10).

A real ``dermnode serve`` process (Redis broker, no worker, so nothing but intake runs) is SIGKILLed
while a pynetdicom sender is mid-stream; restarted on the same data directory it must hold every
acknowledged instance in its ledger and no spooled file that the ledger does not record.
"""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import pytest
import redis
from pynetdicom import AE

from dicom_node.ledger import Ledger
from tests.factories import DERMOSCOPY_SOP_CLASS, dermoscopy_dataset
from tests.processes import DermnodeProcess

REDIS_URL = "redis://127.0.0.1:6379/0"


def _serve(data_dir: Path) -> list[str]:
    return ["serve", "--port", "0", "--bind", "127.0.0.1", "--allow", "PYSCU", "--data-dir", str(data_dir),
            "--broker", REDIS_URL, "--quiet-period", "3600"]


def _send(port: int, acknowledged: list[str], enough: threading.Event, count: int) -> None:
    ae = AE(ae_title="PYSCU")
    ae.add_requested_context(DERMOSCOPY_SOP_CLASS, "1.2.840.10008.1.2.1")
    assoc = ae.associate("127.0.0.1", port, ae_title="DERMNODE")
    try:
        study = f"2.25.{uuid.uuid4().int}"
        for i in range(count):
            ds = dermoscopy_dataset(study_uid=study, rows=256, columns=384, seed=i)
            rsp = assoc.send_c_store(ds)
            if rsp is None or "Status" not in rsp:
                return  # the node died mid-send: this one was never acknowledged
            if rsp.Status == 0x0000:
                acknowledged.append(str(ds.SOPInstanceUID))
            if len(acknowledged) >= count // 3:
                enough.set()
    except (RuntimeError, OSError, ValueError):
        return
    finally:
        enough.set()
        if assoc.is_established:
            assoc.abort()


def test_kill_9_mid_send_loses_nothing_acknowledged(tmp_path: Path) -> None:
    try:
        redis.Redis.from_url(REDIS_URL).ping()
    except redis.ConnectionError:
        pytest.fail("Redis is not running on 127.0.0.1:6379 (tests/run.sh starts it)")
    data_dir = tmp_path / "node"
    queue = {"DERMNODE_QUEUE": f"dermnode.test.{uuid.uuid4().hex}"}
    first = DermnodeProcess(_serve(data_dir), env=queue)
    acknowledged: list[str] = []
    enough = threading.Event()
    try:
        port = first.wait_listening()
        sender = threading.Thread(target=_send, args=(port, acknowledged, enough, 60))
        sender.start()
        assert enough.wait(120), "the node acknowledged nothing"
    finally:
        first.kill()  # SIGKILL while the sender is mid-stream
    sender.join(60)
    assert acknowledged, "nothing was acknowledged before the kill"
    second = DermnodeProcess(_serve(data_dir), env=queue)
    try:
        second.wait_listening()  # recovery has run
    finally:
        second.stop()
    ledger = Ledger(data_dir / "ledger.sqlite3")
    try:
        recorded = {path.stem for path in ledger.instance_paths()}
        assert set(acknowledged) <= recorded, "an acknowledged instance was lost"
        spooled = {path.stem for path in (data_dir / "spool").glob("*/*.dcm")}
        assert spooled == recorded, "a spooled file is in no ledger row"
        assert not list((data_dir / "spool").glob("*/.incoming-*"))
    finally:
        ledger.close()
