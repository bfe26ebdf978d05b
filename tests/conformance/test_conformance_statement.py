"""The conformance statement (conformance/ConformanceStatement.md) says what the running node does.

The statement's machine-readable tables (marked ``<!-- conformance-table: NAME -->``) are parsed and
compared twice: with the code (:mod:`dicom_node.contexts`, the AE that :func:`build_ae` makes, the
C-STORE status constants) and, above all, with a running node and the delivery SCU on loopback:

* every SOP class x transfer syntax pair of the statement is proposed and must be accepted, and
  nothing else (CT, an unlisted transfer syntax) may be;
* the A-ASSOCIATE-AC carries the implementation identity and maximum PDU size the statement gives;
* each A-ASSOCIATE-RJ (result, source, reason) of the statement is provoked and observed;
* each C-STORE status of the statement is provoked and observed;
* a capture SCP records what the delivery SCU (:class:`StoreSender`) proposes and announces.

Annex 8.2's class codes are compared with the shipped classifier bundle's label map.

A change to the code that the statement does not follow, or the reverse, fails here.
"""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pydicom import Dataset, dcmread
from pydicom import config as pydicom_config
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, HTJ2KLossless
from pynetdicom import AE, _globals, build_context, evt
from pynetdicom.association import Association
from pynetdicom.events import Event
from pynetdicom.presentation import PresentationContext

from dermnode.kernel.messages import Address
from dermnode.kernel.settings import Settings
from dicom_node import contexts
from dicom_node.intake import DECODER_BASE_BYTES, DECODER_BYTES_PER_PIXEL
from dicom_node.node import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME, Node, build_ae
from dicom_node.sender import StoreSender
from dicom_node.status import Status
from tests.conftest import RecordingDispatcher, node_settings
from tests.factories import dermoscopy_dataset, minimal_output_file
from tests.scu import c_store
from tests.unanalysable import REFUSED, SLOW_DECODE_LIMIT_S, bomb, slow_to_decode, spoiled

ROOT = Path(__file__).resolve().parents[2]
STATEMENT = ROOT / "conformance" / "ConformanceStatement.md"
CLASSIFIER_METADATA = ROOT / "inference" / "bundles" / "classifier" / "configs" / "metadata.json"
CT_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.2")
CALLING = "PYSCU"
_TICKED = re.compile(r"`([^`]+)`")


# --- reading the statement --------------------------------------------------------------------


def table(name: str) -> list[list[str]]:
    """Body rows (cells stripped) of the table after ``<!-- conformance-table: name -->``."""
    lines = STATEMENT.read_text(encoding="utf-8").splitlines()
    marker = f"<!-- conformance-table: {name} -->"
    starts = [i for i, line in enumerate(lines) if line.strip() == marker]
    assert len(starts) == 1, f"{STATEMENT.name} must mark exactly one table {marker!r}, found {len(starts)}"
    rows: list[list[str]] = []
    for line in lines[starts[0] + 1:]:
        if not line.strip().startswith("|"):
            if rows:
                break
            continue
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    assert len(rows) >= 3, f"table {name!r} has no body rows"
    assert set("".join(rows[1])) <= set("-: "), f"table {name!r}: second row must be the |---| separator"
    return rows[2:]


def ticked(cell: str, what: str) -> str:
    """The one backticked value in a cell."""
    values = _TICKED.findall(cell)
    assert len(values) == 1, f"{what}: expected one `value` in {cell!r}"
    return str(values[0])


def column(name: str, index: int) -> list[str]:
    return [ticked(row[index], f"table {name!r}") for row in table(name)]


def uid_column(name: str, index: int = 1) -> list[UID]:
    uids = [UID(value) for value in column(name, index)]
    for uid in uids:
        assert uid.is_valid and uid.name != str(uid), f"table {name!r}: {uid} is not a UID pydicom knows"
    assert len(set(uids)) == len(uids), f"table {name!r} lists a UID twice"
    return uids


