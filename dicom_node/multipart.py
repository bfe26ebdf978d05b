"""``multipart/related; type="application/dicom"``: the body of DICOMweb retrieve (WADO-RS) and store (STOW-RS)
(PS3.18 8.6.1.2, RFC 2387), built and parsed here for both ends of the worker API."""

from __future__ import annotations

import re
import secrets

DICOM = "application/dicom"


class MultipartError(ValueError):
    """A body that is not multipart/related with a boundary, or a malformed part."""


def build(parts: list[bytes], media_type: str = DICOM) -> tuple[bytes, str]:
    """The body and its Content-Type header for ``parts``, each of ``media_type``."""
    boundary = f"dermnode-{secrets.token_hex(16)}"
    chunks = []
    for data in parts:
        chunks.append(f"--{boundary}\r\nContent-Type: {media_type}\r\n\r\n".encode())
        chunks.append(data)
        chunks.append(b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f'multipart/related; type="{media_type}"; boundary={boundary}'


def boundary_of(content_type: str) -> str:
    if not content_type.lower().startswith("multipart/related"):
        raise MultipartError(f"expected multipart/related, got {content_type.split(';')[0] or 'nothing'}")
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if match is None:
        raise MultipartError("the multipart/related Content-Type has no boundary")
    return match.group(1)


def parse(body: bytes, content_type: str, media_type: str = DICOM) -> list[bytes]:
    """The payloads of the parts of ``body``; every part must be of ``media_type``."""
    delimiter = b"--" + boundary_of(content_type).encode()
    sections = body.split(delimiter)
    if len(sections) < 3 or not sections[-1].startswith(b"--"):
        raise MultipartError("the body has no parts or no closing boundary")
    parts = []
    for section in sections[1:-1]:
        if not section.startswith(b"\r\n"):
            raise MultipartError("a part does not start on a new line after its boundary")
        head, sep, payload = section[2:].partition(b"\r\n\r\n")
        if not sep:
            raise MultipartError("a part has no blank line after its headers")
        headers = {}
        for line in head.split(b"\r\n"):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        kind = headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != media_type:
            raise MultipartError(f"a part is {kind or 'untyped'}, expected {media_type}")
        if not payload.endswith(b"\r\n"):
            raise MultipartError("a part does not end with a line break before the next boundary")
        parts.append(payload[:-2])
    return parts
