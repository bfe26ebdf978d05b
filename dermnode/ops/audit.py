"""DICOM audit messages (PS3.15 A.5, the DICOM audit message schema) sent to a syslog receiver as RFC 5424
messages over UDP (RFC 5426) or TLS (RFC 5425), as an IHE ATNA audit record repository expects them.

Messages sent:

- Application Activity (110100; Application Start 110120 / Stop 110121) when the node starts and stops;
- Security Alert (110113, Node Authentication 110126) for each association rejected, with the reason;
- Security Alert (110113, Network Configuration 110128) when an administrator adds or removes a peer or a
  destination, naming who;
- DICOM Instances Transferred (110104), action Create, when a study is complete: its instances were stored;
- DICOM Instances Transferred (110104), action Read, when results were sent to a destination (or failed to).

A lost datagram is not retried (UDP); over TLS a closed connection is reopened once per message. The
ledger's events table remains the complete trail.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import logging
import os
import queue
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from xml.etree import ElementTree as ET

from dermnode.kernel.settings import AuditSettings, TLSSettings
from dicom_node.ledger import Event, Ledger
from dicom_node.node import AssociationAttempt

LOG = logging.getLogger("dermnode.audit")

#: RFC 5424 PRI: facility 10 (security/authorisation), severity 5 (notice), as IHE ATNA uses.
PRI = 10 * 8 + 5
MSGID = "IHE+RFC-3881"


@dataclass(frozen=True)
class Code:
    """A coded value of the audit schema: ``csd-code``, ``codeSystemName``, ``originalText``."""

    code: str
    scheme: str
    meaning: str

    def element(self, parent: ET.Element, tag: str) -> ET.Element:
        return ET.SubElement(parent, tag, {"csd-code": self.code, "codeSystemName": self.scheme,
                                           "originalText": self.meaning})


APPLICATION_ACTIVITY = Code("110100", "DCM", "Application Activity")
APPLICATION_START = Code("110120", "DCM", "Application Start")
APPLICATION_STOP = Code("110121", "DCM", "Application Stop")
SECURITY_ALERT = Code("110113", "DCM", "Security Alert")
NODE_AUTHENTICATION = Code("110126", "DCM", "Node Authentication")
NETWORK_CONFIGURATION = Code("110128", "DCM", "Network Configuration")
INSTANCES_TRANSFERRED = Code("110104", "DCM", "DICOM Instances Transferred")
APPLICATION = Code("110150", "DCM", "Application")
SOURCE = Code("110153", "DCM", "Source Role ID")
DESTINATION = Code("110152", "DCM", "Destination Role ID")
STUDY_UID = Code("110180", "DCM", "Study Instance UID")
PATIENT_NUMBER = Code("2", "RFC-3881", "Patient Number")

SUCCESS, MINOR_FAILURE, SERIOUS_FAILURE = "0", "4", "8"


def _participant(msg: ET.Element, user_id: str, requestor: bool, role: Code | None = None,
                 host: str | None = None) -> None:
    attrs = {"UserID": user_id, "UserIsRequestor": "true" if requestor else "false"}
    if host:
        attrs |= {"NetworkAccessPointID": host,
                  "NetworkAccessPointTypeCode": "2" if host[:1].isdigit() or ":" in host else "1"}
    p = ET.SubElement(msg, "ActiveParticipant", attrs)
    if role is not None:
        role.element(p, "RoleIDCode")


class AuditMessage:
    """One ``AuditMessage`` (PS3.15 A.5.1) built element by element, in the schema's order."""

    def __init__(self, event_id: Code, action: str, outcome: str, at: float, event_type: Code | None = None,
                 outcome_description: str = "") -> None:
        self.root = ET.Element("AuditMessage")
        when = dt.datetime.fromtimestamp(at, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        attrs = {"EventActionCode": action, "EventDateTime": when, "EventOutcomeIndicator": outcome}
        ident = ET.SubElement(self.root, "EventIdentification", attrs)
        event_id.element(ident, "EventID")
        if event_type is not None:
            event_type.element(ident, "EventTypeCode")
        if outcome_description:
            ET.SubElement(ident, "EventOutcomeDescription").text = outcome_description

    def participant(self, user_id: str, requestor: bool, role: Code | None = None, host: str | None = None
                    ) -> AuditMessage:
        _participant(self.root, user_id, requestor, role, host)
        return self

    def source(self, source_id: str) -> AuditMessage:
        """Add AuditSourceIdentification where the schema wants it: after the participants, before objects."""
        src = ET.Element("AuditSourceIdentification", {"AuditSourceID": source_id})
        ET.SubElement(src, "AuditSourceTypeCode", {"csd-code": "4"})  # application server process (A.5.1.2.1)
        objects = [i for i, child in enumerate(self.root) if child.tag == "ParticipantObjectIdentification"]
        self.root.insert(objects[0] if objects else len(self.root), src)
        return self

    def _object(self, object_id: str, type_code: str, role: str, id_type: Code, name: str) -> ET.Element:
        """A ParticipantObjectIdentification with its ID type code and name (the schema requires a name or a
        query, in this order before any detail or description)."""
        obj = ET.SubElement(self.root, "ParticipantObjectIdentification", {
            "ParticipantObjectID": object_id, "ParticipantObjectTypeCode": type_code,
            "ParticipantObjectTypeCodeRole": role})
        id_type.element(obj, "ParticipantObjectIDTypeCode")
        ET.SubElement(obj, "ParticipantObjectName").text = name
        return obj

    def study(self, study_uid: str, sop_classes: dict[str, int] | None = None) -> AuditMessage:
        obj = self._object(study_uid, "2", "3", STUDY_UID, "")
        if sop_classes:
            desc = ET.SubElement(obj, "ParticipantObjectDescription")
            for uid, count in sorted(sop_classes.items()):
                ET.SubElement(desc, "SOPClass", {"UID": uid, "NumberOfInstances": str(count)})
        return self

    def patient(self, patient_id: str) -> AuditMessage:
        # The ledger keeps no patient names: the name is left empty rather than read from the images.
        self._object(patient_id or "UNKNOWN", "1", "1", PATIENT_NUMBER, "")
        return self

    def node(self, name: str, description: str) -> AuditMessage:
        """The security resource an alert is about (a node, by AE title and address)."""
        obj = self._object(name, "2", "13", Code("110182", "DCM", "Node ID"), name)
        if description:  # ValuePair values are base64 (A.5.1): the text may hold anything a peer sent
            ET.SubElement(obj, "ParticipantObjectDetail", {
                "type": "Alert Description", "value": base64.b64encode(description.encode()).decode("ascii")})
        return self

    def xml(self) -> bytes:
        return ET.tostring(self.root, encoding="utf-8", xml_declaration=False)


def syslog_frame(message: bytes, at: float, app_name: str, hostname: str | None = None) -> bytes:
    """An RFC 5424 syslog message carrying ``message`` (UTF-8 XML, so with the BOM of RFC 5424 6.4)."""
    stamp = dt.datetime.fromtimestamp(at, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    host = (hostname or socket.gethostname())[:255] or "-"
    header = f"<{PRI}>1 {stamp} {host} {app_name[:48]} {os.getpid()} {MSGID} - "
    return header.encode("ascii", "replace") + b"\xef\xbb\xbf" + message


def _detail(event: Event) -> dict[str, object]:
    try:
        value = json.loads(event.detail)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


class _Transport:
    """UDP datagrams (RFC 5426), or one TLS connection with octet-counted frames (RFC 5425)."""

    def __init__(self, settings: AuditSettings, client: TLSSettings | None) -> None:
        self._settings = settings
        self.address = (settings.syslog_host, settings.port)
        self._tls: ssl.SSLContext | None = None
        self._conn: socket.socket | None = None
        self._udp: socket.socket | None = None
        if settings.transport == "tls":
            ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=settings.ca_certificates)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            if client is not None:
                ctx.load_cert_chain(client.certificate, client.private_key)
            self._tls = ctx
        else:
            family = socket.AF_INET6 if ":" in settings.syslog_host else socket.AF_INET
            self._udp = socket.socket(family, socket.SOCK_DGRAM)

    def send(self, frame: bytes) -> None:
        if self._udp is not None:
            self._udp.sendto(frame, self.address)
            return
        assert self._tls is not None
        for attempt in (1, 2):  # a connection the receiver closed is reopened once
            try:
                if self._conn is None:
                    raw = socket.create_connection(self.address, timeout=10)
                    self._conn = self._tls.wrap_socket(raw, server_hostname=self.address[0])
                self._conn.sendall(f"{len(frame)} ".encode("ascii") + frame)
                return
            except OSError:
                self.close()
                if attempt == 2:
                    raise

    def close(self) -> None:
        for sock in (self._conn, self._udp):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()
        self._conn = None


class Auditor:
    """Turns the node's association answers and the ledger's events into audit messages.

    Messages are queued and sent by a thread of their own, so a slow receiver never holds an association.
    """

    #: Messages waiting beyond this are dropped (and logged): the ledger keeps the trail regardless.
    QUEUE_LIMIT = 10_000

    def __init__(self, settings: AuditSettings, ae_title: str, ledger: Ledger,
                 clock: Callable[[], float] = time.time, client_tls: TLSSettings | None = None) -> None:
        self._settings = settings
        self._ae_title = ae_title
        self._source_id = settings.source_id or ae_title
        self._ledger = ledger
        self._clock = clock
        self._transport = _Transport(settings, client_tls)
        self._queue: queue.Queue[bytes | None] = queue.Queue(self.QUEUE_LIMIT)
        self._thread = threading.Thread(target=self._run, name="dermnode-audit", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Send what is queued, then close."""
        self._queue.put(None)
        self._thread.join(timeout=30)
        self._transport.close()

    def _run(self) -> None:
        while (frame := self._queue.get()) is not None:
            try:
                self._transport.send(frame)
            except OSError as e:
                LOG.warning("audit message to %s:%d not sent: %s", *self._transport.address, e)

    def send(self, message: AuditMessage, at: float | None = None) -> None:
        frame = syslog_frame(message.source(self._source_id).xml(), self._clock() if at is None else at,
                             self._settings.app_name)
        try:
            self._queue.put_nowait(frame)
        except queue.Full:
            LOG.error("audit queue full (%d): message dropped; is %s:%d reachable?", self.QUEUE_LIMIT,
                      *self._transport.address)

    def application_activity(self, started: bool) -> None:
        msg = AuditMessage(APPLICATION_ACTIVITY, "E", SUCCESS, self._clock(),
                           APPLICATION_START if started else APPLICATION_STOP)
        self.send(msg.participant(self._ae_title, False, APPLICATION))

    def on_association(self, attempt: AssociationAttempt) -> None:
        if attempt.accepted:
            return
        msg = AuditMessage(SECURITY_ALERT, "E", MINOR_FAILURE, self._clock(), NODE_AUTHENTICATION,
                           f"association rejected: {attempt.advice}")
        msg.participant(self._ae_title, False, DESTINATION)
        msg.participant(attempt.calling_ae or "UNKNOWN", True, SOURCE, attempt.peer_host)
        self.send(msg.node(f"{attempt.calling_ae}@{attempt.peer_host}", attempt.advice))

    def on_event(self, event: Event) -> None:
        kind, detail = event.kind, _detail(event)
        if kind in ("peer-added", "peer-removed", "destination-added", "destination-removed"):
            msg = AuditMessage(SECURITY_ALERT, "E", SUCCESS, event.at, NETWORK_CONFIGURATION, kind)
            msg.participant(str(detail.get("by", "unknown")), True)
            msg.participant(self._ae_title, False, APPLICATION)
            self.send(msg.node(str(detail.get("ae_title", "")), json.dumps(detail.get("entry", {}))), event.at)
        elif kind == "study-complete":
            self._instances_stored(event)
        elif kind in ("delivery-delivered", "delivery-failed"):
            self._results_sent(event, str(detail.get("destination", "")), kind == "delivery-delivered",
                               str(detail.get("detail", "")))

    def _instances_stored(self, event: Event) -> None:
        study = self._ledger.study(event.study_uid)
        if study is None:
            return
        classes: dict[str, int] = {}
        for inst in self._ledger.instances(event.study_uid):
            classes[inst.sop_class_uid] = classes.get(inst.sop_class_uid, 0) + 1
        msg = AuditMessage(INSTANCES_TRANSFERRED, "C", SUCCESS, event.at)
        msg.participant(study.calling_ae, True, SOURCE, study.peer_host)
        msg.participant(self._ae_title, False, DESTINATION)
        self.send(msg.study(event.study_uid, classes).patient(study.patient_id), event.at)

    def _results_sent(self, event: Event, destination: str, ok: bool, why: str) -> None:
        study = self._ledger.study(event.study_uid)
        classes: dict[str, int] = {}
        for out in self._ledger.outputs(event.study_uid, study.generation if study else None):
            classes[out["sop_class_uid"]] = classes.get(out["sop_class_uid"], 0) + 1
        msg = AuditMessage(INSTANCES_TRANSFERRED, "R", SUCCESS if ok else SERIOUS_FAILURE, event.at,
                           outcome_description="" if ok else why)
        msg.participant(self._ae_title, True, SOURCE)
        ae, _, host = destination.partition("@")
        msg.participant(ae, False, DESTINATION, host.rsplit(":", 1)[0] or None)
        self.send(msg.study(event.study_uid, classes).patient(study.patient_id if study else ""), event.at)
