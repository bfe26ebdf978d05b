"""``dermnode train classify|segment``, ``dermnode pack`` and ``dermnode evaluate``, registered into the
dermnode CLI by :func:`register`; ``python -m dermnode.cli.models ...`` runs the same commands stand-alone.
Torch and MONAI are imported only when one of these commands runs."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from inference.training.splits import VALIDATION_IDS

#: ``inference.training.recipes.ARCHITECTURES``, spelled out so the CLI starts without importing torch.
ARCHITECTURES = ("scratch", "efficientnet-lite0")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train``, ``pack`` and ``evaluate`` subcommands; each sets ``func(args) -> int``."""
    train = subparsers.add_parser("train", help="train a reference bundle from a labels.csv data folder")
    kinds = train.add_subparsers(dest="kind", required=True)
    for kind, help_text, size, epochs, batch in (
        ("classify", "train the 7-class classifier bundle", 128, 40, 64),
        ("segment", "train the lesion segmenter bundle", 128, 15, 32),
    ):
        p = kinds.add_parser(kind, help=help_text)
        p.add_argument("--data", type=Path, required=True, help="folder with labels.csv, images/, masks/")
        p.add_argument("--out", type=Path, required=True, help="bundle folder to write")
        p.add_argument("--epochs", type=int, default=epochs)
        p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--image-size", type=int, default=size, help=f"input width in pixels (default {size})")
        p.add_argument("--batch-size", type=int, default=batch)
        p.add_argument("--lr", type=float, default=2e-3)
        p.add_argument("--resume", action="store_true", help="continue from the run's checkpoint")
        p.add_argument("--checkpoint", type=Path, help="checkpoint file (default runs/<bundle name>/checkpoint.pt)")
        p.add_argument("--cache", type=Path, default=Path("pack"), help="packed image cache folder")
        p.add_argument("--validation-ids", type=Path, default=VALIDATION_IDS, help="ids never trained on")
        p.add_argument("--threads", type=int, help="torch CPU threads")
        p.add_argument("--max-minutes", type=float, help="stop after the epoch that exceeds this training time")
        p.add_argument("--version", default="1.0.0", help="bundle version")
        p.add_argument("--no-progress", action="store_true")
        p.add_argument("--arch", choices=ARCHITECTURES, default=ARCHITECTURES[0],
                       help="scratch: slim DenseNet / residual UNet from random weights (default); "
                       "efficientnet-lite0: fine-tuned from the ImageNet weights of the pip package")
        p.add_argument("--exclude-source", action="append", default=[], metavar="SOURCE",
                       help="leave this labels.csv source out of training (repeatable), e.g. ISIC-2017")
        p.set_defaults(func=_train)

    pack = subparsers.add_parser(
        "pack", help="write a small copy of a data folder (same layout) to carry to a GPU machine"
    )
    pack.add_argument("--data", type=Path, required=True, help="folder with labels.csv, images/, masks/")
    pack.add_argument("--out", type=Path, required=True, help="empty folder for the copy")
    pack.add_argument("--max-side", type=int, default=192, help="longest image side in pixels (default 192)")
    pack.add_argument("--quality", type=int, default=85, help="JPEG quality (default 85)")
    pack.set_defaults(func=_pack)

    evaluate = subparsers.add_parser(
        "evaluate", help="measure bundles on a labelled folder (our data: the fixed validation split only)"
    )
    evaluate.add_argument("--data", type=Path, required=True, help="folder with labels.csv")
    evaluate.add_argument("--classifier", type=Path, help="classifier bundle (default: shipped)")
    evaluate.add_argument("--segmenter", type=Path, help="segmenter bundle (default: shipped)")
    evaluate.add_argument("--out", type=Path, required=True, help="report folder (metrics.json, plots)")
    evaluate.add_argument("--limit", type=int, help="evaluate N evenly spaced validation images (by id)")
    evaluate.add_argument("--validation-ids", type=Path, default=VALIDATION_IDS,
                          help="our own data is evaluated only on these ids (default: the fixed split); a "
                          "folder with none of them is evaluated whole")
    evaluate.add_argument("--all-images", action="store_true", help="evaluate every image of --data")
    evaluate.add_argument("--device", default="cpu")
    evaluate.add_argument("--no-tta", action="store_true", help="disable test-time flips")
    evaluate.add_argument("--no-plots", action="store_true")
    evaluate.add_argument("--source", help="only images of this labels.csv source (e.g. ISIC-2017)")
    evaluate.add_argument("--no-attention", action="store_true",
                          help="skip Grad-CAM attention-in-lesion on the images with masks")
    evaluate.add_argument(
        "--record", action="store_true", help="store the metrics in both bundles' metadata and model cards"
    )
    evaluate.set_defaults(func=_evaluate)


def _train(args: argparse.Namespace) -> int:
    from inference.training.classification import train_classifier
    from inference.training.loop import TrainConfig
    from inference.training.segmentation import train_segmenter

    config = TrainConfig(
        data=args.data,
        out=args.out,
        epochs=args.epochs,
        device=args.device,
        seed=args.seed,
        image_size=args.image_size,
        resume=args.resume,
        batch_size=args.batch_size,
        lr=args.lr,
        cache_dir=args.cache,
        checkpoint=args.checkpoint,
        validation_ids=args.validation_ids,
        threads=args.threads,
        max_minutes=args.max_minutes,
        version=args.version,
        command=_command_line(args),
        progress=not args.no_progress,
        arch=args.arch,
        exclude_sources=tuple(args.exclude_source),
    )
    out = train_classifier(config) if args.kind == "classify" else train_segmenter(config)
    print(f"wrote {args.kind} bundle {out}")
    return 0


def _pack(args: argparse.Namespace) -> int:
    from inference.training.travel import make_travel_copy

    copy = make_travel_copy(args.data, args.out, args.max_side, args.quality)
    print(f"{copy.images} images and {copy.masks} masks in {args.out}: {copy.bytes / 2**20:.1f} MiB")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from inference.evaluation.evaluate import EvaluationOptions, evaluate

    metrics = evaluate(
        EvaluationOptions(
            data=args.data,
            out=args.out,
            classifier=args.classifier,
            segmenter=args.segmenter,
            limit=args.limit,
            validation_ids=args.validation_ids,
            all_images=args.all_images,
            device=args.device,
            tta=not args.no_tta,
            plots=not args.no_plots,
            record=args.record,
            command=_command_line(args),
            source=args.source,
            attention=not args.no_attention,
        )
    )
    print(
        f"{metrics['n_images']} images: melanoma AUC {metrics['melanoma_auc']:.4f}, malignant AUC "
        f"{metrics['malignant_auc']:.4f}, balanced accuracy {metrics['balanced_accuracy']:.4f}, "
        f"ECE {metrics['ece']:.4f}, Dice {metrics['dice_mean']:.4f}, attention in lesion "
        f"{metrics['attention_in_lesion_median']:.3f} (vignette {metrics['attention_in_lesion_median_vignette']:.3f}); "
        f"report in {args.out}"
    )
    return 0


def _command_line(args: argparse.Namespace) -> str:
    """The command as typed, with absolute paths made relative to the working directory: bundles and
    reports record how they were made without naming this machine's folders."""
    del args
    return "dermnode " + " ".join(shlex.quote(_portable(a)) for a in sys.argv[1:])


def _portable(argument: str) -> str:
    return os.path.relpath(argument) if os.path.isabs(argument) else argument


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dermnode")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
