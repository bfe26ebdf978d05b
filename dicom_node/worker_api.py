"""The worker API: how analysis workers on other hosts reach the node, over HTTP, with standard parts.

- ``GET /dicomweb/studies/{study}/series/{series}/instances/{sop}``: DICOMweb WADO-RS retrieve of one instance
  (``multipart/related; type="application/dicom"``): an image of the study, or an earlier report of it;
- ``POST /dicomweb/studies/{study}``: DICOMweb STOW-RS of the job's outputs (SEG and SR only);
- ``POST /worker/v1/studies/{study}/generations/{generation}/claim``, ``.../heartbeat``, ``.../report``: the
  job's events (started, still alive, finished), JSON; the node alone changes its ledger in answer.

Every request carries ``Authorization: Bearer <token>``, the job token of :mod:`dicom_node.job_tokens` that the
node put in the job message: it opens this one study (and generation) and nothing else. Responses never
echo patient data in errors; nothing here is logged with more than UIDs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from dermnode.kernel.errors import DermnodeError
from dermnode.kernel.messages import AnalysisReport
from dicom_node import multipart
from dicom_node.assignments import Assignments, RejectedOutput, StaleJob
from dicom_node.job_tokens import Grant, JobTokens, TokenError

LOG = logging.getLogger("dermnode.worker_api")

Endpoint = Callable[[Request], Awaitable[Response]]


def _problem(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"error": detail}, status_code=status)


def _bearer(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


async def _bounded_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise _TooLarge(limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)


class _TooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body is larger than {limit} bytes")


def build_worker_api(assignments: Assignments, tokens: JobTokens, max_body_bytes: int) -> Starlette:
    """The Starlette application of the worker API (served by the node, on its own port)."""

    def grant_for(request: Request, with_generation: bool) -> Grant:
        study = request.path_params["study"]
        generation = int(request.path_params["generation"]) if with_generation else None
        return tokens.check(_bearer(request), study, generation)

    def guarded(handler: Callable[[Request, Grant], Awaitable[Response]], with_generation: bool) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            try:
                grant = grant_for(request, with_generation)
            except TokenError as e:
                return JSONResponse({"error": f"unauthorised: {e}"}, status_code=401,
                                    headers={"WWW-Authenticate": "Bearer"})
            try:
                return await handler(request, grant)
            except _TooLarge as e:
                return _problem(413, str(e))
            except (multipart.MultipartError, RejectedOutput, ValueError) as e:
                return _problem(400, str(e))
            except StaleJob as e:
                return _problem(409, str(e))
            except OSError as e:  # the node's disk: the worker retries later (no space: 507)
                LOG.error("worker API: %s", e)
                return _problem(507 if e.errno in (28, 122) else 503, f"the node cannot store now: {e.strerror}")
            except DermnodeError as e:
                LOG.error("worker API: %s", e)
                return _problem(503, str(e))

        return endpoint

    async def claim(request: Request, grant: Grant) -> Response:
        found = await run_in_threadpool(assignments.claim, grant.study_uid, grant.generation)
        if found is None:
            return _problem(409, "the job is stale or its study is finished: drop it")
        return JSONResponse(found.to_message())

    async def heartbeat(request: Request, grant: Grant) -> Response:
        alive = await run_in_threadpool(assignments.heartbeat, grant.study_uid, grant.generation)
        return JSONResponse({"analysing": alive})

    async def report(request: Request, grant: Grant) -> Response:
        body = await _bounded_body(request, 1 << 20)
        message: Any = json.loads(body or b"{}")
        parsed = AnalysisReport.from_message(message)
        done = await run_in_threadpool(assignments.finish, grant.study_uid, grant.generation, parsed)
        return JSONResponse({"state": done.state, "reason": done.reason})

    async def retrieve(request: Request, grant: Grant) -> Response:
        sop = request.path_params["sop"]
        path = await run_in_threadpool(assignments.path_of, grant.study_uid, sop)
        if path is None or not path.is_file():
            return _problem(404, f"no instance {sop} in study {grant.study_uid}")
        data = await run_in_threadpool(path.read_bytes)
        body, content_type = multipart.build([data])
        return Response(body, media_type=None, headers={"content-type": content_type})

    async def store(request: Request, grant: Grant) -> Response:
        body = await _bounded_body(request, max_body_bytes)
        parts = multipart.parse(body, request.headers.get("content-type", ""))
        stored = []
        for data in parts:
            sop_class, sop_uid = await run_in_threadpool(assignments.store, grant.study_uid, grant.generation, data)
            stored.append({"00081150": {"vr": "UI", "Value": [sop_class]},
                           "00081155": {"vr": "UI", "Value": [sop_uid]}})
        # PS3.18 10.5.3: the Store Instances Response, DICOM JSON (Referenced SOP Sequence).
        return JSONResponse({"00081199": {"vr": "SQ", "Value": stored}},
                            media_type="application/dicom+json")

    job = "/worker/v1/studies/{study}/generations/{generation:int}"
    return Starlette(routes=[
        Route(f"{job}/claim", guarded(claim, True), methods=["POST"]),
        Route(f"{job}/heartbeat", guarded(heartbeat, True), methods=["POST"]),
        Route(f"{job}/report", guarded(report, True), methods=["POST"]),
        Route("/dicomweb/studies/{study}/series/{series}/instances/{sop}", guarded(retrieve, False),
              methods=["GET"]),
        Route("/dicomweb/studies/{study}", guarded(store, False), methods=["POST"]),
    ])
