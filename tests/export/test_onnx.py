"""ONNX export: parity with PyTorch on real photographs, metadata, refusal paths, localize with ONNX."""

from __future__ import annotations

import json
import sys
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import skimage.data
import torch
from PIL import Image

from cvd.cli import main
from cvd.errors import CheckpointError, ConfigError, MissingExtraError
from cvd.export import ExportError, OnnxEmbedder, export_onnx, onnx_metadata
from cvd.geo.embedders import release_identity


@pytest.fixture(scope="module")
def drone_onnx(tiny_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "drone.onnx"
    report = export_onnx(tiny_run, out, view="drone")
    return out, report


def reference_embeddings(run_dir, images: list[Image.Image], view: str) -> np.ndarray:
    """PyTorch embeddings computed without cvd.export: load_release + the evaluation transform."""
    from cvd.data.transforms import build_eval_transform
    from cvd.factory import load_release

    model, config = load_release(run_dir / "release")
    transform = build_eval_transform(config, model.data_config, view)
    with torch.no_grad():
        return model.embed(torch.stack([transform(i) for i in images]), view).numpy(), transform


def test_onnxruntime_matches_pytorch_on_real_photographs(tiny_run, drone_onnx):
    path, report = drone_onnx
    photos = [
        Image.fromarray(getattr(skimage.data, n)()).convert("RGB") for n in ("astronaut", "coffee", "chelsea")
    ]
    expected, transform = reference_embeddings(tiny_run, photos, "drone")
    batch = torch.stack([transform(i) for i in photos]).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (actual,) = session.run(None, {session.get_inputs()[0].name: batch})
    assert np.abs(actual - expected).max() < 1e-4
    (single,) = session.run(None, {session.get_inputs()[0].name: batch[1:2]})  # dynamic batch size
    assert np.abs(single - expected[1:2]).max() < 1e-4
    assert report.max_abs_diff < 1e-4 and report.n_check_images == 6 and report.min_cosine > 0.9999


def test_export_carries_identity_view_and_preprocessing(tiny_run, drone_onnx):
    path, _ = drone_onnx
    meta = onnx_metadata(path)
    assert meta["identity"] == release_identity(tiny_run)
    assert meta["view"] == "drone"
    assert meta["data_config"] == {
        "input_size": [3, 64, 64],
        "mean": [0.5] * 3,
        "std": [0.5] * 3,
        "interpolation": "bicubic",
    }
    graph = onnx.load(str(path))
    assert [i.name for i in graph.graph.input] == ["images"]
    # the graph holds the query embedder's weights only: no CVD decoder, no viewpoint branch
    from cvd.factory import load_release

    model, _ = load_release(tiny_run / "release")
    exported = sum(int(np.prod(t.dims)) for t in graph.graph.initializer)
    exported += sum(
        int(np.prod(a.t.dims))
        for n in graph.graph.node
        if n.op_type == "Constant"
        for a in n.attribute
        if a.t.dims
    )
    embedder = model.embedder("drone")
    # the split's basis travels as the orthonormal Q the embedder computed from it (a buffer)
    embedder_params = (
        sum(p.numel() for p in embedder.parameters()) - model.cvd.content_convs["shared"].basis.numel()
    )
    embedder_params += sum(b.numel() for b in embedder.buffers() if b.dtype.is_floating_point)
    decoder_params = sum(p.numel() for p in model.cvd.decoders.parameters())
    # the export holds the embedder's numbers to within 2% (BatchNorm is folded into the convs),
    # far less than the decoders would add
    assert decoder_params > 0.03 * embedder_params
    assert abs(exported - embedder_params) < 0.02 * embedder_params


def test_onnx_embedder_refuses_the_other_branch(drone_onnx):
    path, _ = drone_onnx
    with pytest.raises(CheckpointError, match=r"drone\.onnx: exported for the 'drone' view"):
        OnnxEmbedder(path, "satellite")


def test_parity_failure_writes_nothing(tiny_run, tmp_path):
    with pytest.raises(ExportError, match=r"differs from PyTorch by up to .* not written"):
        export_onnx(tiny_run, tmp_path / "strict.onnx", atol=0.0)
    assert not list(tmp_path.iterdir())


def test_foreign_onnx_without_metadata_is_refused(tmp_path):
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, (torch.randn(1, 3, 2, 2),), str(tmp_path / "plain.onnx"), dynamo=False)
    with pytest.raises(CheckpointError, match=r"plain\.onnx: lacks cvd metadata"):
        OnnxEmbedder(tmp_path / "plain.onnx")


