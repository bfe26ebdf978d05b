from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser

from dermnode.kernel.errors import BundleError
from inference.models.bundle import METADATA_FILE, WEIGHTS_FILE, Task, load_bundle, read_metadata
from inference.models.lesion_classes import HAM10000_CLASSES, VERIFIED_IN_PYDICOM
from inference.models.networks import build_network
from inference.models.predict import DEFAULT_CLASSIFIER, DEFAULT_SEGMENTER, Analyzer
from inference.training.placeholder import write_placeholder
from tests.factories import lesion_image


def edit_metadata(bundle: Path, change: Any) -> None:
    path = bundle / METADATA_FILE
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def test_shipped_bundles_load_in_eval_mode() -> None:
    cls = load_bundle(DEFAULT_CLASSIFIER)
    seg = load_bundle(DEFAULT_SEGMENTER)
    assert cls.metadata.task is Task.CLASSIFICATION and seg.metadata.task is Task.SEGMENTATION
    assert not cls.network.training and not seg.network.training
    assert [x.key for x in cls.metadata.labels] == ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
    assert cls.metadata.melanoma_key == "mel"
    assert {x.key for x in cls.metadata.labels if x.malignant} == {"mel", "bcc", "akiec"}
    assert cls.device == torch.device("cpu")


def test_monai_config_parser_reads_metadata() -> None:
    parser = ConfigParser()
    parser.read_meta(DEFAULT_CLASSIFIER / METADATA_FILE)
    assert parser.get("_meta_")["version"] == read_metadata(DEFAULT_CLASSIFIER).version
    assert parser.get("_meta_#network_data_format#outputs#pred#num_channels") == 7
    assert (
        ConfigParser.load_config_file(DEFAULT_SEGMENTER / METADATA_FILE)["dermnode"]["task"] == "segmentation"
    )


def test_placeholder_round_trip_and_untrained_label(tmp_path: Path) -> None:
    out = write_placeholder(tmp_path / "c", Task.CLASSIFICATION, seed=3)
    bundle = load_bundle(out)
    assert bundle.metadata.trained is False
    assert "UNTRAINED" in bundle.metadata.identity.label
    assert (out / WEIGHTS_FILE).stat().st_size < 2 * 1024 * 1024
    again = write_placeholder(tmp_path / "d", Task.CLASSIFICATION, seed=3)
    a, b = torch.load(out / WEIGHTS_FILE), torch.load(again / WEIGHTS_FILE)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_missing_metadata_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match=r"configs/metadata.json does not exist"):
        load_bundle(tmp_path)


def test_missing_weights_is_rejected(classifier_copy: Path) -> None:
    (classifier_copy / WEIGHTS_FILE).unlink()
    with pytest.raises(BundleError, match=r"models/model.pt does not exist"):
        load_bundle(classifier_copy)


def test_label_count_must_match_output_channels(classifier_copy: Path) -> None:
    edit_metadata(classifier_copy, lambda d: d["dermnode"]["labels"].pop(0))
    with pytest.raises(BundleError, match=r"logit_bias has 7 values but dermnode.labels lists 6 labels"):
        load_bundle(classifier_copy)
    edit_metadata(classifier_copy, lambda d: d["dermnode"].update(logit_bias=[], decision_weights=[]))
    with pytest.raises(BundleError, match=r"lists 6 labels but the network outputs 7 channels"):
        load_bundle(classifier_copy)


def test_unknown_dermnode_key_is_rejected(classifier_copy: Path) -> None:
    edit_metadata(classifier_copy, lambda d: d["dermnode"].update(treshold=0.3))
    with pytest.raises(BundleError, match=r"unknown keys \['treshold'\]"):
        read_metadata(classifier_copy)


def test_missing_monai_key_is_rejected(classifier_copy: Path) -> None:
    edit_metadata(classifier_copy, lambda d: d.pop("monai_version"))
    with pytest.raises(BundleError, match=r"lacks the MONAI metadata keys \['monai_version'\]"):
        read_metadata(classifier_copy)


def test_unregistered_network_is_rejected(classifier_copy: Path) -> None:
    edit_metadata(classifier_copy, lambda d: d["dermnode"]["network"].update(name="os.system"))
    with pytest.raises(BundleError, match=r"Network 'os.system' is not one dermnode can build"):
        load_bundle(classifier_copy)


