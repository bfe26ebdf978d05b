"""Cost of decoding at intake in the decode sandbox instead of in the node's own process.

    .venv/bin/python -m bench.bench_decode --repeats 3 --small-repeats 50

Two JPEG Baseline (YBR_FULL_422, DCMTK ``dcmcjpeg``) instances: one at the pixel limit (5000 x 10000
= 50 MP, the default ``max_image_pixels``) and an ordinary 600 x 450 one. Each is decoded, in
turn, as intake did before the sandbox (``pixel_array(ds, raw=False)`` on the data set intake
had already read) and as it does now (:meth:`DecodeSandbox.decode`: the job to a long-lived decoder
process over a socket, the decoder reading the file's pixel data and decoding it, the shape back).
The 50 MP decodes run in the sandbox first, so that the node process's peak RSS can be read before and
after the in-process ones. Last, the 50 MP frame under a 0.05 s limit: the time to the refusal, and
until the replacement decoder answers its first job.
Prints Markdown tables for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from pydicom import dcmread
from pydicom.pixels import pixel_array

from dermnode.kernel.images import DEFAULT_MAX_IMAGE_PIXELS
from dicom_node.intake import decoder_address_space
from dicom_node.sandbox import DecodeSandbox, DecodeTimeout
from tests.factories import encoded_dermoscopy_file


def _seconds(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def _make_images(work: Path) -> tuple[Path, Path]:
    """The two instances (made in a child process, so that making them does not count in our peak RSS)."""
    large = encoded_dermoscopy_file(work / "large", "jpeg-baseline", rows=5000, columns=10000)
    small = encoded_dermoscopy_file(work / "small", "jpeg-baseline", rows=450, columns=600)
    return large, small


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3, help="decodes of the 50 MP image, each way")
    parser.add_argument("--small-repeats", type=int, default=50, help="decodes of the 600 x 450 image, each way")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dermnode-decode-"))
    address_space = decoder_address_space(DEFAULT_MAX_IMAGE_PIXELS)
    try:
        made = time.perf_counter()
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as maker:
            large, small = maker.submit(_make_images, work).result()
        print(f"made the images in {time.perf_counter() - made:.0f} s "
              f"({large.stat().st_size / 1e6:.1f} MB and {small.stat().st_size / 1e3:.0f} kB)\n")
        large_ds, small_ds = dcmread(large), dcmread(small)
        with DecodeSandbox(1) as sandbox:
            sandbox.decode(small, 60, address_space)  # ready and warm, as in a running node
            rss_before = _peak_rss_mib()
            times: dict[str, list[float]] = {k: [] for k in ("large-in", "large-box", "small-in", "small-box")}
            for _ in range(args.repeats):
                times["large-box"].append(_seconds(lambda: sandbox.decode(large, 120, address_space)))
            rss_after_sandbox = _peak_rss_mib()
            for _ in range(args.repeats):
                times["large-in"].append(_seconds(lambda: pixel_array(large_ds, raw=False)))
            rss_after_in_process = _peak_rss_mib()
            for _ in range(args.small_repeats):
                times["small-box"].append(_seconds(lambda: sandbox.decode(small, 60, address_space)))
                times["small-in"].append(_seconds(lambda: pixel_array(small_ds, raw=False)))
            # The 50 MP decode under a 0.05 s limit: refused, the decoder killed, a replacement started.
            start = time.perf_counter()
            try:
                sandbox.decode(large, 0.05, address_space, label="the 50 MP bench image")
                raise SystemExit("the 50 MP decode finished within 0.05 s: no time-out to measure")
            except DecodeTimeout:
                refused = time.perf_counter() - start
            # The replacement: ready (imports done) when its first job returns.
            replacement = _seconds(lambda: sandbox.decode(small, 60, address_space))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    print("| JPEG Baseline decode at intake | in the node's process (before) | in the decode sandbox | ratio |")
    print("|---|---|---|---|")
    print(f"| 5000 x 10000 (50 MP, the pixel limit), median of {args.repeats} | {med['large-in']:.2f} s | "
          f"{med['large-box']:.2f} s | {med['large-box'] / med['large-in']:.2f}x |")
    print(f"| 600 x 450, median of {args.small_repeats} | {med['small-in'] * 1e3:.1f} ms | "
          f"{med['small-box'] * 1e3:.1f} ms | {med['small-box'] / med['small-in']:.2f}x "
          f"(+{(med['small-box'] - med['small-in']) * 1e3:.1f} ms) |")
    print(f"\n50 MP decode with max_decode_s 0.05: refused after {refused:.3f} s; the replacement decoder "
          f"answered its first 600 x 450 job {replacement:.2f} s later")
    print(f"node process peak RSS: {rss_before:.0f} MiB before the 50 MP decodes, {rss_after_sandbox:.0f} MiB "
          f"after those in the sandbox, {rss_after_in_process:.0f} MiB after those in process")


if __name__ == "__main__":
    main()