def statement_scp_pairs() -> set[tuple[UID, UID]]:
    """Every (SOP class, transfer syntax) the statement says the SCP accepts."""
    images = [uid for uid in uid_column("scp-sop-classes") if uid != contexts.VERIFICATION_SOP_CLASS]
    pairs = {(sop, ts) for sop in images for ts in uid_column("scp-transfer-syntaxes")}
    pairs |= {(contexts.VERIFICATION_SOP_CLASS, ts) for ts in uid_column("verification-transfer-syntaxes")}
    return pairs


def parameter(name: str) -> str:
    rows = [row for row in table("association-parameters") if row[0].lower().startswith(name.lower())]
    assert len(rows) == 1, f"association-parameters: no single row starting with {name!r}"
    return ticked(rows[0][1], rows[0][0])


def implementation(role: str) -> tuple[str, str]:
    rows = [row for row in table("implementation") if f"({role})" in row[0]]
    assert len(rows) == 1, f"implementation table needs one row for ({role})"
    return ticked(rows[0][1], "Implementation Class UID"), ticked(rows[0][2], "Implementation Version Name")


def rejections() -> set[tuple[int, int, int]]:
    return {
        tuple(int(ticked(cell, "association-rejections")) for cell in row[:3])  # type: ignore[misc]
        for row in table("association-rejections")
    }


def store_statuses() -> set[int]:
    return {int(code, 16) for code in column("store-statuses", 1)}


# --- statement vs code ------------------------------------------------------------------------


def test_statement_tables_match_the_contexts_module() -> None:
    scp = uid_column("scp-sop-classes")
    assert scp[0] == contexts.VERIFICATION_SOP_CLASS
    assert set(scp) == {contexts.VERIFICATION_SOP_CLASS, *contexts.ACCEPTED_IMAGE_SOP_CLASSES}
    assert set(uid_column("scp-transfer-syntaxes")) == set(contexts.ACCEPTED_TRANSFER_SYNTAXES)
    assert set(uid_column("scu-sop-classes")) == set(contexts.PROPOSED_OUTPUT_SOP_CLASSES)
    assert uid_column("scu-transfer-syntaxes") == list(contexts.PROPOSED_TRANSFER_SYNTAXES)


def test_statement_matches_the_scp_application_entity() -> None:
    ae = build_ae(Settings())
    supported = {(UID(str(cx.abstract_syntax)), UID(ts)) for cx in ae.supported_contexts for ts in cx.transfer_syntax}
    assert supported == statement_scp_pairs()
    assert (ae.implementation_class_uid, ae.implementation_version_name) == implementation("SCP")
    assert implementation("SCP") == (IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME)
    assert ae.maximum_pdu_size == Settings().max_pdu_size == int(parameter("Maximum PDU size received"))
    assert ae.maximum_associations == int(parameter("Maximum number of simultaneous associations"))
    assert parameter("Application Context Name") == _globals.APPLICATION_CONTEXT_NAME
    defaults = Settings()
    assert defaults.max_associations_per_host == int(parameter("Maximum simultaneous connections per peer"))
    assert ae.acse_timeout == defaults.association_request_timeout_s == float(parameter("Time to send the A-ASSOC"))
    assert defaults.association_max_s == float(parameter("Total time of one incoming association"))


def test_statement_statuses_are_the_intake_statuses() -> None:
    assert store_statuses() == set(Status)


def test_statement_decode_limits_are_the_code_defaults() -> None:
    """The decode sandbox's limits as the statement gives them (4.2.1.4.2.1, 4.4.2) are the code's."""
    text = " ".join(STATEMENT.read_text(encoding="utf-8").split())
    defaults = Settings()
    assert DECODER_BASE_BYTES == 1 << 30
    assert f"1 GiB + {DECODER_BYTES_PER_PIXEL} bytes × `max_image_pixels`" in text
    assert f"`max_decode_s` (default {defaults.max_decode_s:g} s)" in text
    assert f"| `max_decode_s` | {defaults.max_decode_s:g} |" in text
    assert f"`decode_workers` long-lived processes, default {defaults.decode_workers}" in text
    assert f"| `decode_workers` | {defaults.decode_workers} |" in text


