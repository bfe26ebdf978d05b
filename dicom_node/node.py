"""The node: AE + spool + ledger + decode sandbox + completion monitor + dispatcher, started and stopped
together."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from pynetdicom import AE, _config, evt
from pynetdicom.events import Event
from pynetdicom.transport import ThreadedAssociationServer

from dermnode.kernel.addresses import Address
from dermnode.kernel.errors import ConfigurationError
from dermnode.kernel.messages import AnalysisJob, NodeEndpoint, OutputOptions
from dermnode.kernel.settings import Settings
from dicom_node.assignments import Assignments
from dicom_node.completion import CompletionMonitor, OpenAssociations
from dicom_node.contexts import (
    ACCEPTED_IMAGE_SOP_CLASSES,
    ACCEPTED_TRANSFER_SYNTAXES,
    IMPLEMENTATION_CLASS_UID,
    IMPLEMENTATION_VERSION_NAME,
    VERIFICATION_SOP_CLASS,
)
from dicom_node.delivery import Deliveries
from dicom_node.dispatch import Dispatcher
from dicom_node.guard import AssociationGuard, AssociationLimits
from dicom_node.handlers import NodeHandlers, handlers
from dicom_node.job_tokens import JobTokens, load_or_create_key
from dicom_node.ledger import UNFINISHED, Ledger, Study, StudyState
from dicom_node.policy import RejectReason, decide
from dicom_node.registry import Registry
from dicom_node.sandbox import DecodeSandbox
from dicom_node.spool import Spool
from dicom_node.tls import server_context

LOG = logging.getLogger("dermnode.node")

#: Settings that only take effect at the next start (a reload logs that they were not applied).
RESTART_ONLY = ("ae_title", "bind_address", "port", "tls", "data_dir", "broker_url", "http_port",
                "http_bind_address", "classifier_bundle", "segmenter_bundle", "device", "worker_api_port",
                "worker_api_bind_address", "worker_api_url", "uid_prefix", "decode_workers")


@dataclass(frozen=True)
class AssociationAttempt:
    """An association request and the node's answer, for metrics and audit (PS3.15 A.5.3.2)."""

    calling_ae: str
    called_ae: str
    peer_host: str
    accepted: bool
    reason: RejectReason | None
    advice: str


AssociationListener = Callable[[AssociationAttempt], None]


def configure_pynetdicom() -> None:
    """Process-wide pynetdicom switches, set once here: receive datasets straight to a file."""
    _config.STORE_RECV_CHUNKED_DATASET = True
    _config.LOG_HANDLER_LEVEL = "none"


def build_ae(settings: Settings) -> AE:
    """The SCP application entity with exactly the contexts of :mod:`dicom_node.contexts`."""
    ae = AE(ae_title=settings.ae_title)
    ae.implementation_class_uid = IMPLEMENTATION_CLASS_UID
    ae.implementation_version_name = IMPLEMENTATION_VERSION_NAME
    ae.maximum_pdu_size = settings.max_pdu_size
    ae.network_timeout = settings.network_timeout_s
    ae.acse_timeout = settings.association_request_timeout_s  # ARTIM: an idle connection is closed
    ae.dimse_timeout = settings.network_timeout_s
    ae.require_called_aet = False  # checked in EVT_REQUESTED with an actionable log line
    ae.add_supported_context(VERIFICATION_SOP_CLASS)
    for sop_class in ACCEPTED_IMAGE_SOP_CLASSES:
        ae.add_supported_context(sop_class, list(ACCEPTED_TRANSFER_SYNTAXES))
    return ae


def association_limits(settings: Settings) -> AssociationLimits:
    return AssociationLimits(
        max_pdu_size=settings.max_pdu_size,
        network_timeout_s=settings.network_timeout_s,
        association_max_s=settings.association_max_s,
        min_receive_rate=settings.min_receive_rate,
        max_associations_per_host=settings.max_associations_per_host,
    )


@dataclass(frozen=True)
class DestinationResolver:
    """Turns the configured destinations into addresses for a study's calling AE."""

    settings: Settings

    def resolve(self, calling_ae: str) -> tuple[Address, ...]:
        out: list[Address] = []
        for dest in self.settings.destinations:
            if isinstance(dest, Address):
                out.append(dest)
                continue
            peer = self.settings.peer(calling_ae)
            if peer is None or peer.host is None or peer.port is None:
                LOG.error(
                    "destination 'sender' for %s is skipped: configure allowed_peers with %s@HOST:PORT",
                    calling_ae, calling_ae,
                )
                continue
            out.append(Address(peer.ae_title, peer.host, peer.port))
        return tuple(dict.fromkeys(out))


