"""The node's HTTP side as a Starlette application: health, metrics, the admin API and the status page.

Routes (see README, Operations):

- ``GET /healthz``, ``GET /readyz``, ``GET /metrics``: no token (bind to loopback or a management network);
- ``/api/...``: the admin API, ``Authorization: Bearer <admin_token>`` or 401;
- ``GET /``: the status page; a browser signs in once with the token (``POST /login`` sets an HttpOnly,
  SameSite=Strict cookie), and its buttons post to ``/ui/...``.

The token is compared in constant time and never logged. Changes to peers and destinations go to the
registry (persisted and audited in the ledger) and apply at once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import parse_qs, quote

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from dermnode.kernel.addresses import Address
from dermnode.kernel.errors import ConfigurationError, DermnodeError, LedgerError, NotFoundError
from dermnode.kernel.settings import Peer, Settings
from dermnode.ops.health import Broker, health
from dermnode.ops.metrics import Metrics
from dermnode.ops.page import render_login, render_status
from dicom_node.ledger import Study
from dicom_node.node import Node
from dicom_node.verification import echo

LOG = logging.getLogger("dermnode.http")

COOKIE = "dermnode_admin"


@dataclass
class Console:
    """What the HTTP side works on: the running node, its metrics and the broker (if any)."""

    node: Node
    metrics: Metrics
    broker: Broker | None = None

    @property
    def settings(self) -> Settings:
        """The node's settings in force, with changes made from another process (the CLI) applied."""
        return self.node.refresh()


def _token_ok(console: Console, presented: str | None) -> bool:
    token = console.node.configured.admin_token
    if token is None or not presented:
        return False
    return hmac.compare_digest(presented.encode(), token.get_secret_value().encode())


def _session(console: Console) -> str | None:
    """The status page's cookie value: derived from the token, so the browser never stores the token itself."""
    token = console.node.configured.admin_token
    if token is None:
        return None
    return hmac.new(token.get_secret_value().encode(), b"dermnode status page session", hashlib.sha256).hexdigest()


def _session_ok(console: Console, presented: str | None) -> bool:
    expected = _session(console)
    return expected is not None and presented is not None and hmac.compare_digest(presented, expected)


def _bearer(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


def _who(request: Request, via: str) -> str:
    return f"{via}@{request.client.host if request.client else 'unknown'}"


def _problem(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"error": detail}, status_code=status)


def _unauthorised(console: Console) -> JSONResponse:
    why = ("no admin token is configured: set DERMNODE_ADMIN_TOKEN or admin_token"
           if console.node.configured.admin_token is None else "send Authorization: Bearer <admin token>")
    return JSONResponse({"error": f"unauthorised: {why}"}, status_code=401, headers={"WWW-Authenticate": "Bearer"})


Handler = Callable[[Request, Console], Response]


def _admin(handler: Handler, console: Console) -> Callable[[Request], Response]:
    """Wrap an admin API handler: Bearer token or 401; project errors become 400/404/409 with the message."""

    def endpoint(request: Request) -> Response:
        if not _token_ok(console, _bearer(request)):
            return _unauthorised(console)
        return handler(request, console)

    return endpoint


def _study_dict(study: Study) -> dict[str, Any]:
    return {**asdict(study), "state": str(study.state)}


def _peer_dict(peer: Peer) -> dict[str, Any]:
    return peer.model_dump(mode="json", exclude={"completion"})


def _destinations(console: Console) -> list[dict[str, Any]]:
    echoes = console.node.registry.echoes()
    out = []
    for d in console.settings.destinations:
        if isinstance(d, Address):
            last = echoes.get(d.ae_title)
            out.append({**d.to_message(), "last_echo": asdict(last) if last else None})
        else:
            out.append({"ae_title": d, "host": None, "port": None, "tls": False, "last_echo": None})
    return out