def test_weights_that_do_not_fit_the_network(segmenter_copy: Path) -> None:
    # Narrower layers than the weights were trained with, whichever network the shipped segmenter is.
    narrower = {"UNet": {"channels": [8, 16, 32, 64]}, "EfficientNetLiteUNet": {"decoder_channels": [8, 8, 8, 8, 8]}}
    name = read_metadata(segmenter_copy).network.name
    edit_metadata(segmenter_copy, lambda d: d["dermnode"]["network"]["kwargs"].update(narrower[name]))
    with pytest.raises(BundleError, match=rf"does not fit network {name}"):
        load_bundle(segmenter_copy)


def test_bad_melanoma_key_and_threshold(classifier_copy: Path) -> None:
    edit_metadata(classifier_copy, lambda d: d["dermnode"].update(melanoma_key="melanoma"))
    with pytest.raises(BundleError, match=r"melanoma_key 'melanoma' is not one of the label keys"):
        read_metadata(classifier_copy)
    edit_metadata(
        classifier_copy, lambda d: d["dermnode"].update(melanoma_key="mel", operating_threshold=1.5)
    )
    with pytest.raises(BundleError, match=r"operating_threshold must be a number in \[0, 1\]"):
        read_metadata(classifier_copy)


def test_calibration_vectors_are_one_per_label(classifier_copy: Path) -> None:
    edit_metadata(classifier_copy, lambda d: d["dermnode"].update(logit_bias=[0.5, -0.5]))
    with pytest.raises(BundleError, match=r"logit_bias has 2 values but dermnode.labels lists 7 labels"):
        read_metadata(classifier_copy)
    zero_weight = [1, 1, 1, 0, 1, 1, 1]
    edit_metadata(classifier_copy, lambda d: d["dermnode"].update(logit_bias=[], decision_weights=zero_weight))
    with pytest.raises(BundleError, match=r"decision_weights must be empty or 7 finite positive numbers"):
        read_metadata(classifier_copy)
    bias = [0.1, -0.2, 0.3, -0.4, 0.5, 1.0, -1.3]
    weights = [1, 2, 3, 4, 5, 6, 7]
    edit_metadata(classifier_copy, lambda d: d["dermnode"].update(logit_bias=bias, decision_weights=weights))
    meta = read_metadata(classifier_copy)
    assert meta.logit_bias == tuple(bias) and meta.decision_weights == (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0)


def test_logit_bias_and_decision_weights_reach_the_analysis(classifier_copy: Path, segmenter_copy: Path) -> None:
    """A +12 bias on df makes df almost certain; a tiny df decision weight still keeps df from being called."""
    df = 3
    only_df = [12.0 if i == df else 0.0 for i in range(7)]
    edit_metadata(classifier_copy, lambda d: d["dermnode"].update(logit_bias=only_df))
    images = [lesion_image(96, 128, seed=s) for s in range(3)]
    biased = Analyzer.from_bundles(classifier_copy, segmenter_copy).analyze(images)
    assert all(r.probabilities[df] > 0.99 and r.predicted.key == "df" for r in biased)
    never_df = [1e-9 if i == df else 1.0 for i in range(7)]
    edit_metadata(classifier_copy, lambda d: d["dermnode"].update(decision_weights=never_df))
    weighted = Analyzer.from_bundles(classifier_copy, segmenter_copy).analyze(images)
    for a, b in zip(biased, weighted, strict=True):
        np.testing.assert_allclose(a.probabilities, b.probabilities)  # weights change the call, not the probabilities
        assert b.predicted.key != "df"


def test_bad_label_is_rejected(classifier_copy: Path) -> None:
    edit_metadata(classifier_copy, lambda d: d["dermnode"]["labels"][0].pop("code"))
    with pytest.raises(BundleError, match=r"each label needs key, name, malignant"):
        read_metadata(classifier_copy)


def test_codes_verified_against_pydicom_dictionary() -> None:
    from pydicom.sr.codedict import codes

    known = {
        code.value
        for code in (
            codes.SCT.MalignantMelanoma,
            codes.SCT.ActinicKeratosis,
            codes.SCT.Hemangioma,
            codes.SCT.SkinLesion,
        )
    }
    assert known == VERIFIED_IN_PYDICOM
    assert {x.code.value for x in HAM10000_CLASSES} >= known - {"95324001"}


def test_flexible_unet_must_not_download_weights() -> None:
    with pytest.raises(BundleError, match=r"pretrained=false"):
        build_network(
            "FlexibleUNet",
            {"in_channels": 3, "out_channels": 1, "backbone": "efficientnet-b0", "pretrained": True},
        )