class Node:
    """A running dermnode: call :meth:`start`, then :meth:`stop` (also a context manager).

    The node alone writes its ledger, spool and outbox: workers claim jobs, read images and store outputs
    through :attr:`assignments` (in this process, or over the worker API), and the node delivers the outputs.
    """

    def __init__(self, settings: Settings, dispatcher: Dispatcher) -> None:
        self.configured = settings
        self.dispatcher = dispatcher
        self.spool = Spool(settings.spool_dir)
        self.ledger = Ledger(settings.ledger_path)
        self.tokens = JobTokens(load_or_create_key(settings.data_dir / "worker-api.key"))
        #: Set (before :meth:`start`) when workers on other hosts reach the node through its worker API.
        self.worker_url: str | None = None
        self.registry = Registry(settings.ledger_path)
        self.registry.record_configured(settings)
        self.settings = self.registry.effective(settings)
        if not self.settings.allowed_peers:
            LOG.warning("no allowed peers configured: every association will be rejected; use --allow AE")
        self.associations = OpenAssociations()
        self.destinations = DestinationResolver(self.settings)
        self.deliveries = Deliveries(self.settings, self.ledger)
        self.assignments = Assignments(self.ledger, settings.outbox_dir, self.deliveries, self._destinations_for,
                                       settings.uid_prefix, takeover_after_s=settings.stalled_after_s / 2)
        self.monitor = CompletionMonitor(
            self.ledger, self.associations, lambda ae: self.settings.completion_for(ae), self._queue_study,
            stalled_after_s=settings.stalled_after_s, delivery_wait_s=settings.send_backoff_max_s,
        )
        #: Intake's decoder processes, from :meth:`start` to :meth:`stop`.
        self.sandbox = DecodeSandbox(self.settings.decode_workers)
        self.association_listeners: list[AssociationListener] = []
        self._refresh_lock = threading.Lock()
        self.draining = False
        #: Set once a drain has closed the listening socket.
        self.stopped_listening = threading.Event()
        self._handlers: NodeHandlers | None = None
        self._server: ThreadedAssociationServer | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the node is not started")
        return int(self._server.server_address[1])

    @property
    def listening(self) -> bool:
        """True while the node accepts associations (started and not draining)."""
        return self._server is not None and not self.draining

    def refresh(self) -> Settings:
        """Apply the peers and destinations in force (the registry may have changed, e.g. from the CLI)."""
        with self._refresh_lock:
            return self._refresh()

    def _refresh(self) -> Settings:
        effective = self.registry.effective(self.configured)
        if effective != self.settings:
            self.settings = effective
            self.destinations = DestinationResolver(effective)
            if self._handlers is not None:
                self._handlers.settings = effective
            LOG.info("peers now %s; destinations now %s",
                     ", ".join(p.ae_title for p in effective.allowed_peers) or "none",
                     ", ".join(d if isinstance(d, str) else d.describe() for d in effective.destinations) or "none")
        return effective

    def reload(self, settings: Settings) -> Settings:
        """Apply re-read settings (SIGHUP): peers, destinations, completion and delivery settings at once;
        listening address, AE title, TLS, data, broker and models only at the next start (logged)."""
        kept = [key for key in RESTART_ONLY if getattr(settings, key) != getattr(self.configured, key)]
        if kept:
            LOG.warning("reload: %s changed but apply only after a restart", ", ".join(kept))
            settings = settings.model_copy(update={key: getattr(self.configured, key) for key in kept})
        self.configured = settings
        self.registry.record_configured(settings)
        LOG.info("configuration reloaded")
        return self.refresh()

    def _on_requested(self, event: Event) -> None:
        """First handler of each association request: refresh the peers, tell the listeners the answer
        (the answer itself is given by :meth:`NodeHandlers.on_requested`, with the same policy)."""
        settings = self.refresh()
        rq = event.assoc.requestor.primitive
        called = (rq.called_ae_title or "").strip() if rq is not None else ""
        calling = (rq.calling_ae_title or "").strip() if rq is not None else ""
        host = event.assoc.requestor.address
        decision = decide(settings, called, calling, host)
        attempt = AssociationAttempt(calling, called, host, decision.accepted, decision.reason, decision.advice)
        for listener in self.association_listeners:
            try:
                listener(attempt)
            except Exception:
                LOG.exception("association listener %r failed", listener)

    def _destinations_for(self, study: Study) -> tuple[Address, ...]:
        self.refresh()  # destinations changed by the CLI in another process apply to this study
        return self.destinations.resolve(study.calling_ae)

    def job_for(self, study: Study) -> AnalysisJob:
        """The job message of a study generation: for a remote worker with where to reach us and a token."""
        endpoint = None
        if self.worker_url is not None:
            endpoint = NodeEndpoint(self.worker_url, self.tokens.issue(study.study_uid, study.generation),
                                    heartbeat_s=self.configured.stalled_after_s / 4)
        options = OutputOptions(self.configured.uid_prefix, self.configured.attention_maps)
        return AnalysisJob(study.study_uid, study.generation, endpoint, options)

    def _queue_study(self, study: Study) -> None:
        destinations = self._destinations_for(study)
        self.dispatcher.submit(self.job_for(study))
        self.ledger.transition(
            study.study_uid, StudyState.QUEUED, expect=[StudyState.COMPLETE], generation=study.generation
        )
        LOG.info("study %s generation %d queued for %s", study.study_uid, study.generation,
                 ", ".join(d.describe() for d in destinations) or "the outbox only")

    def recover(self) -> int:
        """Re-queue every study that was complete but not delivered when the node last stopped."""
        removed = self.spool.clean_incomplete()
        if removed:
            LOG.info("removed %d partial file(s) left by an interrupted write (never acknowledged)", removed)
        unrecorded = self.spool.remove_unrecorded(self.ledger.instance_paths())
        if unrecorded:
            LOG.info("removed %d spooled file(s) that no ledger row records (never acknowledged)", unrecorded)
        count = 0
        for study in self.ledger.studies(list(UNFINISHED)):
            if study.state != StudyState.COMPLETE:
                self.ledger.transition(study.study_uid, StudyState.COMPLETE, expect=[study.state],
                                       reason=f"re-queued after restart (was {study.state})")
            count += 1
        if count:
            LOG.info("%d undelivered complete stud(y/ies) will be queued again", count)
        return count

    def start(self) -> Node:
        configure_pynetdicom()
        self.recover()
        ae = build_ae(self.settings)
        self.sandbox.start()
        self._handlers = node_handlers = NodeHandlers(self.settings, self.spool, self.ledger, self.associations,
                                                      AssociationGuard(association_limits(self.settings)),
                                                      self.sandbox)
        try:
            self._server = ae.start_server(
                (self.settings.bind_address, self.settings.port),
                block=False,
                evt_handlers=[(evt.EVT_REQUESTED, self._on_requested), *handlers(node_handlers)],  # type: ignore[list-item]
                ssl_context=server_context(self.settings.tls) if self.settings.tls else None,
            )
        except OSError as e:
            self.sandbox.stop()
            raise ConfigurationError(
                f"cannot listen on {self.settings.bind_address}:{self.settings.port}: {e.strerror}; "
                "choose another --port or stop the program using it"
            ) from e
        self.monitor.start()
        LOG.info("dermnode %s listening on %s:%d%s (data in %s)", self.settings.ae_title,
                 self.settings.bind_address, self.port, " with TLS" if self.settings.tls else "",
                 self.settings.data_dir)
        return self

    def drain(self, timeout_s: float = 60.0) -> int:
        """Stop accepting associations and wait up to ``timeout_s`` for those open to finish (stores in
        flight are made durable and answered); returns how many were still open at the end."""
        self.draining = True
        if self._server is None:
            return 0
        open_now = self._server.active_associations
        self._server.shutdown()  # closes the listening socket; open associations go on
        self.stopped_listening.set()
        LOG.info("draining: no new associations; waiting for %d open association(s)", len(open_now))
        deadline = time.monotonic() + timeout_s
        for assoc in open_now:
            assoc.join(max(0.0, deadline - time.monotonic()))
        left = sum(1 for assoc in open_now if assoc.is_alive())
        if left:
            LOG.warning("drain: %d association(s) still open after %.0f s; closing anyway", left, timeout_s)
        self._server = None
        return left

    def stop(self) -> None:
        self.monitor.stop()
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        self.sandbox.stop()
        self.dispatcher.close()
        self.deliveries.close()
        self.registry.close()
        self.ledger.close()

    def __enter__(self) -> Node:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
