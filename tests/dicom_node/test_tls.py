"""DICOM over TLS with DCMTK as the peer: mutual TLS into the node, and deliveries over TLS."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from dermnode.kernel.errors import ConfigurationError
from dermnode.kernel.messages import Address
from dicom_node.node import Node
from dicom_node.sender import StoreSender
from dicom_node.tls import TLSSettings, server_context
from tests import dcmtk
from tests.conftest import RecordingDispatcher, node_settings
from tests.factories import minimal_output_file
from tests.pki import PKI, make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _tls(pki: PKI) -> dict[str, object]:
    return {"certificate": pki.server_crt, "private_key": pki.server_key, "ca_certificates": pki.ca}


def test_node_accepts_mutual_tls_and_refuses_plain_tcp(tmp_path: Path, pki: PKI) -> None:
    with Node(node_settings(tmp_path, tls=_tls(pki)), RecordingDispatcher()) as node:
        secure = dcmtk.run([dcmtk.tool("echoscu"), "+tls", str(pki.client_key), str(pki.client_crt),
                            "+cf", str(pki.ca), "-aet", "STORESCU", "-aec", "DERMNODE", "127.0.0.1", str(node.port)])
        assert secure.returncode == 0, secure.stderr
        assert dcmtk.echoscu(node.port).returncode != 0  # plain TCP to a TLS port


def test_node_refuses_a_client_without_certificate(tmp_path: Path, pki: PKI) -> None:
    with Node(node_settings(tmp_path, tls=_tls(pki)), RecordingDispatcher()) as node:
        anonymous = dcmtk.run([dcmtk.tool("echoscu"), "+tla", "+cf", str(pki.ca), "-aet", "STORESCU",
                               "-aec", "DERMNODE", "127.0.0.1", str(node.port)])
        assert anonymous.returncode != 0


def test_delivery_over_tls_to_storescp(tmp_path: Path, pki: PKI) -> None:
    port = dcmtk.free_port()
    out = tmp_path / "in"
    out.mkdir()
    scp = subprocess.Popen(
        [dcmtk.tool("storescp"), "+tls", str(pki.server_key), str(pki.server_crt), "+cf", str(pki.ca),
         "--aetitle", "PACS", "-od", str(out), str(port)],
        env=dcmtk.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # wait until storescp answers a TLS echo
            probe = dcmtk.run([dcmtk.tool("echoscu"), "+tls", str(pki.client_key), str(pki.client_crt),
                               "+cf", str(pki.ca), "-aec", "PACS", "127.0.0.1", str(port)])
            if probe.returncode == 0:
                break
            time.sleep(0.1)
        tls = TLSSettings(certificate=pki.client_crt, private_key=pki.client_key, ca_certificates=pki.ca)
        sender = StoreSender("DERMNODE", timeout_s=10, tls=tls)
        result = sender.send(Address("PACS", "127.0.0.1", port, tls=True), [minimal_output_file(tmp_path)])
        assert result.delivered, result.detail
        assert len(list(out.iterdir())) == 1
        plain = StoreSender("DERMNODE").send(Address("PACS", "127.0.0.1", port, tls=True),
                                                         [minimal_output_file(tmp_path)])
        assert not plain.delivered and "no tls certificate is configured" in plain.detail
    finally:
        scp.terminate()
        scp.wait(timeout=10)


def test_bad_tls_settings_say_what_to_fix(tmp_path: Path, pki: PKI) -> None:
    with pytest.raises(ConfigurationError, match=r"cannot load certificate .*check the tls settings"):
        server_context(TLSSettings(certificate=tmp_path / "missing.crt", private_key=pki.server_key))
    with pytest.raises(ConfigurationError, match="require_client_certificate needs ca_certificates"):
        server_context(TLSSettings(certificate=pki.server_crt, private_key=pki.server_key))
    with pytest.raises(ConfigurationError, match=r"PACS@h:1/tls use TLS: configure tls"):
        node_settings(tmp_path, destinations=["PACS@h:1/tls"])
