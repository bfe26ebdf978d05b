"""Evaluation plots (matplotlib, Agg backend): ROC curves, confusion matrix, reliability diagram and a grid
of the worst segmentation cases with truth (green) and predicted (red) outlines."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from inference.evaluation.metrics import confusion_matrix, reliability_bins, roc_auc, roc_curve
from inference.evaluation.outcomes import Outcomes
from inference.training.data import read_mask, read_rgb


def write_plots(
    out: Path,
    outcomes: Outcomes,
    keys: Sequence[str],
    melanoma_key: str,
    malignant: Sequence[int],
) -> None:
    """Write roc.png, confusion_matrix.png, reliability.png, worst_segmentations.png and (when Grad-CAM was
    measured) attention_in_lesion.png into ``out``."""
    probs = outcomes.probabilities
    truth = np.array([keys.index(r.diagnosis) for r in outcomes.records])
    sources = np.array([r.source for r in outcomes.records])
    mel = keys.index(melanoma_key)

    fig, axes = plt.subplots(1, 2, figsize=(11, 5))
    for ax, title, score, positive in (
        (axes[0], "Melanoma vs rest", probs[:, mel], truth == mel),
        (axes[1], "Malignant (mel+bcc+akiec) vs benign", probs[:, list(malignant)].sum(1), np.isin(truth, malignant)),
    ):
        for name in ["all", *sorted(set(sources))]:
            rows = np.ones(len(truth), bool) if name == "all" else sources == name
            auc = roc_auc(score[rows], positive[rows])
            if np.isnan(auc):
                continue
            fpr, tpr, _ = roc_curve(score[rows], positive[rows])
            ax.plot(fpr, tpr, lw=2 if name == "all" else 1, label=f"{name} (AUC {auc:.3f}, n={rows.sum()})")
        ax.plot([0, 1], [0, 1], "k:", lw=0.8)
        ax.set(title=title, xlabel="1 - specificity", ylabel="sensitivity")
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "roc.png", dpi=110)
    plt.close(fig)

    matrix = confusion_matrix(truth, outcomes.calls, len(keys))
    rates = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(keys)):
        for j in range(len(keys)):
            ax.text(
                j,
                i,
                f"{matrix[i, j]}",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if rates[i, j] > 0.5 else "black",
            )
    ax.set(
        xticks=range(len(keys)),
        yticks=range(len(keys)),
        xticklabels=keys,
        yticklabels=keys,
        xlabel="predicted",
        ylabel="true",
        title="Confusion matrix (counts; colour = row rate)",
    )
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    fig.savefig(out / "confusion_matrix.png", dpi=110)
    plt.close(fig)

    conf, acc, count = reliability_bins(probs, truth)
    edges = np.linspace(0, 1, len(count) + 1)
    fig, ax = plt.subplots(figsize=(5.5, 5))
    used = count > 0
    ax.bar(edges[:-1][used], acc[used], width=1 / len(count), align="edge", alpha=0.7, edgecolor="k", label="accuracy")
    ax.plot([0, 1], [0, 1], "k:", label="perfect calibration")
    ax.plot(conf[used], acc[used], "ro-", ms=3, label="bin mean confidence")
    ax.set(xlabel="confidence (top class)", ylabel="accuracy", title="Reliability diagram", xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "reliability.png", dpi=110)
    plt.close(fig)

    scored = [(d, i) for i, d in enumerate(outcomes.dice) if d is not None]
    if scored:
        worst = sorted((d, i) for d, i in scored if i in outcomes.worst_masks)
        cols = 4
        fig, axes_grid = plt.subplots(
            (len(worst) + cols - 1) // cols,
            cols,
            figsize=(3.2 * cols, 2.6 * ((len(worst) + cols - 1) // cols)),
            squeeze=False,
        )
        for ax in axes_grid.ravel():
            ax.axis("off")
        for ax, (d, i) in zip(axes_grid.ravel(), worst, strict=False):
            record = outcomes.records[i]
            assert record.mask_path is not None
            ax.imshow(read_rgb(record.image_path))
            ax.contour(read_mask(record.mask_path), levels=[0.5], colors="lime", linewidths=1)
            ax.contour(outcomes.worst_masks[i], levels=[0.5], colors="red", linewidths=1)
            ax.set_title(f"{record.image_id} Dice {d:.2f}", fontsize=8)
        fig.suptitle("Worst segmentations (green truth, red prediction)")
        fig.tight_layout()
        fig.savefig(out / "worst_segmentations.png", dpi=100)
        plt.close(fig)

    _attention_plot(out, outcomes)


def _attention_plot(out: Path, outcomes: Outcomes) -> None:
    """Histograms of the Grad-CAM share inside the lesion mask, plain and with an added circular vignette,
    per source, with the medians that ``metrics.json`` reports."""
    plain = [
        (r.source, a) for r, a in zip(outcomes.records, outcomes.attention_in_lesion, strict=False) if a is not None
    ]
    if not plain:
        return
    vignette = [
        (r.source, a)
        for r, a in zip(outcomes.records, outcomes.attention_in_lesion_vignette, strict=False)
        if a is not None
    ]
    sources = sorted({s for s, _ in plain})
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    bins = np.linspace(0, 1, 21)
    for ax, title, values in ((axes[0], "as acquired", plain), (axes[1], "with an added circular vignette", vignette)):
        for source in sources:
            shares = [a for s, a in values if s == source]
            if shares:
                label = f"{source} (median {np.median(shares):.2f}, n={len(shares)})"
                ax.hist(shares, bins=bins, alpha=0.5, label=label)
        ax.axvline(0.6, color="k", ls=":", lw=0.8)
        ax.set(title=f"Grad-CAM inside the lesion, {title}", xlabel="share inside the lesion mask", ylabel="images")
        ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "attention_in_lesion.png", dpi=110)
    plt.close(fig)
