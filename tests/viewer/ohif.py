"""OHIF for the browser test: the pinned npm build, served on loopback next to a DICOMweb proxy.

:func:`ohif_dist` finds (or, with node and npm present, installs through ``tests/viewer/setup.sh``) the
prebuilt ``@ohif/app`` of :data:`OHIF_VERSION`. :class:`OhifServer` serves it on 127.0.0.1 and an
ephemeral port with ``docker/ohif/app-config.js`` as its configuration (what a site deploys), and
forwards ``/dicom-web/`` to Orthanc's DICOMweb root, so the viewer and its data share one origin as
behind the nginx of ``docker/ohif/``.
"""

from __future__ import annotations

import mimetypes
import shutil
import subprocess
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
APP_CONFIG = ROOT / "docker" / "ohif" / "app-config.js"
OHIF_VERSION = "3.13.2"
OHIF_DIST = HERE / ".cache" / f"ohif-app-{OHIF_VERSION}" / "package" / "dist"
CHROMIUM = Path("/usr/bin/chromium")
PUPPETEER = HERE / "node_modules" / "puppeteer-core"


def require_browser_tools() -> None:
    """Skip (with the reason) when this machine cannot run the browser test at all."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium")
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are missing: install Node.js >= 18")


def ohif_dist() -> Path:
    """The pinned OHIF build and puppeteer-core, installed by ``tests/viewer/setup.sh`` if absent."""
    require_browser_tools()
    if not (OHIF_DIST / "index.html").exists() or not PUPPETEER.exists():
        done = subprocess.run(
            ["bash", str(HERE / "setup.sh")], capture_output=True, text=True, timeout=600, check=False
        )
        if done.returncode != 0:
            raise AssertionError(f"tests/viewer/setup.sh failed:\n{done.stdout}\n{done.stderr}")
    return OHIF_DIST


class OhifServer:
    """OHIF's static files plus a same-origin proxy of ``/dicom-web/`` to ``dicomweb_root``.

    ``app_config`` replaces ``docker/ohif/app-config.js`` (the test uses it to show stock OHIF's gap).
    """

    def __init__(self, dist: Path, dicomweb_root: str, app_config: bytes | None = None) -> None:
        self.dist = dist.resolve()
        self.app_config = APP_CONFIG.read_bytes() if app_config is None else app_config
        self.dicomweb_root = dicomweb_root.rstrip("/")
        self.errors: list[str] = []
        handler = self._handler()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = int(self.httpd.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> OhifServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                return

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path.startswith("/dicom-web/"):
                    self._proxy()
                elif path == "/app-config.js":
                    self._send(server.app_config, "application/javascript")
                else:
                    self._static(path)

            def _static(self, path: str) -> None:
                target = (server.dist / path.lstrip("/")).resolve()
                if server.dist not in target.parents or not target.is_file():
                    target = server.dist / "index.html"  # client-side routes (/viewer?...) of the app
                kind = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
                if target.suffix == ".wasm":
                    kind = "application/wasm"
                self._send(target.read_bytes(), kind)

            def _proxy(self) -> None:
                url = server.dicomweb_root + self.path[len("/dicom-web") :]
                headers = {k: v for k, v in self.headers.items() if k.lower() in ("accept", "range")}
                request = urllib.request.Request(url, headers=headers)
                try:
                    with urllib.request.urlopen(request, timeout=60) as response:
                        body = response.read()
                        self._send(body, response.headers.get("Content-Type", "application/octet-stream"))
                except urllib.error.HTTPError as e:
                    server.errors.append(f"{e.code} {url}")
                    self._send(e.read(), e.headers.get("Content-Type", "text/plain"), status=e.code)

            def _send(self, body: bytes, kind: str, status: int = 200) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

        return Handler