def test_running_node_refuses_each_case_of_the_statement(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every row of table ``intake-refusals`` is provoked on the wire and answered with its status."""
    monkeypatch.setattr(pydicom_config.settings, "writing_validation_mode", pydicom_config.WARN)
    monkeypatch.setattr(pydicom_config.settings, "reading_validation_mode", pydicom_config.WARN)
    rows = {row[0]: int(ticked(row[1], "intake-refusals"), 16) for row in table("intake-refusals")}
    cases = {name: status for name, _, status, _ in REFUSED}
    bomb_row = [name for name in rows if name.startswith("decompression bomb")]
    slow_row = [name for name in rows if name.startswith("decode past max_decode_s")]
    assert len(bomb_row) == 1 and len(slow_row) == 1 and set(rows) - {*bomb_row, *slow_row} == set(cases)
    assert f"limit {SLOW_DECODE_LIMIT_S:g} s" in slow_row[0]
    # Only the slow case is decoded at all: the others are refused from their header.
    settings = node_settings(tmp_path, allowed_peers=[CALLING], max_decode_s=SLOW_DECODE_LIMIT_S)
    node = Node(settings, RecordingDispatcher())
    node.start()
    try:
        observed = {name: c_store(node.port, spoiled(name), calling=CALLING) for name in cases}
        observed[bomb_row[0]] = c_store(node.port, bomb(tmp_path), calling=CALLING)
        observed[slow_row[0]] = c_store(node.port, dcmread(slow_to_decode(tmp_path / "slow")), calling=CALLING)
        assert node.ledger.studies() == []
    finally:
        node.stop()
    assert observed == rows, {k: f"0x{v:04X}" for k, v in observed.items()}
    assert set(observed.values()) | {Status.SUCCESS, Status.OUT_OF_RESOURCES} == store_statuses()


def test_statement_labels_are_the_shipped_classifier_bundle_labels() -> None:
    """Annex 8.2 lists the class codes the SR uses: those of the shipped bundle's label map."""
    metadata = json.loads(CLASSIFIER_METADATA.read_text(encoding="utf-8"))
    shipped = [
        (label["key"], label["name"], "yes" if label["malignant"] else "no",
         label["code"]["value"], label["code"]["scheme"], label["code"]["meaning"])
        for label in metadata["dermnode"]["labels"]
    ]
    stated = [
        (ticked(key, "class key"), name, malignant, ticked(value, "code value"), scheme, meaning)
        for key, name, malignant, value, scheme, meaning in table("classifier-labels")
    ]
    assert stated == shipped


# --- statement vs the running node ------------------------------------------------------------


@pytest.fixture(scope="module")
def running_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    # Every requestor here is 127.0.0.1: its per-host share is raised to the total, to reach the total limit.
    settings = node_settings(
        tmp_path_factory.mktemp("conformance"), allowed_peers=[CALLING, "PINNED@192.0.2.1"],
        max_associations_per_host=10,
    )
    node = Node(settings, RecordingDispatcher())
    node.start()
    try:
        yield node
    finally:
        node.stop()


def _requestor(contexts_: list[PresentationContext], calling: str = CALLING) -> AE:
    ae = AE(ae_title=calling)
    ae.requested_contexts = contexts_
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    return ae


def _associate(node: Node, contexts_: list[PresentationContext], calling: str = CALLING,
               called: str = "DERMNODE") -> Association:
    return _requestor(contexts_, calling).associate("127.0.0.1", node.port, ae_title=called)


def _echo_context() -> list[PresentationContext]:
    return [build_context(contexts.VERIFICATION_SOP_CLASS)]


def test_running_node_accepts_exactly_the_statement_contexts(running_node: Node) -> None:
    pairs = sorted(statement_scp_pairs())
    unlisted = [
        (CT_IMAGE_STORAGE, ExplicitVRLittleEndian),
        (contexts.DERMOSCOPIC_PHOTOGRAPHY_IMAGE_STORAGE, ExplicitVRBigEndian),
        (contexts.DERMOSCOPIC_PHOTOGRAPHY_IMAGE_STORAGE, HTJ2KLossless),
    ]
    assert not set(unlisted) & set(pairs), "the probe's unlisted contexts are in the statement"
    proposed = [build_context(sop, ts) for sop, ts in [*pairs, *unlisted]]
    assert len(proposed) <= 128, "more contexts than one association can propose"
    assoc = _associate(running_node, proposed)
    assert assoc.is_established, "the node refused an association proposing the statement's contexts"
    try:
        accepted = {(UID(str(cx.abstract_syntax)), UID(cx.transfer_syntax[0])) for cx in assoc.accepted_contexts}
        rejected = {(UID(str(cx.abstract_syntax)), UID(cx.transfer_syntax[0])) for cx in assoc.rejected_contexts}
        assert accepted == set(pairs), (
            f"in the statement, not accepted: {sorted(set(pairs) - accepted)}; "
            f"accepted, not in the statement: {sorted(accepted - set(pairs))}"
        )
        assert rejected == set(unlisted)
        assert (assoc.acceptor.implementation_class_uid, assoc.acceptor.implementation_version_name) == (
            implementation("SCP")
        )
        assert assoc.acceptor.maximum_length == int(parameter("Maximum PDU size received"))
        assert assoc.acceptor.primitive is not None
        assert assoc.acceptor.primitive.application_context_name == parameter("Application Context Name")
        assert assoc.send_c_echo().Status == 0x0000
    finally:
        assoc.release()


def _rejection(assoc: Association) -> tuple[int, int, int]:
    assert assoc.is_rejected, "expected an A-ASSOCIATE-RJ"
    rj = assoc.acceptor.primitive
    assert rj is not None
    assert rj.result is not None and rj.result_source is not None and rj.diagnostic is not None
    return int(rj.result), int(rj.result_source), int(rj.diagnostic)


def _hold_associations(node: Node, count: int, patience_s: float = 5.0) -> list[Association]:
    """Open ``count`` associations; a refusal is retried while threads of earlier ones wind down."""
    held: list[Association] = []
    deadline = time.monotonic() + patience_s
    while len(held) < count and time.monotonic() < deadline:
        assoc = _associate(node, _echo_context())
        if assoc.is_established:
            held.append(assoc)
        else:
            time.sleep(0.1)
    return held


def test_running_node_rejects_associations_as_the_statement_says(running_node: Node) -> None:
    observed = {
        _rejection(_associate(running_node, _echo_context(), called="NOT_DERMNODE")),
        _rejection(_associate(running_node, _echo_context(), calling="STRANGER")),
        _rejection(_associate(running_node, _echo_context(), calling="PINNED")),  # from the wrong host
    }
    limit = int(parameter("Maximum number of simultaneous associations"))
    held = _hold_associations(running_node, limit)
    try:
        assert len(held) == limit, f"the node accepted {len(held)} simultaneous associations, not {limit}"
        observed.add(_rejection(_associate(running_node, _echo_context())))
    finally:
        for assoc in held:
            if assoc.is_established:
                assoc.release()
    assert observed == rejections()


def _store(node: Node, ds: Dataset) -> int:
    return c_store(node.port, ds, [ExplicitVRLittleEndian], calling=CALLING)


def test_running_node_returns_the_statement_store_statuses(tmp_path: Path) -> None:
    """Each C-STORE status of the statement is provoked on the wire; no other status shows up."""
    node = Node(node_settings(tmp_path, allowed_peers=[CALLING]), RecordingDispatcher())
    node.start()
    try:
        observed: dict[str, int] = {}
        good = dermoscopy_dataset()
        observed["stored"] = _store(node, good)
        observed["re-sent"] = _store(node, good)
        no_study = dermoscopy_dataset()
        del no_study.StudyInstanceUID
        observed["missing Study Instance UID"] = _store(node, no_study)
        short = dermoscopy_dataset()
        short.PixelData = short.PixelData[:100]
        observed["truncated Pixel Data"] = _store(node, short)
        # A broken disk: the spool folder turns into a file, so nothing can be written below it.
        spool = node.settings.spool_dir
        shutil.rmtree(spool)
        spool.write_bytes(b"")
        observed["spool not writable"] = _store(node, dermoscopy_dataset())
    finally:
        node.stop()
    assert observed == {
        "stored": Status.SUCCESS,
        "re-sent": Status.SUCCESS,
        "missing Study Instance UID": Status.DATASET_DOES_NOT_MATCH_SOP_CLASS,
        "truncated Pixel Data": Status.CANNOT_UNDERSTAND,
        "spool not writable": Status.OUT_OF_RESOURCES,
    }, {k: f"0x{v:04X}" for k, v in observed.items()}
    assert set(observed.values()) <= store_statuses()


# --- statement vs the delivery SCU ------------------------------------------------------------


@dataclass
class CaptureSCP:
    """A storage SCP for every SCU SOP class that records what the requestor proposes and sends."""

    requested: list[PresentationContext] = field(default_factory=list)
    implementation: tuple[str, str] = ("", "")
    calling_ae: str = ""
    stored: list[str] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)

    def on_requested(self, event: Event) -> None:
        requestor = event.assoc.requestor
        self.requested = list(requestor.requested_contexts)
        self.implementation = (str(requestor.implementation_class_uid), str(requestor.implementation_version_name))
        assert requestor.primitive is not None
        self.calling_ae = str(requestor.primitive.calling_ae_title).strip()

    def on_store(self, event: Event) -> int:
        self.stored.append(str(event.request.AffectedSOPClassUID))
        self.done.set()
        return 0x0000


