"""The ``dermnode`` command, the one composition root: it builds the settings, then wires the DICOM edge
(:mod:`dicom_node`) to the application layer (:mod:`workers`) for ``serve`` and ``worker``; ``studies`` and
``purge`` read the ledger; the admin commands (``peers``, ``destinations``, ``echo``, ``resend``) are in
:mod:`.admin`; the model commands (``train``, ``pack``, ``evaluate``) are in :mod:`.models`."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import shutil
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from dermnode import __version__
from dermnode.cli.admin import register as register_admin_commands
from dermnode.cli.models import register as register_model_commands
from dermnode.kernel.errors import DermnodeError
from dermnode.kernel.settings import Settings, load_settings

LOG = logging.getLogger("dermnode")


def _common(parser: argparse.ArgumentParser, data_dir: bool = True) -> None:
    """Options of every command; ``data_dir`` False for a worker, which has none (it reaches the node)."""
    parser.add_argument("--config", type=Path, help="YAML settings file (see config/dermnode.yaml)")
    if data_dir:
        parser.add_argument("--data-dir", type=Path, help="spool, ledger and outbox folder [DERMNODE_DATA_DIR]")
    parser.add_argument("--broker", dest="broker_url", metavar="URL",
                        help="Celery broker, e.g. redis://127.0.0.1:6379/0; none = embedded [DERMNODE_BROKER_URL]")
    parser.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument("--log-format", choices=["text", "json"], help="text or JSON lines [DERMNODE_LOG_FORMAT]")
    parser.add_argument("--stalled-after", type=float, metavar="SECONDS", dest="stalled_after",
                        help="re-queue a study without progress this long, e.g. after a killed worker "
                        "(default 120) [DERMNODE_STALLED_AFTER_S]")
    parser.add_argument("--visibility-timeout", type=float, metavar="SECONDS", dest="visibility_timeout",
                        help="Redis: redeliver a task unacknowledged this long (default 600) "
                        "[DERMNODE_VISIBILITY_TIMEOUT_S]")


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    keys = {
        "port": "port", "ae_title": "ae_title", "bind": "bind_address", "data_dir": "data_dir",
        "broker_url": "broker_url", "quiet_period": "completion.quiet_period_s", "device": "device",
        "classifier": "classifier_bundle", "segmenter": "segmenter_bundle", "log_level": "log_level",
        "http_port": "http_port", "http_bind": "http_bind_address", "log_format": "log_format",
        "stalled_after": "stalled_after_s", "visibility_timeout": "visibility_timeout_s",
        "worker_api_port": "worker_api_port", "worker_api_bind": "worker_api_bind_address",
        "worker_api_url": "worker_api_url", "batch_size": "batch_size", "batch_wait": "batch_wait_s",
    }
    out: dict[str, Any] = {key: getattr(args, attr) for attr, key in keys.items() if hasattr(args, attr)}
    if getattr(args, "allow", None):
        out["allowed_peers"] = args.allow
    if getattr(args, "destination", None):
        out["destinations"] = args.destination
    return out


def settings_from(args: argparse.Namespace) -> Settings:
    return load_settings(args.config, os.environ, _overrides(args))


def _logging(settings: Settings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        from dermnode.ops.logs import JsonFormatter

        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=settings.log_level, handlers=[handler], force=True)
    for noisy in ("pynetdicom", "highdicom", "celery.app.trace", "PIL"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(settings.log_level)))
    # pydicom's warnings quote attribute values (a malformed Patient Name, a Patient ID): at INFO and above
    # they are kept out of the log; DEBUG shows them for troubleshooting.
    logging.captureWarnings(True)
    quiet = logging.DEBUG if settings.log_level == "DEBUG" else logging.CRITICAL
    for quoting in ("pydicom", "py.warnings"):
        logging.getLogger(quoting).setLevel(quiet)


def _serve_until_stopped(on_reload: Callable[[], None]) -> None:
    """Wait for SIGTERM or SIGINT (return: the caller drains and stops); SIGHUP calls ``on_reload``."""
    wake = threading.Event()
    received: list[int] = []

    def note(signum: int, _frame: object) -> None:
        received.append(signum)
        wake.set()

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, note)
    while True:
        wake.wait()
        wake.clear()
        while received:
            signum = received.pop(0)
            if signum != signal.SIGHUP:
                LOG.info("%s received: draining", signal.Signals(signum).name)
                return
            LOG.info("SIGHUP received: reloading the configuration")
            try:
                on_reload()
            except DermnodeError as e:
                LOG.error("reload failed, the running configuration stays: %s", e)


def model_versions(settings: Settings) -> dict[str, str]:
    """Name → version of the bundles in use, from their metadata (no torch), for the metrics."""
    import json

    import inference

    shipped = Path(inference.__file__).parent / "bundles"
    out = {}
    bundles = (settings.classifier_bundle or shipped / "classifier", settings.segmenter_bundle or shipped / "segmenter")
    for bundle in bundles:
        try:
            meta = json.loads((bundle / "configs" / "metadata.json").read_text(encoding="utf-8"))
            out[str(meta.get("name", bundle.name)).replace("-", "_")] = str(meta.get("version", "unknown"))
        except (OSError, ValueError):
            out[bundle.name.replace("-", "_")] = "unreadable"
    return out


def _worker_api_url(settings: Settings, port: int) -> str:
    """What workers connect to: ``worker_api_url``, else this host's name (or the bound address) and port."""
    import socket

    if settings.worker_api_url:
        return settings.worker_api_url
    scheme = "https" if settings.tls else "http"
    host = settings.worker_api_bind_address
    if host in ("0.0.0.0", "::", ""):
        host = socket.getfqdn()
    return f"{scheme}://{host}:{port}" if ":" not in host else f"{scheme}://[{host}]:{port}"


