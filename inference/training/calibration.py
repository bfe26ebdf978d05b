"""Calibration of the classifier's probabilities: bias-corrected temperature scaling.

The classifier is trained with class-balanced sampling and loss, so its raw softmax behaves as if the seven
classes were equally common; on real data (70 % nevi) such probabilities are far too low for nevi and too
high for the rare classes. Bias-corrected temperature scaling (Alexandari, Kundaje & Shrikumar, ICML 2020)
fits one temperature and one logit bias per class by minimising the NLL on held-out TRAINING lesions, so
the probabilities estimate how often each class is right on data like the training data.

The called class should not simply follow those probabilities (almost every call would be "nevus"); the
decision weights exp(-bias) undo the bias for the call, which then is the class the model favours when all
classes are taken as equally likely: the rule that balanced accuracy rewards and that keeps rare malignant
classes callable. Probabilities (confidence, ECE) and the call (balanced accuracy) are thus both honest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from inference.models.predict import calibrated_probabilities

#: Weak Gaussian prior on the biases: keeps a class that is rare (or absent) in the calibration split finite.
BIAS_PRIOR_WEIGHT = 1e-3


@dataclass(frozen=True)
class Calibration:
    """What a classifier bundle stores to turn TTA view logits into probabilities and a call."""

    temperature: float
    logit_bias: tuple[float, ...]
    decision_weights: tuple[float, ...]


#: Temperature 1, no bias, plain argmax: what a bundle without calibration does.
NO_CALIBRATION = Calibration(1.0, (), ())


def fit_calibration(logits: torch.Tensor, labels: torch.Tensor) -> Calibration:
    """Fit temperature + per-class logit bias by NLL of the TTA-averaged softmax; ``logits`` (views, N, C).

    Deterministic (full-batch L-BFGS in float64). The biases are centred (softmax ignores a common shift)
    and the decision weights are exp(-bias) scaled to a largest weight of 1.
    """
    if logits.ndim != 3 or labels.ndim != 1 or logits.shape[1] != labels.shape[0]:
        raise ValueError(f"need logits (views, N, C) and labels (N,), got {tuple(logits.shape)}, {tuple(labels.shape)}")
    if labels.numel() == 0:
        return NO_CALIBRATION
    values = logits.detach().double()
    target = labels.long()
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(values.shape[2], dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS(
        [log_t, bias], max_iter=500, tolerance_grad=1e-10, tolerance_change=1e-14, line_search_fn="strong_wolfe"
    )

    def objective() -> torch.Tensor:
        optimiser.zero_grad()
        probs = calibrated_probabilities(values, log_t.exp(), bias)
        nll = -torch.log(probs[torch.arange(len(target)), target].clamp_min(1e-12)).mean()
        loss = nll + BIAS_PRIOR_WEIGHT * (bias**2).sum()
        loss.backward()
        return loss

    optimiser.step(objective)
    temperature = float(log_t.detach().exp())
    centred = (bias.detach() - bias.detach().mean()).tolist()
    if not math.isfinite(temperature) or not all(math.isfinite(b) for b in centred):
        return NO_CALIBRATION
    lowest = min(centred)
    return Calibration(
        temperature=round(temperature, 4),
        logit_bias=tuple(round(b, 4) for b in centred),
        decision_weights=tuple(round(math.exp(-(b - lowest)), 6) for b in centred),
    )