def test_cli_export_then_localize_with_onnx_matches_pytorch(tiny_run, tmp_path, capsys):
    rng = np.random.default_rng(5)
    lines = ["path,lat,lon"]
    for i in range(12):
        cells = rng.integers(0, 256, size=(4, 4, 3)).astype(np.uint8)
        Image.fromarray(cells).resize((64, 64), Image.Resampling.BILINEAR).save(tmp_path / f"t{i}.png")
        lines.append(f"t{i}.png,{47 + i * 0.01},{8 + i * 0.01}")
    (tmp_path / "tiles.csv").write_text("\n".join(lines) + "\n")
    assert (
        main(
            [
                "index",
                "build",
                "--model",
                str(tiny_run),
                "--tiles",
                str(tmp_path / "tiles.csv"),
                "--out",
                str(tmp_path / "idx"),
                "-q",
            ]
        )
        == 0
    )
    assert (
        main(["export", "--model", str(tiny_run), "--format", "onnx", "--out", str(tmp_path / "q.onnx")]) == 0
    )
    printed = capsys.readouterr().out
    assert "parity vs PyTorch on 6 renders of synthetic town" in printed
    assert "input: N x 3x64x64" in printed  # the fixed size, stated where the user sees it
    queries = [str(tmp_path / f"t{i}.png") for i in (2, 7)]
    assert main(["localize", "--index", str(tmp_path / "idx"), *queries]) == 0
    torch_records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (
        main(["localize", "--index", str(tmp_path / "idx"), "--model", str(tmp_path / "q.onnx"), *queries])
        == 0
    )
    onnx_records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    for a, b in zip(torch_records, onnx_records):
        assert [t["id"] for t in a["top_k"]] == [t["id"] for t in b["top_k"]]
        for x, y in zip(a["top_k"], b["top_k"]):
            assert x["score"] == pytest.approx(y["score"], abs=1e-4)


def test_index_built_from_a_satellite_onnx_export(tiny_run, tmp_path):
    from cvd.geo.gallery_index import GalleryIndex

    report = export_onnx(tiny_run, tmp_path / "sat.onnx", view="satellite")
    tile = tmp_path / "tile.png"
    Image.fromarray(skimage.data.coffee()).save(tile)
    (tmp_path / "tiles.csv").write_text("path,lat,lon\ntile.png,1.0,2.0\n")
    code = main(
        [
            "index",
            "build",
            "--model",
            str(tmp_path / "sat.onnx"),
            "--tiles",
            str(tmp_path / "tiles.csv"),
            "--out",
            str(tmp_path / "idx"),
            "-q",
        ]
    )
    assert code == 0
    assert (
        GalleryIndex.load(tmp_path / "idx").model["identity"] == report.identity == release_identity(tiny_run)
    )


def test_onnx_embedder_states_its_fixed_size_and_resizes_images(drone_onnx):
    path, report = drone_onnx
    assert report.input_size == (3, 64, 64)
    embedder = OnnxEmbedder(path, "drone")
    wrong = np.zeros((1, 3, 96, 96), dtype=np.float32)
    with pytest.raises(ConfigError, match=r"drone\.onnx: takes images of 3x64x64 \(its fixed export size\)"):
        embedder.embed(wrong)
    # localization's path: any photo is resized to the export size by the file's own transform
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 256, (150, 200, 3), dtype=np.uint8))
    batch = torch.stack([embedder.transform(photo)])
    assert tuple(batch.shape) == (1, 3, 64, 64) and embedder.embed(batch).shape[0] == 1


def test_default_parity_check_needs_no_scikit_image(tiny_run, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "skimage", None)
    monkeypatch.setitem(sys.modules, "skimage.data", None)
    report = export_onnx(tiny_run, tmp_path / "q.onnx")
    assert report.n_check_images == 6 and "synthetic town" in report.check_source
    assert report.max_abs_diff < 1e-4 and (tmp_path / "q.onnx").is_file()


def test_export_without_the_onnx_extra_is_one_line(tiny_run, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnx", None)  # onnx not installed
    code = main(["export", "--model", str(tiny_run), "--out", str(tmp_path / "q.onnx")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("cvd export: error: cvd export needs the onnx extra: pip install 'cvd[onnx]'")
    assert not (tmp_path / "q.onnx").exists()


def test_onnx_model_without_onnxruntime_names_the_extra(drone_onnx, monkeypatch):
    path, _ = drone_onnx
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(MissingExtraError, match=r"running an \.onnx model needs the onnx extra: pip install"):
        OnnxEmbedder(path, "drone")
