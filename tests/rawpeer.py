"""A raw-socket DICOM peer for protocol abuse (after pynetdicom's ``tests/parrot.py``).

It speaks bytes, not services: an A-ASSOCIATE-RQ recorded from a real pynetdicom requestor, then
whatever a test wants to send. Every read is bounded by a socket timeout, so each test stops by itself.
"""

from __future__ import annotations

import socket
import struct
import threading

from pynetdicom import AE

DERMOSCOPY = "1.2.840.10008.5.1.4.1.1.77.1.7"


def recorded_associate_rq(called: str = "DERMNODE", calling: str = "PYSCU") -> bytes:
    """The A-ASSOCIATE-RQ PDU pynetdicom sends for one dermoscopy context (recorded on loopback)."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(10)
    captured: list[bytes] = []

    def capture() -> None:
        conn, _ = server.accept()
        with conn:
            conn.settimeout(10)
            header = read_exactly(conn, 6)
            captured.append(header + read_exactly(conn, struct.unpack(">L", header[2:])[0]))

    thread = threading.Thread(target=capture)
    thread.start()
    ae = AE(ae_title=calling)
    ae.acse_timeout = ae.network_timeout = 5
    ae.add_requested_context(DERMOSCOPY, "1.2.840.10008.1.2.1")
    ae.associate("127.0.0.1", server.getsockname()[1], ae_title=called)  # fails once the capture closes
    thread.join(10)
    server.close()
    return captured[0]


def read_exactly(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def read_until_closed(conn: socket.socket, timeout: float = 10.0) -> bytes:
    """Everything the node sends until it closes the connection (raises TimeoutError if it never does)."""
    conn.settimeout(timeout)
    data = b""
    while True:
        try:
            chunk = conn.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def connect(port: int, bind: str = "127.0.0.1") -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(bind, 0))


def associate(port: int) -> socket.socket:
    """A raw connection with an accepted association (the A-ASSOCIATE-AC has been read)."""
    conn = connect(port)
    conn.sendall(recorded_associate_rq())
    header = read_exactly(conn, 6)
    assert header[:1] == b"\x02", f"expected A-ASSOCIATE-AC, got {header!r}"
    read_exactly(conn, struct.unpack(">L", header[2:])[0])
    return conn
