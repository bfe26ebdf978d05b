"""One typed settings object for the node and the workers.

Sources, later ones winning: built-in defaults < YAML file (``--config``) < environment variables
(``DERMNODE_*``) < command-line flags. Nothing is read from the environment at import time:
:func:`load_settings` is called once by the CLI and the result is passed explicitly.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from dermnode.kernel.addresses import Address, check_ae_title
from dermnode.kernel.errors import ConfigurationError
from dermnode.kernel.images import DEFAULT_MAX_DECODE_S, DEFAULT_MAX_IMAGE_PIXELS
from dermnode.kernel.retry import RetryPolicy
from dermnode.kernel.uids import DEFAULT_UID_PREFIX

SENDER = "sender"
"""The destination word for "reply to the calling AE at the port of its allow-list entry"."""

#: A configured destination: a fixed address, or :data:`SENDER`.
Destination = Address | Literal["sender"]


def describe_destination(destination: Destination) -> str:
    return destination if isinstance(destination, str) else destination.describe()


class TLSSettings(BaseModel):
    """Our certificate and key, and the CA bundle that peers' certificates must chain to."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    certificate: Path
    private_key: Path
    ca_certificates: Path | None = None
    require_client_certificate: bool = True
    verify_hostname: bool = True


class CompletionPolicy(BaseModel):
    """When a study counts as complete (all optional limits combine with the quiet period).

    A study is complete once no association is sending it and ``quiet_period_s`` seconds passed
    without a new instance; or as soon as ``expected_instances`` arrived; or at ``deadline_s``
    after its first instance, whichever comes first.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    quiet_period_s: float = Field(default=3.0, ge=0.0, le=3600.0)
    expected_instances: int | None = Field(default=None, ge=1)
    deadline_s: float | None = Field(default=None, gt=0.0)


class Peer(BaseModel):
    """A calling AE allowed to send to us, optionally pinned to a host and with a port to reply to."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ae_title: str
    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    completion: CompletionPolicy | None = None

    @field_validator("ae_title")
    @classmethod
    def _ae(cls, v: str) -> str:
        return check_ae_title(v, "allowed peer AE title")

    @field_validator("host")
    @classmethod
    def _ip(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            return str(ipaddress.ip_address(v))
        except ValueError as e:
            raise ValueError(
                f"allowed peer host {v!r} must be an IP address (associations are matched by address)"
            ) from e

    @classmethod
    def parse(cls, text: str) -> Peer:
        """Parse ``AE``, ``AE@HOST`` or ``AE@HOST:PORT`` (as given to ``--allow``)."""
        ae, _, rest = text.partition("@")
        host: str | None = None
        port: int | None = None
        if rest:
            host, sep, port_text = rest.rpartition(":")
            if not sep:
                host, port_text = rest, ""
            if port_text:
                if not port_text.isdigit():
                    raise ConfigurationError(f"--allow {text!r}: port {port_text!r} is not a number")
                port = int(port_text)
        return cls(ae_title=ae, host=host or None, port=port)


class AuditSettings(BaseModel):
    """Where DICOM audit messages (PS3.15 A.5) go: an RFC 5424 syslog receiver over UDP (RFC 5426) or
    TLS (RFC 5425, as IHE ATNA requires across untrusted networks)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    syslog_host: str
    #: Default 514 for UDP, 6514 for TLS.
    syslog_port: int | None = Field(default=None, ge=1, le=65535)
    transport: Literal["udp", "tls"] = "udp"
    #: CA bundle the receiver's certificate must chain to (TLS); None = the system's CAs.
    ca_certificates: Path | None = None
    #: AuditSourceID of the messages (PS3.15 A.5.3.3); defaults to our AE title.
    source_id: str | None = None
    #: RFC 5424 APP-NAME.
    app_name: str = "dermnode"

    @property
    def port(self) -> int:
        return self.syslog_port or (6514 if self.transport == "tls" else 514)


class Settings(BaseModel):
    """Everything the node and the workers are configured with."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ae_title: str = "DERMNODE"
    bind_address: str = "0.0.0.0"
    port: int = Field(default=11112, ge=0, le=65535)
    allowed_peers: tuple[Peer, ...] = ()
    destinations: tuple[Destination, ...] = ()
    data_dir: Path = Path("dermnode-data")
    completion: CompletionPolicy = CompletionPolicy()
    tls: TLSSettings | None = None
    broker_url: str | None = None
    result_backend: str | None = None
    queue_name: str = "dermnode.analysis"
    classifier_bundle: Path | None = None
    segmenter_bundle: Path | None = None
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    attention_maps: bool = True
    #: A study queued, analysing or delivering without progress this long is queued again (a killed worker).
    #: Workers beat the study's heartbeat every quarter of it while they analyse.
    stalled_after_s: float = Field(default=120.0, ge=10.0)
    visibility_timeout_s: float = Field(default=600.0, ge=60.0)
    #: Deliveries retry with capped exponential back-off for ``send_retry_period_s`` (default 24 h), then fail;
    #: ``send_attempts`` optionally caps the number of tries as well.
    send_attempts: int | None = Field(default=None, ge=1)
    #: Analysis that runs out of disk space is retried this many times in all, with back-off from analysis_backoff_s.
    analysis_attempts: int = Field(default=6, ge=1, le=100)
    analysis_backoff_s: float = Field(default=5.0, ge=0.0, le=600.0)
    analysis_backoff_max_s: float = Field(default=300.0, ge=0.0)
    #: New instances are refused with 0xA700 when the spool's file system has less free space than this.
    min_free_disk_mb: int = Field(default=1024, ge=0)
    #: Deliveries the node runs at once (each one association to one destination).
    delivery_threads: int = Field(default=4, ge=1, le=32)
    send_backoff_s: float = Field(default=2.0, ge=0.0, le=600.0)
    send_backoff_max_s: float = Field(default=600.0, ge=0.0)
    send_retry_period_s: float = Field(default=86400.0, ge=0.0)
    max_pdu_size: int = Field(default=131072, ge=0)
    network_timeout_s: float = Field(default=30.0, gt=0.0)
    #: A connection that sends no A-ASSOCIATE-RQ within this is closed (ARTIM, also the ACSE timeout).
    association_request_timeout_s: float = Field(default=5.0, gt=0.0, le=600.0)
    #: Total time budget of one incoming association.
    association_max_s: float = Field(default=3600.0, gt=0.0)
    #: Each PDU must arrive within network_timeout_s plus its length at this rate (bytes per second).
    min_receive_rate: float = Field(default=8192.0, gt=0.0)
    #: Concurrent incoming associations per peer address (of the 10 the node serves).
    max_associations_per_host: int = Field(default=4, ge=1, le=10)
    #: Intake refuses an image with more pixels (Rows × Columns, or what a compressed frame header claims).
    max_image_pixels: int = Field(default=DEFAULT_MAX_IMAGE_PIXELS, ge=1)
    #: Intake decodes compressed pixel data in decoder processes; one that takes longer on a frame is
    #: killed and replaced, and the instance refused with 0xC000.
    max_decode_s: float = Field(default=DEFAULT_MAX_DECODE_S, gt=0.0, le=600.0)
    #: Decoder processes of the decode sandbox: compressed instances of this many associations are decoded
    #: at once, the others wait for a free one.
    decode_workers: int = Field(default=2, ge=1, le=10)
    uid_prefix: str = DEFAULT_UID_PREFIX
    #: With a broker, workers on other hosts reach the node's worker API here (WADO-RS, STOW-RS, job events).
    worker_api_port: int = Field(default=11180, ge=0, le=65535)
    worker_api_bind_address: str = "0.0.0.0"
    #: The URL workers use for the worker API; default ``http://<this host's name>:<worker_api_port>``.
    worker_api_url: str | None = None
    #: A worker analyses images of up to this many images of concurrently running jobs in one forward pass,
    #: waiting at most ``batch_wait_s`` for jobs that are still reading their images.
    batch_size: int = Field(default=8, ge=1, le=256)
    batch_wait_s: float = Field(default=0.05, ge=0.0, le=5.0)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    #: The HTTP side (health, metrics, admin API, status page); None = off. 0 = any free port.
    http_port: int | None = Field(default=None, ge=0, le=65535)
    http_bind_address: str = "127.0.0.1"
    #: Bearer token of the admin API and page (``DERMNODE_ADMIN_TOKEN``); None = admin API refuses everyone.
    admin_token: SecretStr | None = None
    #: /healthz fails when the spool's file system has less free space than this.
    spool_min_free_mb: float = Field(default=1024.0, ge=0.0)
    audit: AuditSettings | None = None

    @field_validator("ae_title")
    @classmethod
    def _ae(cls, v: str) -> str:
        return check_ae_title(v, "our AE title (ae_title)")

    @model_validator(mode="after")
    def _tls_destinations_need_tls(self) -> Settings:
        needing = [d.describe() for d in self.destinations if isinstance(d, Address) and d.tls]
        if needing and self.tls is None:
            raise ValueError(f"destinations {', '.join(needing)} use TLS: configure tls (certificate, private_key)")
        return self

    @field_validator("worker_api_url")
    @classmethod
    def _worker_url(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"https?://[^/\s]+(/[^\s]*)?", v):
            raise ValueError(f"worker_api_url {v!r} must be an http:// or https:// URL, e.g. http://node.example:11180")
        return v.rstrip("/") if v else v

    @field_validator("uid_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if not re.fullmatch(r"(\d+\.)+", v) or len(v) > 40:
            raise ValueError(f"uid_prefix {v!r} must be dotted digits ending in '.', at most 40 characters")
        return v

    @property
    def delivery_retry(self) -> RetryPolicy:
        """The retry policy of deliveries: back-off from ``send_backoff_s`` up to ``send_backoff_max_s``, for
        ``send_retry_period_s`` (and at most ``send_attempts`` tries when set)."""
        return RetryPolicy(self.send_attempts, self.send_backoff_s, self.send_backoff_max_s,
                           period_s=self.send_retry_period_s)

    @property
    def analysis_retry(self) -> RetryPolicy:
        """The retry policy of analysis that failed for lack of disk space."""
        return RetryPolicy(self.analysis_attempts, self.analysis_backoff_s, self.analysis_backoff_max_s)

    @property
    def spool_dir(self) -> Path:
        return self.data_dir / "spool"

    @property
    def outbox_dir(self) -> Path:
        return self.data_dir / "outbox"

    @property
    def ledger_path(self) -> Path:
        return self.data_dir / "ledger.sqlite3"

    def peer(self, ae_title: str) -> Peer | None:
        """The configured peer entry for a calling AE title, if any."""
        return next((p for p in self.allowed_peers if p.ae_title == ae_title), None)

    def completion_for(self, ae_title: str) -> CompletionPolicy:
        """The completion policy of a calling AE: its own, or the node default."""
        peer = self.peer(ae_title)
        return peer.completion if peer and peer.completion else self.completion


#: environment variable → settings key; list-valued ones take comma-separated items.
ENVIRONMENT = {
    "DERMNODE_AE_TITLE": "ae_title",
    "DERMNODE_BIND_ADDRESS": "bind_address",
    "DERMNODE_PORT": "port",
    "DERMNODE_ALLOW": "allowed_peers",
    "DERMNODE_DESTINATIONS": "destinations",
    "DERMNODE_DATA_DIR": "data_dir",
    "DERMNODE_QUIET_PERIOD": "completion.quiet_period_s",
    "DERMNODE_BROKER_URL": "broker_url",
    "DERMNODE_QUEUE": "queue_name",
    "DERMNODE_WORKER_API_PORT": "worker_api_port",
    "DERMNODE_WORKER_API_BIND_ADDRESS": "worker_api_bind_address",
    "DERMNODE_WORKER_API_URL": "worker_api_url",
    "DERMNODE_BATCH_SIZE": "batch_size",
    "DERMNODE_BATCH_WAIT_S": "batch_wait_s",
    "DERMNODE_RESULT_BACKEND": "result_backend",
    "DERMNODE_CLASSIFIER_BUNDLE": "classifier_bundle",
    "DERMNODE_SEGMENTER_BUNDLE": "segmenter_bundle",
    "DERMNODE_DEVICE": "device",
    "DERMNODE_LOG_LEVEL": "log_level",
    "DERMNODE_LOG_FORMAT": "log_format",
    "DERMNODE_HTTP_PORT": "http_port",
    "DERMNODE_HTTP_BIND_ADDRESS": "http_bind_address",
    "DERMNODE_ADMIN_TOKEN": "admin_token",
    "DERMNODE_MAX_IMAGE_PIXELS": "max_image_pixels",
    "DERMNODE_MAX_DECODE_S": "max_decode_s",
    "DERMNODE_DECODE_WORKERS": "decode_workers",
    "DERMNODE_STALLED_AFTER_S": "stalled_after_s",
    "DERMNODE_VISIBILITY_TIMEOUT_S": "visibility_timeout_s",
    "DERMNODE_MIN_FREE_DISK_MB": "min_free_disk_mb",
}


def _set_path(target: dict[str, Any], dotted: str, value: Any) -> None:
    head, _, rest = dotted.partition(".")
    if rest:
        sub = target.setdefault(head, {})
        if not isinstance(sub, dict):
            sub = dict(sub)
            target[head] = sub
        _set_path(sub, rest, value)
    else:
        target[head] = value


def _coerce_list(key: str, value: Any) -> Any:
    """Turn ``AE@HOST`` / ``AE@HOST:PORT`` strings (from flags, env, YAML) into mappings."""
    if key not in ("allowed_peers", "destinations"):
        return value
    items = value.split(",") if isinstance(value, str) else list(value)
    out: list[Any] = []
    for item in items:
        if not isinstance(item, str):
            out.append(item)
        elif not item.strip():
            continue
        elif key == "allowed_peers":
            out.append(Peer.parse(item.strip()).model_dump(exclude_none=True))
        elif item.strip().lower() == SENDER:
            out.append(SENDER)
        else:
            out.append(Address.parse(item.strip()))
    return out


def load_settings(
    config_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Merge defaults, the YAML file, ``DERMNODE_*`` variables and explicit overrides (dotted keys)."""
    merged: dict[str, Any] = {}
    if config_file is not None:
        try:
            loaded = yaml.safe_load(config_file.read_text(encoding="utf-8")) or {}
        except FileNotFoundError as e:
            raise ConfigurationError(f"config file {config_file} does not exist: check --config") from e
        except yaml.YAMLError as e:
            raise ConfigurationError(f"config file {config_file} is not valid YAML: {e}") from e
        if not isinstance(loaded, dict):
            raise ConfigurationError(f"config file {config_file} must hold a mapping of settings at the top")
        merged.update(loaded)
    for var, key in ENVIRONMENT.items():
        if environ is not None and var in environ:
            _set_path(merged, key, environ[var])
    for key, value in (overrides or {}).items():
        if value is not None:
            _set_path(merged, key, value)
    try:
        for key in ("allowed_peers", "destinations"):
            if key in merged:
                merged[key] = _coerce_list(key, merged[key])
        return Settings.model_validate(merged)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}" for err in e.errors()
        )
        source = f" (from {config_file})" if config_file else ""
        raise ConfigurationError(f"invalid settings{source}: {problems}") from e