def cmd_serve(args: argparse.Namespace) -> int:
    from dermnode.ops.server import HttpServer
    from dermnode.ops.side import OpsSide
    from dicom_node.dispatch import Dispatcher
    from dicom_node.intake import max_dataset_bytes
    from dicom_node.node import Node
    from dicom_node.worker_api import build_worker_api
    from workers.app import build_runtime, create_app
    from workers.dispatch import ANALYSE_TASK, CeleryDispatcher, InProcessDispatcher
    from workers.link import LocalLink

    settings = settings_from(args)
    _logging(settings)
    embedded = None if settings.broker_url else InProcessDispatcher()
    dispatcher: Dispatcher = embedded or CeleryDispatcher(create_app(settings), settings.queue_name)
    node = Node(settings, dispatcher)
    worker_api: HttpServer | None = None
    try:
        if embedded is not None:
            runtime = build_runtime(settings, embedded_link=LocalLink(node.assignments))
            runtime.analysis.analyzer  # noqa: B018  (load the models now: a bad bundle fails at start, not later)
            task = runtime.app.tasks[ANALYSE_TASK]
            embedded.bind(lambda message: task.apply(kwargs={"message": message}).get())
            LOG.info("embedded worker: analysing in this process (no broker configured)")
        else:
            # Outputs can be as large as a 16-bit image at the pixel limit; one object per request.
            app = build_worker_api(node.assignments, node.tokens, 2 * max_dataset_bytes(settings.max_image_pixels))
            # With TLS configured for DICOM, the worker API is HTTPS with the same certificate.
            tls = (settings.tls.certificate, settings.tls.private_key) if settings.tls else None
            worker_api = HttpServer(app, settings.worker_api_bind_address, settings.worker_api_port,
                                    what="worker API (WADO-RS, STOW-RS, job events)", tls=tls).start()
            node.worker_url = _worker_api_url(settings, worker_api.port)
            LOG.info("queueing complete studies to %s (queue %s); workers reach this node at %s",
                     settings.broker_url, settings.queue_name, node.worker_url)
        ops = OpsSide(node, model_versions(settings))
        node.start()
    except BaseException:
        if worker_api is not None:
            worker_api.stop()
        node.stop()
        raise
    try:
        ops.start()
    except DermnodeError:
        node.stop()
        raise
    print(f"dermnode {settings.ae_title} listening on {settings.bind_address}:{node.port}", flush=True)
    if ops.http is not None:
        print(f"dermnode HTTP on http://{settings.http_bind_address}:{ops.http.port}", flush=True)
    if node.worker_url is not None:
        print(f"dermnode worker API on {node.worker_url}", flush=True)

    def reload() -> None:
        node.reload(settings_from(args))

    try:
        _serve_until_stopped(reload)
    finally:
        left = node.drain(timeout_s=settings.network_timeout_s)
        ops.stop()
        if worker_api is not None:
            worker_api.stop()
        node.stop()
        LOG.info("stopped%s", f" ({left} association(s) cut off)" if left else " cleanly")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from workers.app import create_app

    settings = settings_from(args)
    _logging(settings)
    if not settings.broker_url:
        raise DermnodeError("dermnode worker needs a broker: pass --broker redis://HOST:6379/0 or set broker_url")
    queues = args.queues or [settings.queue_name]
    app = create_app(settings)
    argv = [
        "worker", "--queues", ",".join(queues), "--concurrency", str(args.concurrency),
        "--pool", args.pool, "--loglevel", settings.log_level, "--without-gossip", "--without-mingle",
    ]
    if args.hostname:
        argv += ["--hostname", args.hostname]
    app.worker_main(argv)
    return 0


