#!/usr/bin/env bash
# Install what tests/viewer needs from npm, idempotently: puppeteer-core (pinned in package.json and
# package-lock.json; it never downloads a browser, the test drives Debian's /usr/bin/chromium) and the
# prebuilt OHIF viewer, npm @ohif/app at the version below, unpacked (only its dist/ is used).
set -euo pipefail
cd "$(dirname "$0")"
OHIF_VERSION=3.13.2   # keep equal to OHIF_VERSION in tests/viewer/ohif.py

if [ ! -d node_modules/puppeteer-core ]; then
    PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund
fi
dest=".cache/ohif-app-${OHIF_VERSION}"
if [ ! -f "${dest}/package/dist/index.html" ]; then
    mkdir -p "${dest}"
    tarball=$(cd "${dest}" && npm pack --silent "@ohif/app@${OHIF_VERSION}")
    tar -xzf "${dest}/${tarball}" -C "${dest}"
    rm -f "${dest}/${tarball}"
fi
