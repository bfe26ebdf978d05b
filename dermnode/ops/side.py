"""The operations side of one running node, started and stopped with it: metrics fed by the node's
association answers and the ledger's event trail, the HTTP server when ``http_port`` is set, and the
audit messages when ``audit`` is set."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from dermnode.ops.audit import Auditor
from dermnode.ops.health import broker_for
from dermnode.ops.metrics import Metrics
from dermnode.ops.server import HttpServer
from dermnode.ops.trail import EventObserver, EventTrail
from dermnode.ops.web import Console, build_app
from dicom_node.node import Node

LOG = logging.getLogger("dermnode.ops")


class OpsSide:
    def __init__(self, node: Node, model_versions: Mapping[str, str] | None = None) -> None:
        settings = node.configured
        self.node = node
        broker = broker_for(settings)
        self.metrics = Metrics(node.ledger, model_versions, broker.queue_lengths if broker else None)
        node.association_listeners.append(self.metrics.on_association)
        observers: list[EventObserver] = [self.metrics.on_event]
        self.auditor: Auditor | None = None
        if settings.audit is not None:
            self.auditor = Auditor(settings.audit, settings.ae_title, node.ledger, client_tls=settings.tls)
            node.association_listeners.append(self.auditor.on_association)
            observers.append(self.auditor.on_event)
        self.trail = EventTrail(node.ledger, observers)
        self.http: HttpServer | None = None
        if settings.http_port is not None:
            self.http = HttpServer(build_app(Console(node, self.metrics, broker)), settings.http_bind_address,
                                   settings.http_port)

    def start(self) -> OpsSide:
        self.trail.start()
        if self.auditor is not None:
            self.auditor.application_activity(started=True)
        if self.http is not None:
            self.http.start()
        return self

    def stop(self) -> None:
        if self.http is not None:
            self.http.stop()
        self.trail.stop()
        if self.auditor is not None:
            self.auditor.application_activity(started=False)
            self.auditor.close()
