"""Released weights: a round trip gives the same embeddings; broken releases name the file."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from cvd.errors import CheckpointError
from cvd.factory import build_model, load_release
from cvd.models import save_release


def test_round_trip_gives_identical_embeddings(tmp_path, make_config):
    config = make_config(recon_size=16)
    config["cvd"]["alpha"] = np.float64(0.5)  # configs computed with numpy must still save
    config["output_dir"] = tmp_path / "run"  # and paths too
    model = build_model(config).eval()
    weights = save_release(model, config, tmp_path / "release")
    assert weights.name == "model.safetensors" and (tmp_path / "release" / "config.yaml").is_file()
    assert [path.name for path in (tmp_path / "release").iterdir() if path.name.startswith(".")] == []
    images = torch.randn(3, 3, 64, 64)
    for path in (tmp_path / "release", weights):
        loaded, loaded_config = load_release(path)
        assert loaded_config["cvd"] == {**config["cvd"], "alpha": 0.5} and not loaded.training
        assert loaded_config["output_dir"] == str(tmp_path / "run")
        with torch.no_grad():
            for view in ("drone", "satellite"):
                assert torch.equal(loaded.embed(images, view), model.embed(images, view))


def test_a_wrapped_model_saves_its_plain_weights(tmp_path, make_config):
    config = make_config(cvd=False)
    model = build_model(config).eval()
    save_release(torch.nn.DataParallel(model), config, tmp_path)  # keys must not start with module.
    loaded, _ = load_release(tmp_path)
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded.embed(images, "satellite"), model.embed(images, "satellite"))


def test_loading_never_downloads_backbone_weights(tmp_path, make_config, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    config = make_config(backbone="test_vit")
    model = build_model(config)
    config["model"]["backbone"]["pretrained"] = True  # as a released config would say
    save_release(model, config, tmp_path)
    _, loaded_config = load_release(tmp_path)
    assert loaded_config["model"]["backbone"]["pretrained"] is True


def test_missing_corrupt_or_mismatched_files_raise_checkpoint_error(tmp_path, make_config):
    config = make_config()
    save_release(build_model(config), config, tmp_path)
    with pytest.raises(CheckpointError, match=r"config\.yaml"):
        load_release(tmp_path / "elsewhere" / "model.safetensors")

    other = make_config(alpha=0.25)  # same backbone, other split: shapes differ
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(other))
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*shape mismatch"):
        load_release(tmp_path)

    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    (tmp_path / "model.safetensors").write_bytes(b"\x00\x01 not a safetensors file")
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*corrupt"):
        load_release(tmp_path)

    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"model\.safetensors: missing"):
        load_release(tmp_path)
