"""The remote worker's link against a real worker API server: HTTPS with the node's certificate, and a
node that does not answer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dermnode.kernel.errors import DermnodeError
from dermnode.kernel.messages import AnalysisJob, NodeEndpoint
from dermnode.kernel.settings import load_settings
from dermnode.ops.server import HttpServer
from dicom_node.assignments import Assignments
from dicom_node.delivery import Deliveries
from dicom_node.job_tokens import JobTokens, load_or_create_key
from dicom_node.ledger import Ledger
from dicom_node.worker_api import build_worker_api
from tests import dcmtk
from tests.pki import PKI, make_pki
from tests.spooled import spool_study
from workers.link import NodeUnreachable
from workers.remote import HttpLink


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def https_node(tmp_path: Path, pki: PKI) -> Iterator[tuple[str, JobTokens, str]]:
    """A worker API over HTTPS on loopback, with one queued study: (URL, tokens, study UID)."""
    settings = load_settings(None, {}, {"data_dir": tmp_path / "data"})
    ledger = Ledger(settings.ledger_path)
    study_uid = spool_study(tmp_path / "src", settings, ledger, n=1)
    deliveries = Deliveries(settings, ledger)
    tokens = JobTokens(load_or_create_key(settings.data_dir / "worker-api.key"))
    assignments = Assignments(ledger, settings.outbox_dir, deliveries, lambda study: (), settings.uid_prefix)
    server = HttpServer(build_worker_api(assignments, tokens, 1 << 20), "127.0.0.1", 0, what="worker API",
                        tls=(pki.server_crt, pki.server_key)).start()
    yield f"https://127.0.0.1:{server.port}", tokens, study_uid
    server.stop()
    deliveries.close()
    ledger.close()


def test_a_worker_trusting_the_nodes_ca_works_over_https(
    https_node: tuple[str, JobTokens, str], pki: PKI, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, tokens, study_uid = https_node
    job = AnalysisJob(study_uid, 1, NodeEndpoint(url, tokens.issue(study_uid, 1), 30.0))
    monkeypatch.setenv("SSL_CERT_FILE", str(pki.ca))
    claim = HttpLink(patience_s=5).claim(job)
    assert claim is not None
    [ref] = claim.instances
    assert str(HttpLink().fetch(job, ref).StudyInstanceUID) == study_uid


def test_a_worker_that_does_not_trust_the_certificate_says_what_to_set(
    https_node: tuple[str, JobTokens, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, tokens, study_uid = https_node
    job = AnalysisJob(study_uid, 1, NodeEndpoint(url, tokens.issue(study_uid, 1), 30.0))
    empty = tmp_path / "no-ca.pem"
    empty.write_text("")
    monkeypatch.setenv("SSL_CERT_FILE", str(empty))
    with pytest.raises(DermnodeError, match=r"not trusted.*SSL_CERT_FILE"):
        HttpLink(patience_s=5).claim(job)


def test_a_node_that_does_not_answer_drops_the_job_after_the_patience() -> None:
    waits: list[float] = []
    link = HttpLink(timeout_s=2, patience_s=5, wait=waits.append)
    job = AnalysisJob("1.2.3", 1, NodeEndpoint(f"http://127.0.0.1:{dcmtk.free_port()}", "t.s", 30.0))
    with pytest.raises(NodeUnreachable, match="did not answer"):
        link.claim(job)
    assert waits == [0.5, 1.0, 2.0, 4.0]  # back-off while the next try still falls within the 5 s
