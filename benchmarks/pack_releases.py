"""Move trained runs between machines as one file each: train where the GPU is, test where the data is.

``pack RUNS OUT`` writes every finished run of RUNS (``RUNS/<name>/release/``) as
``OUT/<name>.safetensors``: the release's weights (``--half``: rounded to float16, half the
size) with its ``config.yaml`` in the file's metadata. ``unpack IN RUNS`` rebuilds
``RUNS/<name>/release/`` from such files, so ``benchmarks/accuracy.py --out ...`` finds the
runs finished and only tests them. Loading casts float16 weights back to the model's float32.

    python benchmarks/pack_releases.py pack /tmp/acc/runs $OUT --half --only baseline toolkit
    python benchmarks/pack_releases.py unpack /work/device_out /work/runs/large/runs
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from safetensors.torch import load_file, safe_open, save_file

from cvd.models.release import CONFIG_NAME, WEIGHTS_NAME, write_bound_release

CONFIG_KEY = "cvd_config_yaml"


def pack(runs: Path, out: Path, half: bool, only: list[str]) -> list[Path]:
    """One safetensors file per finished run whose name contains one of ``only`` (all if empty)."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for release in sorted(runs.glob(f"*/release/{WEIGHTS_NAME}")):
        name = release.parent.parent.name
        if only and not any(part in name.split("_") for part in only):
            continue
        state = load_file(str(release))
        if half:
            state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
        config = (release.parent / CONFIG_NAME).read_text(encoding="utf-8")
        target = out / f"{name}.safetensors"
        save_file(state, str(target), metadata={"format": "pt", CONFIG_KEY: config})
        written.append(target)
    return written


def unpack(packed: Path, runs: Path) -> list[Path]:
    """``RUNS/<name>/release/`` (weights in float32, config) for every packed file in ``packed``."""
    written = []
    for source in sorted(packed.glob("*.safetensors")):
        with safe_open(str(source), framework="pt") as handle:
            config = (handle.metadata() or {}).get(CONFIG_KEY)
        if config is None:
            continue
        state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(source)).items()}
        release = runs / source.stem / "release"
        release.mkdir(parents=True, exist_ok=True)
        write_bound_release(state, config, release)  # the config's hash goes into the weights
        written.append(release)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    packer = sub.add_parser("pack")
    packer.add_argument("runs", type=Path)
    packer.add_argument("out", type=Path)
    packer.add_argument("--half", action="store_true", help="store the weights as float16")
    packer.add_argument("--only", nargs="*", default=[], help="variants to pack (a part of the run name)")
    unpacker = sub.add_parser("unpack")
    unpacker.add_argument("packed", type=Path)
    unpacker.add_argument("runs", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.command == "pack":
        paths = pack(args.runs, args.out, args.half, args.only)
    else:
        paths = unpack(args.packed, args.runs)
    for path in paths:
        print(path)


if __name__ == "__main__":
    main()
