"""The link of a worker on another host: the node's worker API over HTTP (see :mod:`dicom_node.worker_api`).

Standard library HTTP only. A refused connection or a 502/503/504 is retried with back-off for up to
``patience_s`` (a node restart); after that the job is dropped with :class:`~workers.link.NodeUnreachable` and
the node, which owns the study's state, queues it again. A full disk on the node (507) becomes
``OSError(ENOSPC)`` so that the analysis retries it like a local full disk.
"""

from __future__ import annotations

import errno
import io
import json
import logging
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from pydicom import Dataset, dcmread

from dermnode.kernel.errors import DermnodeError, InferenceError
from dermnode.kernel.messages import AnalysisJob, AnalysisReport, Claim, InstanceRef, NodeEndpoint
from dermnode.kernel.retry import RetryPolicy
from dicom_node import multipart
from dicom_node.assignments import Finished
from workers.link import NodeUnreachable, to_bytes

LOG = logging.getLogger("dermnode.worker")

_TRANSIENT = (502, 503, 504)


class HttpLink:
    def __init__(self, timeout_s: float = 60.0, patience_s: float = 120.0,
                 wait: Callable[[float], None] = time.sleep) -> None:
        self._timeout = timeout_s
        self._retry = RetryPolicy(None, 0.5, 10.0, period_s=patience_s)
        self._wait = wait

    @staticmethod
    def _endpoint(job: AnalysisJob) -> NodeEndpoint:
        if job.node is None:
            raise DermnodeError(f"job {job.study_uid} names no node: it was queued by a node without a worker API")
        return job.node

    def _request(self, job: AnalysisJob, method: str, path: str, body: bytes | None = None,
                 content_type: str | None = None, accept: str = "application/json") -> tuple[int, bytes, str]:
        endpoint = self._endpoint(job)
        headers = {"Authorization": f"Bearer {endpoint.token}", "Accept": accept}
        if content_type:
            headers["Content-Type"] = content_type
        started, attempt = time.monotonic(), 1
        while True:
            request = urllib.request.Request(endpoint.url + path, data=body, method=method, headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=self._timeout) as response:
                    return response.status, response.read(), response.headers.get("content-type", "")
            except urllib.error.HTTPError as e:
                if e.code not in _TRANSIENT:
                    return e.code, e.read(), e.headers.get("content-type", "")
                problem = f"HTTP {e.code}"
            except (urllib.error.URLError, OSError) as e:
                reason = getattr(e, "reason", e)
                if isinstance(reason, ssl.SSLCertVerificationError):
                    raise DermnodeError(
                        f"the certificate of the node's worker API at {endpoint.url} is not trusted "
                        f"({reason.verify_message}): point SSL_CERT_FILE at the CA bundle that signed it") from e
                problem = str(reason)
            elapsed = time.monotonic() - started
            if self._retry.gives_up_after(attempt, elapsed):
                raise NodeUnreachable(f"the node's worker API at {endpoint.url} did not answer for {elapsed:.0f} s "
                                      f"({problem})")
            delay = self._retry.delay(attempt)
            LOG.warning("study %s: node worker API: %s; retrying in %.1f s", job.study_uid, problem, delay)
            self._wait(delay)
            attempt += 1

    @staticmethod
    def _job_path(job: AnalysisJob, event: str) -> str:
        return f"/worker/v1/studies/{quote(job.study_uid)}/generations/{job.generation}/{event}"

    @staticmethod
    def _error(status: int, body: bytes) -> str:
        try:
            return str(json.loads(body).get("error", body[:200]))
        except (ValueError, AttributeError):
            return body[:200].decode("latin-1")

    def _json(self, job: AnalysisJob, event: str, payload: dict[str, Any] | None = None) -> tuple[int, Any]:
        body = json.dumps(payload or {}).encode()
        status, data, _ = self._request(job, "POST", self._job_path(job, event), body, "application/json")
        if status == 401:
            raise DermnodeError(f"the node refused the job token: {self._error(status, data)}")
        return status, (json.loads(data) if status == 200 else self._error(status, data))

    def claim(self, job: AnalysisJob) -> Claim | None:
        status, answer = self._json(job, "claim")
        if status == 409:
            LOG.info("study %s generation %d: %s", job.study_uid, job.generation, answer)
            return None
        if status != 200:
            raise DermnodeError(f"claim of study {job.study_uid} refused: HTTP {status}: {answer}")
        return Claim.from_message(answer)

    def fetch(self, job: AnalysisJob, ref: InstanceRef) -> Dataset:
        path = (f"/dicomweb/studies/{quote(ref.study_uid)}/series/{quote(ref.series_uid or '-')}"
                f"/instances/{quote(ref.sop_instance_uid)}")
        status, body, content_type = self._request(job, "GET", path,
                                                   accept='multipart/related; type="application/dicom"')
        if status != 200:
            raise InferenceError(f"instance {ref.sop_instance_uid}: retrieve failed, HTTP {status}: "
                                 f"{self._error(status, body)}")
        try:
            parts = multipart.parse(body, content_type)
            if len(parts) != 1:
                raise multipart.MultipartError(f"{len(parts)} parts for one instance")
            return dcmread(io.BytesIO(parts[0]))
        except Exception as e:
            raise InferenceError(f"instance {ref.sop_instance_uid} cannot be read: {e}") from e

    def heartbeat(self, job: AnalysisJob) -> None:
        self._json(job, "heartbeat")

    def store(self, job: AnalysisJob, outputs: list[Dataset]) -> None:
        for ds in outputs:  # one object per request: each request stays far below the node's body limit
            body, content_type = multipart.build([to_bytes(ds)])
            status, data, _ = self._request(job, "POST", f"/dicomweb/studies/{quote(job.study_uid)}", body,
                                            content_type, accept="application/dicom+json")
            if status == 507:
                raise OSError(errno.ENOSPC, f"no space left on the node: {self._error(status, data)}")
            if status != 200:
                raise DermnodeError(f"the node did not store {ds.SOPInstanceUID}: HTTP {status}: "
                                    f"{self._error(status, data)}")

    def finish(self, job: AnalysisJob, report: AnalysisReport) -> Finished:
        status, answer = self._json(job, "report", report.to_message())
        if status != 200:
            raise DermnodeError(f"the node did not accept the report of study {job.study_uid}: HTTP {status}: "
                                f"{answer}")
        return Finished(str(answer["state"]), str(answer.get("reason", "")))
