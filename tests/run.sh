#!/usr/bin/env bash
# Install everything the tests need (Debian tools, a venv with the project) and run them all:
# ruff, mypy, pytest. Idempotent; .ci/run calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v /usr/bin/storescu >/dev/null || need_apt+=(dcmtk)
command -v dciodvfy >/dev/null || need_apt+=(dicom3tools)
command -v Orthanc >/dev/null || need_apt+=(orthanc)
command -v redis-server >/dev/null || need_apt+=(redis-server)
# Browser tests (tests/viewer: OHIF; tests/ops: the status page): Orthanc's DICOMweb plugin, Debian's
# chromium, Node.js for puppeteer-core.
[ -f /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || need_apt+=(orthanc-dicomweb)
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
command -v node >/dev/null || need_apt+=(nodejs)
command -v npm >/dev/null || need_apt+=(npm)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "installing Debian packages: ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
# The Debian orthanc package may start its own service on 4242/8042; our tests use their own ports.

if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    echo "starting Redis on 127.0.0.1:6379"
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
        --dir /var/lib/redis --logfile /var/log/redis/ci.log
    for _ in $(seq 50); do redis-cli -h 127.0.0.1 ping >/dev/null 2>&1 && break; sleep 0.2; done
fi

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
[ -x .venv/bin/python ] || "$PY" -m venv .venv
# torch==2.13.0 is pinned in pyproject.toml: pip takes the CPU wheel from this machine's disk.
.venv/bin/pip install -q -e '.[test]'
.venv/bin/python -c "import dermnode, dicom_node, inference, workers, torch; print('torch', torch.__version__)"

# puppeteer-core drives Debian's chromium (it downloads no browser).
(cd tests/browser && npm install --no-audit --no-fund --silent)
# npm: puppeteer-core (pinned, never downloads a browser) and the pinned prebuilt OHIF (@ohif/app).
bash tests/viewer/setup.sh

.venv/bin/ruff check dermnode dicom_node inference workers tests bench
.venv/bin/mypy
.venv/bin/lint-imports   # the layer contracts in pyproject.toml
# The intake fuzz (decompression bombs among its cases) runs alone under a 6 GB address-space limit:
# a bomb decoded in full would need 12 GiB and fail here instead of taking the machine down.
(ulimit -v 6000000 && .venv/bin/python -m pytest -p no:cacheprovider -q tests/dicom_node/test_fuzz.py)
exec .venv/bin/python -m pytest -p no:cacheprovider -n 2 --dist loadfile --ignore=tests/dicom_node/test_fuzz.py "$@"