def test_delivery_scu_proposes_and_announces_what_the_statement_says(tmp_path: Path) -> None:
    capture = CaptureSCP()
    scp = AE(ae_title="CAPTURE")
    for sop in contexts.PROPOSED_OUTPUT_SOP_CLASSES:
        scp.add_supported_context(sop, list(contexts.PROPOSED_TRANSFER_SYNTAXES))
    server = scp.start_server(
        ("127.0.0.1", 0), block=False,
        evt_handlers=[(evt.EVT_REQUESTED, capture.on_requested), (evt.EVT_C_STORE, capture.on_store)],
    )
    assert server is not None
    try:
        settings = Settings()
        sender = StoreSender(settings.ae_title, timeout_s=10, max_pdu=settings.max_pdu_size)
        result = sender.send(
            Address("CAPTURE", "127.0.0.1", int(server.server_address[1])),
            [minimal_output_file(tmp_path, contexts.COMPREHENSIVE_3D_SR_STORAGE)],
        )
    finally:
        server.shutdown()
    assert result.delivered, result.detail
    assert capture.stored == [contexts.COMPREHENSIVE_3D_SR_STORAGE]
    assert capture.calling_ae == settings.ae_title
    proposed = {UID(str(cx.abstract_syntax)): [UID(ts) for ts in cx.transfer_syntax] for cx in capture.requested}
    assert len(proposed) == len(capture.requested), "one presentation context per SOP class"
    assert set(proposed) == set(uid_column("scu-sop-classes"))
    for sop, syntaxes in proposed.items():
        assert syntaxes == uid_column("scu-transfer-syntaxes"), f"transfer syntaxes proposed for {sop.name}"
    assert capture.implementation == implementation("SCU"), (
        "the delivery SCU announces another implementation identity than the statement's SCU row"
    )
