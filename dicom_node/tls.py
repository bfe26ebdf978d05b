"""DICOM over TLS (PS3.15 B.1, BCP 195): SSL contexts for the SCP and for deliveries."""

from __future__ import annotations

import ssl

from dermnode.kernel.errors import ConfigurationError
from dermnode.kernel.settings import TLSSettings


def _load(ctx: ssl.SSLContext, tls: TLSSettings) -> ssl.SSLContext:
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # BCP 195
    try:
        ctx.load_cert_chain(tls.certificate, tls.private_key)
        if tls.ca_certificates is not None:
            ctx.load_verify_locations(tls.ca_certificates)
    except (OSError, ssl.SSLError) as e:
        raise ConfigurationError(
            f"TLS: cannot load certificate {tls.certificate}, key {tls.private_key} or CA bundle "
            f"{tls.ca_certificates}: {e}; check the tls settings (PEM files, key matching the certificate)"
        ) from e
    return ctx


def server_context(tls: TLSSettings) -> ssl.SSLContext:
    """Context for the SCP: presents our certificate; asks peers for theirs unless told otherwise."""
    ctx = _load(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), tls)
    if tls.require_client_certificate:
        if tls.ca_certificates is None:
            raise ConfigurationError(
                "TLS: require_client_certificate needs ca_certificates (the CA that signs the PACS certificates)"
            )
        ctx.verify_mode = ssl.CERT_REQUIRED
    else:
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def client_context(tls: TLSSettings) -> ssl.SSLContext:
    """Context for deliveries: verifies the destination against the CA bundle, presents our certificate."""
    ctx = _load(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), tls)
    ctx.check_hostname = tls.verify_hostname
    ctx.verify_mode = ssl.CERT_REQUIRED
    if tls.ca_certificates is None:
        ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    return ctx
