"""The status page at ``/``: server-rendered HTML (Jinja2, autoescaped), no script, no front-end build.

Studies with their state and audit trail (a ``<details>`` each), a resend button on finished studies; allowed
peers; destinations with their last C-ECHO and an echo button; the latest refusals.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from jinja2 import Environment, select_autoescape

from dermnode import __version__
from dermnode.kernel.addresses import Address
from dicom_node.ledger import StudyState
from dicom_node.node import Node

#: Studies shown, newest first.
STUDIES_SHOWN = 200
RESENDABLE = (StudyState.FAILED, StudyState.DELIVERED, StudyState.ANALYSED)

_ENV = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
_ENV.filters["when"] = lambda t: dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M:%S") if t else ""

_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#1a1a1a}
table{border-collapse:collapse;margin-bottom:1.5rem;width:100%}
th,td{border-bottom:1px solid #ddd;padding:.3rem .5rem;text-align:left;vertical-align:top;font-size:.9rem}
.state-failed{color:#a00;font-weight:bold}.state-delivered{color:#060}.message{background:#ffd;padding:.5rem}
code{font-size:.85rem}details summary{cursor:pointer}
"""

_LOGIN = _ENV.from_string("""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>dermnode</title><style>{{ style }}</style></head>
<body><h1>dermnode</h1>
{% if not configured %}<p class="message">No admin token is configured: set DERMNODE_ADMIN_TOKEN or admin_token
and restart the node.</p>{% else %}
{% if failed %}<p class="message" id="login-failed">That token is not the admin token.</p>{% endif %}
<form method="post" action="/login"><label>Admin token <input type="password" name="token" id="token"></label>
<button type="submit" id="sign-in">Sign in</button></form>{% endif %}
</body></html>""")

_STATUS = _ENV.from_string("""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>dermnode {{ ae_title }}</title><style>{{ style }}</style></head>
<body>
<h1>dermnode {{ ae_title }}</h1>
<p>Version {{ version }} · {{ "accepting associations" if listening else "not accepting associations" }} ·
outputs are AI-generated, not for diagnostic use</p>
{% if message %}<p class="message" id="message">{{ message }}</p>{% endif %}

<h2>Studies</h2>
<table id="studies"><thead><tr><th>Study Instance UID</th><th>State</th><th>From</th><th>Instances</th>
<th>Updated (UTC)</th><th>Reason</th><th></th></tr></thead><tbody>
{% for s in studies %}<tr class="study" data-study-uid="{{ s.study.study_uid }}">
<td><details><summary><code>{{ s.study.study_uid }}</code></summary><ol class="trail">
{% for e in s.events %}<li>{{ e.at | when }} <b>{{ e.kind }}</b> {{ e.sop_instance_uid }} {{ e.detail }}</li>
{% endfor %}
</ol></details></td>
<td class="state state-{{ s.study.state }}">{{ s.study.state }}</td><td>{{ s.study.calling_ae }}</td>
<td>{{ s.study.instance_count }}</td><td>{{ s.study.updated | when }}</td><td>{{ s.study.reason }}</td>
<td>{% if s.resendable %}<form method="post" action="/ui/studies/{{ s.study.study_uid }}/resend">
<button type="submit" class="resend">Resend</button></form>{% endif %}</td></tr>
{% else %}<tr><td colspan="7">No study received yet.</td></tr>{% endfor %}
</tbody></table>

<h2>Allowed peers</h2>
<table id="peers"><thead><tr><th>AE title</th><th>Host</th><th>Port</th></tr></thead><tbody>
{% for p in peers %}<tr><td>{{ p.ae_title }}</td><td>{{ p.host or "any" }}</td><td>{{ p.port or "" }}</td></tr>
{% else %}<tr><td colspan="3">None: every association is rejected.</td></tr>{% endfor %}
</tbody></table>

<h2>Destinations</h2>
<table id="destinations"><thead><tr><th>AE title</th><th>Address</th><th>Last C-ECHO</th><th></th></tr></thead><tbody>
{% for d in destinations %}<tr data-ae-title="{{ d.ae_title }}"><td>{{ d.ae_title }}</td><td>{{ d.address }}</td>
<td class="echo">{% if d.echo %}{{ d.echo.at | when }}: {{ "ok" if d.echo.ok else "failed" }}
({{ d.echo.detail }}){% endif %}</td>
<td>{% if d.echoable %}<form method="post" action="/ui/destinations/{{ d.ae_title }}/echo">
<button type="submit" class="echo-button">C-ECHO</button></form>{% endif %}</td></tr>
{% else %}<tr><td colspan="4">None: outputs stay in the outbox.</td></tr>{% endfor %}
</tbody></table>

<h2>Recent refusals</h2>
<table id="refusals"><thead><tr><th>When (UTC)</th><th>Calling AE</th><th>SOP Instance UID</th><th>Reason</th></tr>
</thead><tbody>
{% for r in refusals %}<tr><td>{{ r.at | when }}</td><td>{{ r.calling_ae }}</td><td>{{ r.sop }}</td>
<td>{{ r.reason }}</td></tr>{% else %}<tr><td colspan="4">None.</td></tr>{% endfor %}
</tbody></table>
</body></html>""")


def render_login(configured: bool, failed: bool = False) -> str:
    return _LOGIN.render(style=_STYLE, configured=configured, failed=failed)


def _detail(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {"reason": text}
    return value if isinstance(value, dict) else {"reason": text}


def render_status(node: Node, message: str = "") -> str:
    ledger, settings = node.ledger, node.refresh()
    studies = ledger.studies()[-STUDIES_SHOWN:][::-1]
    echoes = node.registry.echoes()
    destinations = [
        {"ae_title": d.ae_title, "address": d.describe(), "echo": echoes.get(d.ae_title), "echoable": True}
        if isinstance(d, Address) else
        {"ae_title": d, "address": "the calling AE's allowed_peers address", "echo": None, "echoable": False}
        for d in settings.destinations
    ]
    refusals = []
    for e in ledger.recent_events(["instance-rejected"], limit=50):
        detail = _detail(e.detail)
        refusals.append({"at": e.at, "sop": e.sop_instance_uid, "calling_ae": detail.get("calling_ae", ""),
                         "reason": detail.get("reason", "")})
    return _STATUS.render(
        style=_STYLE, ae_title=settings.ae_title, version=__version__, listening=node.listening, message=message,
        studies=[{"study": s, "events": ledger.events(s.study_uid, limit=100), "resendable": s.state in RESENDABLE}
                 for s in studies],
        peers=settings.allowed_peers, destinations=destinations, refusals=refusals,
    )
