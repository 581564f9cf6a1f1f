"""View means of ``cvd.centre: inference``: measured on the training images under the final
weights and the evaluation transform, checked against a plain loop over those images."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from tests.analysis.conftest import train_tiny

from cvd.data import PairRecord
from cvd.engine.calibration import calibration_records
from cvd.engine.trained_eval import load_trained


def _pairs(n: int) -> list[PairRecord]:
    return [PairRecord(f"q{i}.jpg", f"s{i // 2}.jpg", i // 2, str(i // 2)) for i in range(n)]


def test_records_are_each_views_distinct_images_evenly_spread():
    chosen = calibration_records(_pairs(10), "drone", limit=4)
    assert [str(r.path) for r in chosen["drone"]] == ["q0.jpg", "q3.jpg", "q6.jpg", "q9.jpg"]
    assert [str(r.path) for r in chosen["satellite"]] == ["s0.jpg", "s1.jpg", "s3.jpg", "s4.jpg"]
    assert {r.view for r in chosen["drone"]} == {"drone"}


def test_fit_stores_the_training_images_mean_under_the_eval_transform(tmp_path, tiny_world):
    run = train_tiny(tmp_path, tiny_world, variant="toolkit", centre="inference")
    model, _config, _ = load_trained(run)
    # the reference: every training image of a view, resized and normalised as evaluation does,
    # through the released backbone, pooled, averaged
    mean, std = torch.tensor(model.data_config["mean"]), torch.tensor(model.data_config["std"])
    for index, (folder, view) in enumerate((("drone", "drone"), ("satellite", "satellite"))):
        paths = sorted((tiny_world / "train" / folder).rglob("*.*"))
        assert paths, folder
        images = []
        for path in paths:
            image = Image.open(path).convert("RGB").resize((32, 32), Image.BICUBIC)
            tensor = torch.from_numpy(np.asarray(image, dtype=np.float32)) / 255.0
            images.append(((tensor - mean) / std).permute(2, 0, 1))
        with torch.no_grad():
            pooled = model.backbone("query" if view == "drone" else "satellite")(torch.stack(images))
        expected = pooled.mean(dim=(0, 2, 3))
        # the scale of the means: a tolerance well below their spread across channels
        tolerance = 1e-3 * float(expected.abs().max())
        torch.testing.assert_close(model.cvd.view_means[index], expected, atol=tolerance, rtol=0)
