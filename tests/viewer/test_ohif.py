"""What the dermatologist sees: dermnode's results opened in OHIF, in a real browser.

The whole loop on loopback, with ephemeral ports: a real HAM10000 dermatoscope JPEG, as it is and
seen through a circular dermoscope field (black corners, re-saved as a baseline JPEG), becomes a
Dermoscopic Photography study (``dermnode wrap-jpeg``), goes to Orthanc (with its DICOMweb plugin),
which routes it to the node; the node stores its SEGs and SR back into the study. OHIF (the pinned
npm ``@ohif/app``, configured by ``docker/ohif/app-config.js``) is served next to a DICOMweb proxy, and
Debian's chromium, driven by puppeteer-core (``ohif_check.mjs``), opens the study, loads the lesion
SEG, the attention-levels SEG and the SR, taking a screenshot after each step. The same OHIF without
the configuration's extension shows upstream's gap: the dermoscopy image is an unsupported display set.

The judgements are made here, from the screenshots and what the page reported, against the objects
read back from Orthanc: the source image is displayed (the screenshot matches its pixels); the lesion
SEG's overlay covers the segmented lesion and lies inside the dermatologists' lesion mask; the
attention levels are drawn; the SR opens without an error boundary, its outline is drawn on the
lesion's border, and the called class and melanoma probability are on the page. Screenshots are kept
in ``tests/artifacts/viewer/`` (git-ignored; CI keeps them as artefacts).
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image
from pydicom import Dataset
from scipy import ndimage

from inference.outputs.pixels import rgb_pixels
from tests import dcmtk
from tests.conftest import SHARED_DATA
from tests.orthanc import OrthancPACS, orthanc_binary
from tests.processes import DermnodeProcess
from tests.viewer.ohif import APP_CONFIG, HERE, OhifServer, ohif_dist, require_browser_tools

pytestmark = [pytest.mark.viewer, pytest.mark.orthanc, pytest.mark.shared_data]

ARTIFACTS = HERE.parent / "artifacts" / "viewer"
# A HAM10000 melanoma from the validation split, outside the ISIC_0024316-0024717 range whose
# ground-truth masks are inverted (DESIGN.md), so its mask marks the lesion.
IMAGE_ID = "ISIC_0028493"
#: The two ways the image is sent: as the JPEG file itself, and through a circular dermoscope field.
CASES = ("plain", "circular-field")
RESULTS_TIMEOUT_S = 300.0
BROWSER_TIMEOUT_S = 480


@dataclass
class Results:
    """The study as Orthanc holds it after the node has answered."""

    study_uid: str
    image: Dataset
    lesion_seg: Dataset
    levels_seg: Dataset
    report: Dataset


def _circular_field(image: Path, out: Path) -> Path:
    """The photograph as a dermoscope with a round field of view takes it: black outside a circle."""
    rgb = np.asarray(Image.open(image).convert("RGB")).copy()
    rows, columns = rgb.shape[:2]
    ys, xs = np.mgrid[0:rows, 0:columns]
    outside = (xs - (columns - 1) / 2) ** 2 + (ys - (rows - 1) / 2) ** 2 > (0.45 * columns) ** 2
    rgb[outside] = 0
    Image.fromarray(rgb).save(out, format="JPEG", quality=95)  # baseline, 4:2:0 like the camera's
    return out


@pytest.fixture(params=CASES)
def analysed_study(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, OrthancPACS, Results]]:
    if not (SHARED_DATA / "images" / f"{IMAGE_ID}.jpg").is_file():
        pytest.skip(f"shared dermoscopy data not found at {SHARED_DATA}")
    require_browser_tools()
    binary = orthanc_binary()
    node_port = dcmtk.free_port()
    pacs = OrthancPACS(tmp_path / "orthanc", node_port, dicomweb=True)
    pacs.directory.mkdir()
    node = DermnodeProcess([
        "serve", "--port", str(node_port), "--bind", "127.0.0.1", "--data-dir", str(tmp_path / "node"),
        "--allow", f"ORTHANC@127.0.0.1:{pacs.dicom_port}", "--destination", "sender", "--quiet-period", "1",
    ])
    try:
        node.wait_listening()
        pacs.start(binary)
        study = tmp_path / "study"
        jpeg = SHARED_DATA / "images" / f"{IMAGE_ID}.jpg"
        if request.param == "circular-field":
            jpeg = _circular_field(jpeg, tmp_path / f"{IMAGE_ID}.jpg")
        subprocess.run(
            [sys.executable, "-m", "dermnode.cli", "wrap-jpeg", str(jpeg),
             "--out", str(study), "--patient-id", "OHIF-TEST", "--patient-name", "Viewer^Test"],
            check=True, capture_output=True, text=True, timeout=60,
        )
        sent = dcmtk.storescu(pacs.dicom_port, sorted(study.glob("*.dcm")), called="ORTHANC")
        assert sent.returncode == 0, f"storescu → Orthanc failed:\n{sent.stdout}{sent.stderr}\n{pacs.logs()}"
        yield request.param, pacs, _wait_for_results(pacs, node)
    finally:
        pacs.stop()
        node.stop()


def _wait_for_results(pacs: OrthancPACS, node: DermnodeProcess) -> Results:
    deadline = time.monotonic() + RESULTS_TIMEOUT_S
    while time.monotonic() < deadline:
        for study_id in pacs.get("/studies"):
            by_label: dict[str, Dataset] = {}
            images, reports = [], []
            for series in pacs.get(f"/studies/{study_id}/series"):
                for instance in series["Instances"]:
                    ds = pacs.instance_file(instance)
                    if ds.Modality == "SEG":
                        by_label[str(ds.ContentLabel)] = ds
                    elif ds.Modality == "SR":
                        reports.append(ds)
                    else:
                        images.append(ds)
            if {"LESION", "ATTENTION_LEVELS"} <= set(by_label) and reports and images:
                return Results(str(images[0].StudyInstanceUID), images[0], by_label["LESION"],
                               by_label["ATTENTION_LEVELS"], reports[0])
        time.sleep(2.0)
    pytest.fail(f"no results in Orthanc after {RESULTS_TIMEOUT_S:.0f} s\n{node.logs()[-6000:]}\n{pacs.logs()}")


def _run_browser(server: OhifServer, results: Results, out: Path, **extra: object) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    config = {
        "url": server.url,
        "study": results.study_uid,
        "out": str(out),
        "series": {
            "lesion": str(results.lesion_seg.SeriesDescription)[:20],
            "levels": str(results.levels_seg.SeriesDescription)[:20],
            "report": str(results.report.SeriesDescription)[:9],
        },
        "timeoutMs": 120_000,
        **extra,
    }
    (out / "config.json").write_text(json.dumps(config), encoding="utf-8")
    done = subprocess.run(
        ["node", str(HERE / "ohif_check.mjs"), str(out / "config.json")],
        capture_output=True, text=True, timeout=BROWSER_TIMEOUT_S, cwd=HERE,
    )
    report = out / "result.json"
    assert report.is_file(), f"the browser script wrote no result:\n{done.stdout}\n{done.stderr}"
    result: dict[str, Any] = json.loads(report.read_text(encoding="utf-8"))
    assert result["failed"] is None, f"{result['failed']}\nproxy errors: {server.errors}\n{done.stderr}"
    return result


# --- reading screenshots in image coordinates ----------------------------------------------------


class Geometry:
    """The affine map between image pixel coordinates and page pixels that OHIF reported."""

    def __init__(self, g: dict[str, Any]) -> None:
        self.rows, self.columns = int(g["rows"]), int(g["columns"])
        self.origin = np.array(g["origin"], dtype=float)
        self.ex = (np.array(g["xEnd"], dtype=float) - self.origin) / self.columns
        self.ey = (np.array(g["yEnd"], dtype=float) - self.origin) / self.rows
        self.inverse = np.linalg.inv(np.stack([self.ex, self.ey], axis=1))

    def to_image(self, page_xy: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """(N, 2) page points → (N, 2) image (column, row) coordinates."""
        return (self.inverse @ (page_xy - self.origin).T).T

    def page_pixels_in_image(self, shape: tuple[int, int]) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
        """Indices (page rows, page columns) of screenshot pixels whose centre falls on the image."""
        ys, xs = np.mgrid[0 : shape[0], 0 : shape[1]]
        image_xy = self.to_image(np.stack([xs.ravel() + 0.5, ys.ravel() + 0.5], axis=1))
        x, y = image_xy[:, 0], image_xy[:, 1]
        inside = (x >= 0) & (x < self.columns) & (y >= 0) & (y < self.rows)
        return ys.ravel()[inside], xs.ravel()[inside]

    def image_index(self, page_rows: npt.NDArray[np.intp], page_cols: npt.NDArray[np.intp]) -> npt.NDArray[np.intp]:
        image_xy = self.to_image(np.stack([page_cols + 0.5, page_rows + 0.5], axis=1))
        cols = np.clip(np.floor(image_xy[:, 0]).astype(np.intp), 0, self.columns - 1)
        rows = np.clip(np.floor(image_xy[:, 1]).astype(np.intp), 0, self.rows - 1)
        return np.stack([rows, cols], axis=1)


def _shot(step: dict[str, Any]) -> npt.NDArray[np.int16]:
    return np.asarray(Image.open(step["shot"]).convert("RGB"), dtype=np.int16)


def _changed(before: dict[str, Any], after: dict[str, Any], geometry: Geometry) -> npt.NDArray[np.intp]:
    """Image (row, column) of every on-image screenshot pixel that a step changed visibly."""
    a, b = _shot(before), _shot(after)
    page_rows, page_cols = geometry.page_pixels_in_image(a.shape[:2])
    delta = np.abs(b[page_rows, page_cols] - a[page_rows, page_cols]).sum(axis=1)
    keep = delta > 40
    return geometry.image_index(page_rows[keep], page_cols[keep])


def _fraction_inside(points: npt.NDArray[np.intp], mask: npt.NDArray[np.bool_]) -> float:
    return float(mask[points[:, 0], points[:, 1]].mean()) if len(points) else 0.0


def _num(report: Dataset, prefix: str) -> Dataset:
    def walk(ds: Dataset) -> Iterator[Dataset]:
        for item in ds.get("ContentSequence", []):
            yield item
            yield from walk(item)

    return next(i for i in walk(report) if i.ValueType == "NUM" and
                str(i.ConceptNameCodeSequence[0].CodeValue).startswith(prefix))


def _ground_truth_mask() -> npt.NDArray[np.bool_]:
    with (SHARED_DATA / "labels.csv").open(newline="") as f:
        row = next(r for r in csv.DictReader(f) if r["image_id"] == IMAGE_ID)
    return np.asarray(Image.open(SHARED_DATA / row["mask_path"]).convert("L")) > 127


# --- the test ------------------------------------------------------------------------------------


def test_ohif_shows_image_seg_attention_and_report(analysed_study: tuple[str, OrthancPACS, Results]) -> None:
    case, pacs, results = analysed_study
    dist = ohif_dist()
    artifacts = ARTIFACTS / case
    if artifacts.exists():
        shutil.rmtree(artifacts)
    dicomweb = f"http://127.0.0.1:{pacs.http_port}/dicom-web"
    with OhifServer(dist, dicomweb) as server:
        result = _run_browser(server, results, artifacts)
    _check_viewer(result, results, sent=rgb_pixels(results.image).astype(float).mean(axis=2))
    if case == "plain":
        _check_stock_ohif_gap(dist, dicomweb, results, artifacts)


def _check_stock_ohif_gap(dist: Path, dicomweb: str, results: Results, artifacts: Path) -> None:
    # Stock OHIF (the same configuration without our extension) has no handler for the dermoscopy class.
    stock_config = APP_CONFIG.read_text(encoding="utf-8").replace(
        "extensions: [dermoscopySopClassesExtension]", "extensions: []"
    )
    assert "extensions: []" in stock_config
    with OhifServer(dist, dicomweb, app_config=stock_config.encode("utf-8")) as server:
        stock = _run_browser(server, results, artifacts / "stock-ohif", displaySetsOnly=5)
    (stock_dms,) = [d for d in stock["steps"]["stock"]["displaySets"] if d["Modality"] == "DMS"]
    assert stock_dms["unsupported"], "stock OHIF now displays Dermoscopic Photography: drop the extension"


def _check_viewer(result: dict[str, Any], results: Results, sent: npt.NDArray[np.float64]) -> None:
    steps = result["steps"]
    source, lesion, levels, report = (steps[k] for k in ("source", "lesion-seg", "attention-levels", "report"))
    geometry = Geometry(source["geometry"])
    assert (geometry.rows, geometry.columns) == (int(results.image.Rows), int(results.image.Columns))

    # 1. The Dermoscopic Photography image is a supported display set and the screenshot shows its pixels.
    (dms,) = [d for d in source["displaySets"] if d["Modality"] == "DMS"]
    assert dms["SOPClassUID"] == "1.2.840.10008.5.1.4.1.1.77.1.7" and not dms["unsupported"]
    shot = _shot(source)
    page_rows, page_cols = geometry.page_pixels_in_image(shot.shape[:2])
    index = geometry.image_index(page_rows, page_cols)
    shown = shot[page_rows, page_cols].astype(float).mean(axis=1)
    truth = sent[index[:, 0], index[:, 1]]
    assert np.corrcoef(shown, truth)[0, 1] > 0.9, "the viewport does not show the source image"

    # 2. The lesion SEG loads and its overlay covers the segmented lesion, inside the real lesion.
    assert any(s["segments"] == ["Lesion"] for s in lesion["segmentations"]), lesion["segmentations"]
    seg_mask = np.asarray(results.lesion_seg.pixel_array, dtype=bool).reshape(geometry.rows, geometry.columns)
    changed = _changed(source, lesion, geometry)
    assert _fraction_inside(changed, ndimage.binary_dilation(seg_mask, iterations=1)) > 0.95
    covered = np.zeros_like(seg_mask)
    covered[changed[:, 0], changed[:, 1]] = True
    assert (covered & seg_mask).sum() > 0.9 * seg_mask.sum(), "the overlay does not cover the SEG's lesion"
    gt = ndimage.binary_dilation(_ground_truth_mask(), iterations=3)
    assert _fraction_inside(changed, gt) > 0.85, "the overlay is not on the dermatologists' lesion"

    # 3. The attention levels load as three segments and are drawn over a good part of the image.
    (attention,) = [s for s in levels["segmentations"] if len(s["segments"]) == 3]
    assert attention["segments"] == ["Attention top 10 %", "Attention top 10-25 %", "Attention top 25-50 %"]
    changed = _changed(lesion, levels, geometry)
    assert len(np.unique(changed, axis=0)) > 0.3 * geometry.rows * geometry.columns

    # 4. The SR opens without an error boundary; the outline is drawn on the lesion's border; the called
    #    class, the melanoma probability and the call are on the page.
    assert "Something went wrong" not in report["pageText"]
    assert not result["pageErrors"], result["pageErrors"]
    (outline,) = report["polylines"]
    points = Geometry(report["geometry"]).to_image(np.array(outline, dtype=float))
    border = seg_mask ^ ndimage.binary_erosion(seg_mask)
    distance = ndimage.distance_transform_edt(~border)
    at = np.clip(np.round(points - 0.5).astype(int), 0, [geometry.columns - 1, geometry.rows - 1])
    assert np.median(distance[at[:, 1], at[:, 0]]) <= 1.5, "the outline is not on the lesion's border"
    called = _num(results.report, "CALL-").ConceptNameCodeSequence[0].CodeMeaning
    melanoma = float(_num(results.report, "MELPROB").MeasuredValueSequence[0].NumericValue)
    text = report["svgText"] + report["pageText"]
    assert f"{called}:" in text and called.startswith("Called class: ")
    assert f"Melanoma probability: {melanoma:.2f}" in text
    call = _num(results.report, "MELTHR-").ConceptNameCodeSequence[0].CodeMeaning  # the call and its threshold
    assert f"{call}:" in text and call.startswith("Melanoma call: ")