async def _json_body(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError as e:
        raise ConfigurationError(f"the request body is not JSON: {e}") from e
    if not isinstance(body, dict):
        raise ConfigurationError('the request body must be a JSON object, e.g. {"ae_title": "PACS", ...}')
    return body


# --- admin operations, shared by the API and the page ---------------------------------------------
def add_peer(console: Console, body: dict[str, Any], by: str) -> Peer:
    try:
        peer = Peer.model_validate({k: v for k, v in body.items() if k in ("ae_title", "host", "port")})
    except ValidationError as e:
        raise ConfigurationError(f"invalid peer {body!r}: {e.errors()[0]['msg']}") from e
    console.node.registry.add_peer(peer, by)
    console.node.refresh()
    return peer


def add_destination(console: Console, body: dict[str, Any], by: str) -> Address:
    try:
        address = Address(str(body["ae_title"]), str(body["host"]), int(body["port"]), bool(body.get("tls", False)))
    except (KeyError, TypeError, ValueError) as e:
        raise ConfigurationError(f'invalid destination {body!r}: give "ae_title", "host" and "port" ({e})') from e
    if address.tls and console.settings.tls is None:
        raise ConfigurationError(f"destination {address.describe()} uses TLS: configure tls first")
    console.node.registry.add_destination(address, by)
    console.node.refresh()
    return address


def echo_destination(console: Console, ae_title: str, by: str) -> dict[str, Any]:
    dest = console.node.registry.destination(ae_title, console.node.configured)
    result = echo(console.settings, dest)
    console.node.registry.record_echo(ae_title, result.ok, result.detail, by)
    return asdict(result)


def resend(console: Console, study_uid: str, by: str) -> Study:
    study = console.node.ledger.request_resend(study_uid, by)
    LOG.info("study %s resend requested by %s", study_uid, by)
    return study


def _error_status(e: DermnodeError) -> int:
    if isinstance(e, NotFoundError):
        return 404
    if isinstance(e, LedgerError):
        return 409
    return 400


def build_app(console: Console) -> Starlette:
    """The ASGI application of one running node."""

    def healthz(request: Request) -> Response:
        report = health(console.settings, console.node.ledger, console.broker)
        return JSONResponse(report.as_dict(), status_code=200 if report.ok else 503)

    def readyz(request: Request) -> Response:
        report = health(console.settings, console.node.ledger, console.broker)
        listening = console.node.listening
        body = {**report.as_dict(), "listening": listening}
        return JSONResponse(body, status_code=200 if report.ok and listening else 503)

    def metrics(request: Request) -> Response:
        return Response(generate_latest(console.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    # --- API ----------------------------------------------------------------------------------------
    def list_peers(request: Request, c: Console) -> Response:
        return JSONResponse([_peer_dict(p) for p in c.settings.allowed_peers])

    async def post_peer(request: Request) -> Response:
        if not _token_ok(console, _bearer(request)):
            return _unauthorised(console)
        try:
            peer = add_peer(console, await _json_body(request), _who(request, "admin-api"))
        except DermnodeError as e:
            return _problem(_error_status(e), str(e))
        return JSONResponse(_peer_dict(peer), status_code=201)

    def delete_peer(request: Request, c: Console) -> Response:
        try:
            c.node.registry.remove_peer(request.path_params["ae_title"], c.node.configured,
                                        _who(request, "admin-api"))
        except DermnodeError as e:
            return _problem(_error_status(e), str(e))
        c.node.refresh()
        return Response(status_code=204)

    def list_destinations(request: Request, c: Console) -> Response:
        return JSONResponse(_destinations(c))

    async def post_destination(request: Request) -> Response:
        if not _token_ok(console, _bearer(request)):
            return _unauthorised(console)
        try:
            address = add_destination(console, await _json_body(request), _who(request, "admin-api"))
        except DermnodeError as e:
            return _problem(_error_status(e), str(e))
        return JSONResponse(address.to_message(), status_code=201)

    def delete_destination(request: Request, c: Console) -> Response:
        try:
            c.node.registry.remove_destination(request.path_params["ae_title"], c.node.configured,
                                               _who(request, "admin-api"))
        except DermnodeError as e:
            return _problem(_error_status(e), str(e))
        c.node.refresh()
        return Response(status_code=204)

    def post_echo(request: Request, c: Console) -> Response:
        try:
            return JSONResponse(echo_destination(c, request.path_params["ae_title"], _who(request, "admin-api")))
        except DermnodeError as e:
            return _problem(_error_status(e), str(e))

    def list_studies(request: Request, c: Console) -> Response:
        return JSONResponse([_study_dict(s) for s in c.node.ledger.studies()])

    def get_study(request: Request, c: Console) -> Response:
        uid = request.path_params["study_uid"]
        study = c.node.ledger.study(uid)
        if study is None:
            return _problem(404, f"study {uid} is not in the ledger")
        events = [{**asdict(e), "detail": _loads(e.detail)} for e in c.node.ledger.events(uid)]
        return JSONResponse({**_study_dict(study), "deliveries": c.node.ledger.deliveries(uid), "events": events})

    def post_resend(request: Request, c: Console) -> Response:
        try:
            study = resend(c, request.path_params["study_uid"], _who(request, "admin-api"))
        except DermnodeError as e:
            return _problem(_error_status(e), str(e))
        return JSONResponse(_study_dict(study), status_code=202)

    # --- page ---------------------------------------------------------------------------------------
    def page(request: Request) -> Response:
        if not _session_ok(console, request.cookies.get(COOKIE)):
            return HTMLResponse(render_login(console.node.configured.admin_token is not None))
        return HTMLResponse(render_status(console.node, request.query_params.get("message", "")))

    async def login(request: Request) -> Response:
        # A one-field urlencoded form: parsed here rather than with python-multipart.
        fields = parse_qs((await request.body()).decode("utf-8", "replace"))
        token = fields.get("token", [""])[0]
        if not _token_ok(console, token):
            return HTMLResponse(render_login(console.node.configured.admin_token is not None, failed=True),
                                status_code=401)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, _session(console) or "", httponly=True, samesite="strict", path="/")
        return response

    def ui(action: Callable[[Request], str]) -> Callable[[Request], Response]:
        def endpoint(request: Request) -> Response:
            if not _session_ok(console, request.cookies.get(COOKIE)):
                return RedirectResponse("/", status_code=303)
            try:
                message = action(request)
            except DermnodeError as e:
                message = f"error: {e}"
            return RedirectResponse(f"/?message={_quote(message)}", status_code=303)
        return endpoint

    def ui_resend(request: Request) -> str:
        uid = request.path_params["study_uid"]
        resend(console, uid, _who(request, "status-page"))
        return f"study {uid} will be analysed and delivered again"

    def ui_echo(request: Request) -> str:
        result = echo_destination(console, request.path_params["ae_title"], _who(request, "status-page"))
        return f"C-ECHO {result['destination']}: {result['detail']}"

    return Starlette(routes=[
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics),
        Route("/api/peers", _admin(list_peers, console), methods=["GET"]),
        Route("/api/peers", post_peer, methods=["POST"]),
        Route("/api/peers/{ae_title}", _admin(delete_peer, console), methods=["DELETE"]),
        Route("/api/destinations", _admin(list_destinations, console), methods=["GET"]),
        Route("/api/destinations", post_destination, methods=["POST"]),
        Route("/api/destinations/{ae_title}", _admin(delete_destination, console), methods=["DELETE"]),
        Route("/api/destinations/{ae_title}/echo", _admin(post_echo, console), methods=["POST"]),
        Route("/api/studies", _admin(list_studies, console), methods=["GET"]),
        Route("/api/studies/{study_uid}", _admin(get_study, console), methods=["GET"]),
        Route("/api/studies/{study_uid}/resend", _admin(post_resend, console), methods=["POST"]),
        Route("/", page, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/ui/studies/{study_uid}/resend", ui(ui_resend), methods=["POST"]),
        Route("/ui/destinations/{ae_title}/echo", ui(ui_echo), methods=["POST"]),
    ])


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _quote(text: str) -> str:
    return quote(text[:300])
