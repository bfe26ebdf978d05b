"""The decode sandbox (issue 10): decoding at intake bounded in time and memory, in processes the node
outlives. Every limit here is provoked for real: a valid but large JPEG under a tiny time limit, a
decoder process killed with SIGKILL mid-decode, an address space too small to decode in."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread

from dicom_node.decoder import Decoded, ProtocolError
from dicom_node.intake import DECODER_BASE_BYTES, IntakeError, check_received, decoder_address_space
from dicom_node.node import Node
from dicom_node.sandbox import DecoderDied, DecodeSandbox, DecodeTimeout, SandboxUnavailable
from dicom_node.status import Status
from tests.conftest import RecordingDispatcher, node_settings
from tests.dicom_node.test_handlers import wait_until
from tests.factories import encoded_dermoscopy_file
from tests.scu import c_store
from tests.unanalysable import SLOW_DECODE_LIMIT_S, slow_to_decode

ENOUGH = decoder_address_space(50_000_000)
SHAPE = (2000, 3000, 3)


@pytest.fixture(scope="module")
def slow(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return slow_to_decode(tmp_path_factory.mktemp("slow"), patient_name="Secret^Person", patient_id="PID-SECRET")


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return encoded_dermoscopy_file(tmp_path_factory.mktemp("small"), "jpeg-baseline")


@pytest.fixture
def sandbox() -> Iterator[DecodeSandbox]:
    with DecodeSandbox(2) as pool:
        yield pool


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _kill_mid_decode(sandbox: DecodeSandbox) -> int:
    """SIGKILL the decoder process that has a job in hand, as soon as one has."""
    assert wait_until(lambda: bool(sandbox.decoding_pids)), "no decoder process took the job"
    pid = sandbox.decoding_pids[0]
    os.kill(pid, signal.SIGKILL)
    return pid


def test_a_decode_past_its_time_is_killed_and_the_pool_keeps_decoding(
    sandbox: DecodeSandbox, slow: Path, small: Path
) -> None:
    assert sandbox.decode(small, 30, ENOUGH).shape == (96, 128, 3)  # a decoder is up and ready
    before = set(sandbox.pids)
    started = time.monotonic()
    with pytest.raises(DecodeTimeout, match=f"longer than {SLOW_DECODE_LIMIT_S:g} s"):
        sandbox.decode(slow, SLOW_DECODE_LIMIT_S, ENOUGH)
    assert time.monotonic() - started < 5  # the limit, the kill and starting a replacement; not the decode
    killed = before - set(sandbox.pids)
    assert len(killed) == 1 and not _alive(killed.pop())
    assert sandbox.decode(small, 30, ENOUGH).shape == (96, 128, 3)
    assert sandbox.decode(slow, 60, ENOUGH).shape == SHAPE  # valid: it was refused for its time only


def test_a_decoder_killed_mid_decode_is_reported_and_replaced(
    sandbox: DecodeSandbox, slow: Path, small: Path
) -> None:
    outcome: list[object] = []

    def decode() -> None:
        try:
            outcome.append(sandbox.decode(slow, 60, ENOUGH))
        except DecoderDied as e:
            outcome.append(e)

    worker = threading.Thread(target=decode)
    worker.start()
    pid = _kill_mid_decode(sandbox)
    worker.join(60)
    assert not worker.is_alive()
    assert isinstance(outcome[0], DecoderDied), outcome
    assert "killed by SIGKILL" in str(outcome[0])
    assert pid not in sandbox.pids
    assert sandbox.decode(small, 30, ENOUGH).shape == (96, 128, 3)


def test_a_decoder_out_of_address_space_is_refused_and_the_next_decode_has_its_limit_back(
    sandbox: DecodeSandbox, slow: Path
) -> None:
    """256 MiB is less than a decoder process holds once pydicom and the decoders are loaded: the first
    allocation fails. GDCM's C++ decoder then aborts the process (SIGABRT: in the node's own process this
    would have ended the node), a Python decoder raises MemoryError; either way there is no shape."""
    try:
        outcome: Decoded | DecoderDied = sandbox.decode(slow, 60, 256 << 20)
    except DecoderDied as e:
        outcome = e
    assert (isinstance(outcome, DecoderDied) and "killed by SIG" in str(outcome)) or (
        isinstance(outcome, Decoded) and outcome.error == "MemoryError"
    ), outcome
    assert sandbox.decode(slow, 60, ENOUGH).shape == SHAPE


def test_a_decoding_error_is_an_answer_naming_only_the_exception_type(sandbox: DecodeSandbox, tmp_path: Path) -> None:
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"\0" * 128 + b"DICM" + b"\xff" * 64)
    answer = sandbox.decode(junk, 30, ENOUGH)
    assert answer.shape is None and answer.error is not None and answer.error.isidentifier()
    assert sandbox.decode(tmp_path / "missing.dcm", 30, ENOUGH) == Decoded(error="FileNotFoundError")


def test_stop_ends_every_decoder_process_and_refuses_further_work(small: Path) -> None:
    pool = DecodeSandbox(2).start()
    assert pool.decode(small, 30, ENOUGH).shape == (96, 128, 3)
    pids = pool.pids
    assert pids
    pool.stop()
    assert not any(_alive(pid) for pid in pids)
    with pytest.raises(SandboxUnavailable, match="stopped"):
        pool.decode(small, 30, ENOUGH)


def test_a_decode_cut_short_by_stop_is_not_the_instance_s_fault(slow: Path) -> None:
    """The node stopping mid-decode answers "out of resources" (the sender tries again), not 0xC000."""
    pool = DecodeSandbox(1).start()
    outcome: list[BaseException] = []

    def decode() -> None:
        try:
            pool.decode(slow, 60, ENOUGH)
        except SandboxUnavailable as e:
            outcome.append(e)

    worker = threading.Thread(target=decode)
    worker.start()
    assert wait_until(lambda: bool(pool.decoding_pids)), "no decoder process took the job"
    pool.stop()
    worker.join(60)
    assert [str(e) for e in outcome] == ["the decode sandbox stopped during the decode"]


def test_overlapping_decodes_grow_the_pool_to_its_size(sandbox: DecodeSandbox, slow: Path, small: Path) -> None:
    assert len(sandbox.pids) == 1  # one decoder at start, the second only when decodes overlap
    results: list[Decoded] = []
    threads = [threading.Thread(target=lambda: results.append(sandbox.decode(slow, 60, ENOUGH))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert [r.shape for r in results] == [SHAPE] * 3
    assert len(sandbox.pids) == 2


@pytest.mark.parametrize("message", [
    b"", b"not json", b'{"shape": [1, 2]}', b'{"shape": null, "error": null}', b'{"shape": "12", "error": null}',
    b'{"shape": [1, true], "error": null}', b'{"shape": [-1], "error": null}', b'{"shape": null, "error": "a b"}',
    b'{"shape": [1], "error": "ValueError"}', b"\x80\x04\x95",  # the start of a pickle
])
def test_the_node_reads_a_decoder_answer_strictly(message: bytes) -> None:
    with pytest.raises(ProtocolError):
        Decoded.decode(message)


def test_the_address_space_covers_a_frame_at_the_pixel_limit() -> None:
    assert decoder_address_space(50_000_000) == DECODER_BASE_BYTES + 96 * 50_000_000
    assert decoder_address_space(50_000_000) < 6_000_000 * 1024  # inside tests/run.sh's ulimit -v for the fuzz


def test_intake_refuses_a_decode_past_max_decode_s_with_cannot_understand(sandbox: DecodeSandbox, slow: Path) -> None:
    ds = dcmread(slow, stop_before_pixels=True)
    with pytest.raises(IntakeError, match=r"not decoded within 0\.02 s \(max_decode_s\)") as caught:
        check_received(slow, str(ds.SOPClassUID), str(ds.SOPInstanceUID), sandbox=sandbox,
                       max_decode_s=SLOW_DECODE_LIMIT_S)
    assert caught.value.status == Status.CANNOT_UNDERSTAND
    assert str(ds.SOPInstanceUID) in str(caught.value)


# --- the node on loopback ---------------------------------------------------------------------


def test_the_node_refuses_a_decode_past_max_decode_s_and_accepts_the_next_instance(
    tmp_path: Path, slow: Path, small: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = node_settings(tmp_path, max_decode_s=SLOW_DECODE_LIMIT_S)
    node = Node(settings, RecordingDispatcher())
    node.start()
    try:
        with caplog.at_level(logging.INFO, logger="dermnode"):
            assert c_store(node.port, dcmread(slow)) == Status.CANNOT_UNDERSTAND
            uid = str(dcmread(slow, stop_before_pixels=True).SOPInstanceUID)
            assert f"instance {uid}: pixel data in JPEG Baseline (Process 1) was not decoded within 0.02 s" in (
                caplog.text
            )
        node.reload(settings.model_copy(update={"max_decode_s": 30.0}))
        assert c_store(node.port, dcmread(small)) == Status.SUCCESS
        assert c_store(node.port, dcmread(slow)) == Status.SUCCESS  # the same instance, valid, given the time
        assert sorted(study.instance_count for study in node.ledger.studies()) == [1, 1]
    finally:
        node.stop()
    assert "Secret" not in caplog.text and "PID-SECRET" not in caplog.text


def test_the_node_refuses_an_instance_whose_decoder_dies_and_accepts_the_next(
    tmp_path: Path, slow: Path, small: Path
) -> None:
    node = Node(node_settings(tmp_path), RecordingDispatcher())
    node.start()
    try:
        statuses: list[int] = []
        sender = threading.Thread(target=lambda: statuses.append(c_store(node.port, dcmread(slow))))
        sender.start()
        _kill_mid_decode(node.sandbox)
        sender.join(60)
        assert statuses == [Status.CANNOT_UNDERSTAND]
        assert c_store(node.port, dcmread(small)) == Status.SUCCESS
        assert c_store(node.port, dcmread(slow)) == Status.SUCCESS
        pids = node.sandbox.pids
    finally:
        node.stop()
    assert pids and not any(_alive(pid) for pid in pids)
