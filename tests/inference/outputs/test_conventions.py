from __future__ import annotations

from inference.models.prediction import ModelIdentity
from inference.outputs.conventions import NOT_FOR_DIAGNOSIS, series_description, short_description


def test_series_description_keeps_kind_and_disclaimer_and_drops_the_name_first() -> None:
    short = ModelIdentity("seg", "1.0.0", trained=True)
    assert series_description(short, kind="Lesion SEG") == f"Lesion SEG seg 1.0.0, {NOT_FOR_DIAGNOSIS}"
    long = ModelIdentity("dermnode-classifier-UNTRAINED", "0.0.0-untrained", trained=False)
    text = series_description(long, kind="AI report")
    assert text == f"AI report UNTRAINED, {NOT_FOR_DIAGNOSIS}"
    assert len(text) <= 64
    huge = ModelIdentity("x" * 80, "9" * 40, trained=True)
    assert series_description(huge, kind="Attention SEG") == f"Attention SEG, {NOT_FOR_DIAGNOSIS}"


def test_short_description_never_cuts_the_disclaimer() -> None:
    text = short_description(ModelIdentity("dermnode-classifier-UNTRAINED", "0.0.0-untrained", trained=False))
    assert text == f"0.0.0-untrained UNTRAINED; {NOT_FOR_DIAGNOSIS}"
    assert short_description(ModelIdentity("seg", "1.0", trained=True)) == f"seg 1.0; {NOT_FOR_DIAGNOSIS}"
