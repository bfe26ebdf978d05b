"""The worker API as a remote worker meets it: tokens, WADO-RS, STOW-RS and the job events, on a real ledger."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid
from starlette.testclient import TestClient

from dermnode.kernel.settings import Settings, load_settings
from dicom_node import multipart
from dicom_node.assignments import Assignments
from dicom_node.delivery import Deliveries
from dicom_node.job_tokens import JobTokens, TokenError, load_or_create_key
from dicom_node.ledger import Ledger, StudyState
from dicom_node.worker_api import build_worker_api
from tests.factories import minimal_output_file
from tests.spooled import spool_study

SEG = "1.2.840.10008.5.1.4.1.1.66.4"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(None, {}, {"data_dir": tmp_path / "data"})


@pytest.fixture
def ledger(settings: Settings) -> Iterator[Ledger]:
    ledger = Ledger(settings.ledger_path)
    yield ledger
    ledger.close()


@pytest.fixture
def tokens(settings: Settings) -> JobTokens:
    return JobTokens(load_or_create_key(settings.data_dir / "worker-api.key"))


@pytest.fixture
def client(settings: Settings, ledger: Ledger, tokens: JobTokens) -> Iterator[TestClient]:
    deliveries = Deliveries(settings, ledger)
    assignments = Assignments(ledger, settings.outbox_dir, deliveries, lambda study: (), settings.uid_prefix)
    with TestClient(build_worker_api(assignments, tokens, 1 << 20)) as test_client:
        yield test_client
    deliveries.close()


@pytest.fixture
def study(tmp_path: Path, settings: Settings, ledger: Ledger) -> tuple[str, list[str], str]:
    """A queued one-image study: its UID, its SOP Instance UIDs and its series UID."""
    study_uid = spool_study(tmp_path / "src", settings, ledger, n=1)
    [instance] = ledger.instances(study_uid)
    return study_uid, [instance.sop_instance_uid], instance.series_uid


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _output(tmp_path: Path, study_uid: str, uid_prefix: str, sop_class: str = SEG) -> bytes:
    path = minimal_output_file(tmp_path / "out", sop_class)
    ds = dcmread(path)
    ds.StudyInstanceUID = study_uid
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(prefix=uid_prefix)
    ds.save_as(path, enforce_file_format=True)
    return path.read_bytes()


def test_tokens_open_one_study_generation_until_they_expire(tokens: JobTokens, settings: Settings) -> None:
    token = tokens.issue("1.2.3", 2)
    assert tokens.check(token, "1.2.3", 2).generation == 2
    for bad, study, generation, why in [
        (token, "1.2.4", 2, "another study"),
        (token, "1.2.3", 3, "another study or generation"),
        (token[:-2] + "xx", "1.2.3", 2, "not one this node issued"),
        (None, "1.2.3", 2, "no token"),
        (JobTokens(b"k" * 32).issue("1.2.3", 2), "1.2.3", 2, "not one this node issued"),
    ]:
        with pytest.raises(TokenError, match=why):
            tokens.check(bad, study, generation)
    same_key = load_or_create_key(settings.data_dir / "worker-api.key")
    later = JobTokens(same_key, clock=lambda: time.time() + 25 * 3600)  # a day and an hour on
    with pytest.raises(TokenError, match="expired"):
        later.check(token, "1.2.3", 2)


def test_the_signing_key_is_private_and_kept(settings: Settings) -> None:
    path = settings.data_dir / "worker-api.key"
    first = load_or_create_key(path)
    assert load_or_create_key(path) == first and path.stat().st_mode & 0o777 == 0o600


def test_multipart_round_trip_and_refusals() -> None:
    body, content_type = multipart.build([b"one", b"two\r\n--not-a-boundary"])
    assert multipart.parse(body, content_type) == [b"one", b"two\r\n--not-a-boundary"]
    with pytest.raises(multipart.MultipartError, match="multipart/related"):
        multipart.parse(body, "application/dicom")
    with pytest.raises(multipart.MultipartError, match="closing boundary"):
        multipart.parse(body[:-8], content_type)
    other, other_type = multipart.build([b"x"], media_type="text/plain")
    with pytest.raises(multipart.MultipartError, match="text/plain"):
        multipart.parse(other, other_type)


def test_a_worker_claims_reads_stores_and_reports(
    tmp_path: Path, client: TestClient, tokens: JobTokens, ledger: Ledger, settings: Settings,
    study: tuple[str, list[str], str],
) -> None:
    study_uid, [sop], series = study
    token = tokens.issue(study_uid, 1)
    job = f"/worker/v1/studies/{study_uid}/generations/1"
    claimed = client.post(f"{job}/claim", headers=_auth(token))
    assert claimed.status_code == 200
    assert claimed.json()["instances"] == [{"study_uid": study_uid, "series_uid": series, "sop_instance_uid": sop}]
    assert ledger.study(study_uid).state == StudyState.ANALYSING  # type: ignore[union-attr]

    got = client.get(f"/dicomweb/studies/{study_uid}/series/{series}/instances/{sop}", headers=_auth(token))
    assert got.status_code == 200 and got.headers["content-type"].startswith("multipart/related")
    [part] = multipart.parse(got.content, got.headers["content-type"])
    assert part == ledger.instances(study_uid)[0].path.read_bytes()

    assert client.post(f"{job}/heartbeat", headers=_auth(token)).json() == {"analysing": True}

    data = _output(tmp_path, study_uid, settings.uid_prefix)
    body, content_type = multipart.build([data])
    for _ in range(2):  # a job run twice stores the same object once
        stored = client.post(f"/dicomweb/studies/{study_uid}", content=body,
                             headers={**_auth(token), "Content-Type": content_type})
        assert stored.status_code == 200, stored.text
    [reference] = stored.json()["00081199"]["Value"]
    uid = reference["00081155"]["Value"][0]
    outbox = list((settings.outbox_dir / study_uid / "g1").iterdir())
    assert [p.name for p in outbox] == [f"{uid}.dcm"] and outbox[0].stat().st_mode & 0o777 == 0o600

    report = {"outputs": [{"sop_instance_uid": uid, "kind": "seg"}], "not_analysed": [], "failure": ""}
    done = client.post(f"{job}/report", content=json.dumps(report), headers=_auth(token))
    assert done.json()["state"] == StudyState.ANALYSED
    assert [o["sop_instance_uid"] for o in ledger.outputs(study_uid)] == [uid]
    again = client.post(f"{job}/report", content=json.dumps(report), headers=_auth(token))
    assert again.json()["state"] == "skipped"  # the duplicate report of a re-run job
    late = client.post(f"/dicomweb/studies/{study_uid}", content=body,
                       headers={**_auth(token), "Content-Type": content_type})
    assert late.status_code == 409  # a finished generation's outbox is never rewritten
    assert client.post(f"{job}/claim", headers=_auth(token)).status_code == 409  # finished: drop the job


def test_the_api_refuses_other_studies_forged_tokens_and_foreign_objects(
    tmp_path: Path, client: TestClient, tokens: JobTokens, settings: Settings, study: tuple[str, list[str], str],
) -> None:
    study_uid, [sop], series = study
    token = tokens.issue(study_uid, 1)
    other = tokens.issue("1.2.999", 1)
    path = f"/dicomweb/studies/{study_uid}/series/{series}/instances/{sop}"
    assert client.get(path).status_code == 401
    assert client.get(path, headers=_auth(other)).status_code == 401
    assert client.get(path, headers=_auth(token + "x")).status_code == 401
    assert client.get(f"/dicomweb/studies/{study_uid}/series/{series}/instances/1.2.3",
                      headers=_auth(token)).status_code == 404
    client.post(f"/worker/v1/studies/{study_uid}/generations/1/claim", headers=_auth(token))

    def stow(data: bytes) -> tuple[int, str]:
        body, content_type = multipart.build([data])
        answer = client.post(f"/dicomweb/studies/{study_uid}", content=body,
                             headers={**_auth(token), "Content-Type": content_type})
        return answer.status_code, answer.text

    status, text = stow(_output(tmp_path, "1.2.999", settings.uid_prefix))
    assert status == 400 and "belongs to study 1.2.999" in text
    assert "only SEG and SR" in stow(_output(tmp_path, study_uid, settings.uid_prefix, "1.2.840.10008.5.1.4.1.1.7"))[1]
    assert "under this node's root" in stow(_output(tmp_path, study_uid, "1.3.6.1.4.1.99999."))[1]
    assert stow(b"not dicom")[0] == 400
    too_big = client.post(f"/dicomweb/studies/{study_uid}", content=b"x" * (2 << 20),
                          headers={**_auth(token), "Content-Type": "multipart/related; boundary=b"})
    assert too_big.status_code == 413
    report = {"outputs": [{"sop_instance_uid": "1.2.3", "kind": "seg"}]}
    assert client.post(f"/worker/v1/studies/{study_uid}/generations/1/report", content=json.dumps(report),
                       headers=_auth(token)).status_code == 400  # named but never stored
    assert not (settings.outbox_dir / study_uid / "g1").exists() or not any(
        (settings.outbox_dir / study_uid / "g1").iterdir())


def test_a_failure_report_fails_the_study_with_the_reason(
    client: TestClient, tokens: JobTokens, ledger: Ledger, study: tuple[str, list[str], str]
) -> None:
    study_uid, [sop], _ = study
    token = tokens.issue(study_uid, 1)
    job = f"/worker/v1/studies/{study_uid}/generations/1"
    client.post(f"{job}/claim", headers=_auth(token))
    report = {"failure": "analysis failed: none of the 1 image(s) could be analysed",
              "not_analysed": [{"sop_instance_uid": sop, "reason": "cannot be decoded"}]}
    assert client.post(f"{job}/report", content=json.dumps(report), headers=_auth(token)).json()["state"] == "failed"
    failed = ledger.study(study_uid)
    assert failed is not None and failed.state == StudyState.FAILED and "none of the 1" in failed.reason
    assert [e.sop_instance_uid for e in ledger.events(study_uid) if e.kind == "instance-not-analysed"] == [sop]



def test_a_duplicate_job_cannot_claim_a_study_another_job_is_analysing(
    settings: Settings, ledger: Ledger, study: tuple[str, list[str], str]
) -> None:
    """A second message for the same study (redelivered, or queued again while it waited) is dropped while
    the first job beats; once that one has been silent for the takeover time, a job may take over."""
    study_uid = study[0]
    now = [time.time()]
    deliveries = Deliveries(settings, ledger)
    try:
        assignments = Assignments(ledger, settings.outbox_dir, deliveries, lambda s: (), settings.uid_prefix,
                                  takeover_after_s=60.0, clock=lambda: now[0])
        assert assignments.claim(study_uid, 1) is not None
        assert assignments.claim(study_uid, 1) is None  # the first job just started
        now[0] += 59.0
        assert assignments.claim(study_uid, 1) is None
        assert assignments.heartbeat(study_uid, 1)  # recorded at the ledger's (real) time
        now[0] += 61.0  # two minutes after that heartbeat: the first job is presumed dead
        assert assignments.claim(study_uid, 1) is not None
        assert any("taken over" in e.detail for e in ledger.events(study_uid))
    finally:
        deliveries.close()