def cmd_studies(args: argparse.Namespace) -> int:
    from dicom_node.ledger import Ledger

    settings = settings_from(args)
    if not settings.ledger_path.exists():
        print(f"no ledger at {settings.ledger_path}: nothing received yet (check --data-dir)")
        return 1
    ledger = Ledger(settings.ledger_path)
    for s in ledger.studies():
        when = dt.datetime.fromtimestamp(s.last_received, dt.UTC).isoformat(timespec="seconds")
        print(f"{s.study_uid}  {s.state:<10} gen={s.generation} n={s.instance_count} from={s.calling_ae} "
              f"last={when} {s.reason}")
        if args.events:
            for e in ledger.events(s.study_uid):
                print(f"    {dt.datetime.fromtimestamp(e.at, dt.UTC).isoformat(timespec='milliseconds')} "
                      f"{e.kind} {e.sop_instance_uid} {e.detail}")
    return 0


def cmd_purge(args: argparse.Namespace) -> int:
    """Delete the spooled images and outputs of finished studies older than --older-than days."""
    from dicom_node.ledger import Ledger, StudyState

    settings = settings_from(args)
    if not settings.ledger_path.is_file():
        raise DermnodeError(f"no ledger at {settings.ledger_path}: check --data-dir (nothing was purged)")
    ledger = Ledger(settings.ledger_path)
    cutoff = dt.datetime.now(dt.UTC).timestamp() - args.older_than * 86400
    states = [StudyState.DELIVERED, StudyState.ANALYSED] + ([StudyState.FAILED] if args.include_failed else [])
    purged = 0
    for study in ledger.studies(states):
        if study.updated > cutoff:
            continue
        if args.dry_run:
            print(f"would purge {study.study_uid} ({study.state}, {study.instance_count} instance(s))")
            continue
        for path in ledger.forget_files(study.study_uid):
            path.unlink(missing_ok=True)
        for folder in (settings.spool_dir / study.study_uid, settings.outbox_dir / study.study_uid):
            shutil.rmtree(folder, ignore_errors=True)
        purged += 1
        print(f"purged {study.study_uid} ({study.state})")
    print(f"{purged} stud(y/ies) purged; the ledger keeps their audit trail")
    return 0


def cmd_wrap_jpeg(args: argparse.Namespace) -> int:
    """Wrap dermatoscope JPEGs as one Dermoscopic Photography study, ready for storescu."""
    from dicom_node.dermoscopy import Device, Patient, wrap_files

    patient = Patient(args.patient_id, args.patient_name, args.birth_date, args.sex)
    device = Device(args.manufacturer, args.model, args.serial)
    written = wrap_files(args.images, args.out, patient, laterality=args.laterality, accession=args.accession,
                         device=device)
    for path in written:
        print(path)
    print(f"{len(written)} image(s) wrapped as one study in {args.out}; send with: "
          f"storescu -R -xy -aec DERMNODE HOST 11112 {args.out}/*.dcm", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dermnode",
        description="DICOM node for dermoscopy AI: receives studies (C-STORE), analyses them with MONAI "
        "bundles and returns a TID 1500 SR and DICOM SEG. Outputs are AI-generated, not for diagnostic use.",
    )
    parser.add_argument("--version", action="version", version=f"dermnode {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the node (embedded worker unless a broker is configured)")
    _common(serve)
    serve.add_argument("--port", type=int, help="TCP port to listen on (0 = any free port) [DERMNODE_PORT]")
    serve.add_argument("--bind", help="address to listen on [DERMNODE_BIND_ADDRESS]")
    serve.add_argument("--ae-title", help="our AE title; calls to another title are rejected [DERMNODE_AE_TITLE]")
    serve.add_argument("--allow", action="append", metavar="AE[@HOST[:PORT]]",
                       help="calling AE allowed to send (repeatable); PORT is where it listens, for the "
                       "'sender' destination [DERMNODE_ALLOW, comma-separated]")
    serve.add_argument("--destination", action="append", metavar="AE@HOST:PORT|sender",
                       help="where SR + SEG are sent (repeatable) [DERMNODE_DESTINATIONS]")
    serve.add_argument("--quiet-period", type=float, metavar="SECONDS",
                       help="a study is complete this long after its last instance [DERMNODE_QUIET_PERIOD]")
    serve.add_argument("--classifier", type=Path, help="classifier bundle folder (default: shipped)")
    serve.add_argument("--segmenter", type=Path, help="segmenter bundle folder (default: shipped)")
    serve.add_argument("--device", choices=["cpu", "cuda", "auto"], help="where the embedded worker runs models")
    serve.add_argument("--http-port", type=int, metavar="PORT",
                       help="serve /healthz, /readyz, /metrics, the admin API and the status page on this port "
                       "(0 = any free port) [DERMNODE_HTTP_PORT]")
    serve.add_argument("--http-bind", metavar="ADDRESS",
                       help="address of the HTTP side (default 127.0.0.1) [DERMNODE_HTTP_BIND_ADDRESS]")
    serve.add_argument("--worker-api-port", type=int, dest="worker_api_port", metavar="PORT",
                       help="with --broker: port of the worker API that workers read images and store results "
                       "through (default 11180, 0 = any free port) [DERMNODE_WORKER_API_PORT]")
    serve.add_argument("--worker-api-bind", dest="worker_api_bind", metavar="ADDRESS",
                       help="address of the worker API (default 0.0.0.0) [DERMNODE_WORKER_API_BIND_ADDRESS]")
    serve.add_argument("--worker-api-url", dest="worker_api_url", metavar="URL",
                       help="URL workers use to reach the worker API (default http://<host name>:<port>) "
                       "[DERMNODE_WORKER_API_URL]")
    serve.set_defaults(func=cmd_serve)

    worker = sub.add_parser("worker", help="run a Celery worker for the configured broker (one per GPU)")
    _common(worker, data_dir=False)
    worker.add_argument("--classifier", type=Path, help="classifier bundle folder (default: shipped)")
    worker.add_argument("--segmenter", type=Path, help="segmenter bundle folder (default: shipped)")
    worker.add_argument("--device", choices=["cpu", "cuda", "auto"], help="where models run")
    worker.add_argument("--concurrency", type=int, default=1,
                        help="jobs at once (default 1); with --pool threads their images share forward passes")
    worker.add_argument("--pool", default="threads", choices=["threads", "solo", "prefork"],
                        help="Celery pool (default threads: one model copy per process, batches across jobs)")
    worker.add_argument("--batch-size", type=int, dest="batch_size",
                        help="images per forward pass across concurrent jobs (default 8) [DERMNODE_BATCH_SIZE]")
    worker.add_argument("--batch-wait", type=float, dest="batch_wait", metavar="SECONDS",
                        help="longest wait for a fuller pass (default 0.05) [DERMNODE_BATCH_WAIT_S]")
    worker.add_argument("--hostname", help="Celery node name, e.g. gpu0@%%h")
    worker.add_argument("--queues", type=lambda v: [q for q in v.split(",") if q],
                        help="Celery queues to take analysis jobs from (default: queue_name, dermnode.analysis)")
    worker.set_defaults(func=cmd_worker)

    studies = sub.add_parser("studies", help="list studies in the ledger with their state (audit)")
    _common(studies)
    studies.add_argument("--events", action="store_true", help="also print each study's audit trail")
    studies.set_defaults(func=cmd_studies)

    purge = sub.add_parser("purge", help="delete images and outputs of finished studies (retention)")
    _common(purge)
    purge.add_argument("--older-than", type=float, required=True, metavar="DAYS",
                       help="only studies finished at least this many days ago")
    purge.add_argument("--include-failed", action="store_true", help="also purge failed studies")
    purge.add_argument("--dry-run", action="store_true", help="list what would be purged")
    purge.set_defaults(func=cmd_purge)

    wrap = sub.add_parser("wrap-jpeg", help="wrap dermatoscope JPEGs as a DICOM dermoscopy study (no re-encoding)")
    wrap.add_argument("images", nargs="+", type=Path, help="baseline JPEG files, one study")
    wrap.add_argument("--out", type=Path, required=True, help="folder for the .dcm files")
    wrap.add_argument("--patient-id", required=True, help="Patient ID as the PACS knows the patient")
    wrap.add_argument("--patient-name", default="", help="DICOM person name, e.g. 'Doe^Jane'")
    wrap.add_argument("--birth-date", default="", help="YYYYMMDD")
    wrap.add_argument("--sex", default="", choices=["", "F", "M", "O"])
    wrap.add_argument("--laterality", default="", choices=["", "L", "R", "U", "B"], help="image laterality")
    wrap.add_argument("--accession", default="", help="accession number of the order, if any")
    wrap.add_argument("--manufacturer", default="UNKNOWN", help="dermatoscope manufacturer")
    wrap.add_argument("--model", default="UNKNOWN", help="dermatoscope model")
    wrap.add_argument("--serial", default="UNKNOWN", help="dermatoscope serial number")
    wrap.set_defaults(func=cmd_wrap_jpeg)

    register_admin_commands(sub, _common, settings_from)
    register_model_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except DermnodeError as e:
        print(f"dermnode: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
