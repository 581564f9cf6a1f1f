"""`cvd reproduce` through the real CLI: the plan, the SLURM scripts, a synthetic table end to end
(checked against the rows' own results.json and the configs' own meta), and a resumed reproduce."""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import pytest
import yaml

from cvd.cli import main
from cvd.reproduce.synthetic import make_worlds
from cvd.reproduce.tables import all_rows

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.fixture(scope="module")
def worlds(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """--data-root arguments of tiny University-1652 and SUES-200 worlds (made once for the module)."""
    roots = make_worlds(tmp_path_factory.mktemp("worlds"), {"university1652", "sues200"})
    return [argument for dataset, root in roots.items() for argument in ("--data-root", f"{dataset}={root}")]


def leaf_meta(path: Path) -> dict:
    """The meta block written in the config file itself (every row config states its own)."""
    return yaml.safe_load(path.read_text())["meta"]


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def plan_steps(out: Path) -> list[dict]:
    return json.loads((out / "plan.json").read_text())["steps"]


def test_every_row_config_is_enumerated_with_its_own_paper_numbers():
    tables = all_rows(CONFIGS)
    expected = {}
    for path in CONFIGS.rglob("*.yaml"):
        meta = (yaml.safe_load(path.read_text()) or {}).get("meta") or {}
        if "table" in meta:
            expected[path.resolve()] = meta
    rows = [row for table_rows in tables.values() for row in table_rows]
    assert {row.config.path.resolve() for row in rows} == set(expected)
    assert sum(len(r) for r in tables.values()) == 108  # the paper's rows that have a config
    assert {t: len(r) for t, r in tables.items()} == {1: 10, 2: 48, 3: 16, 4: 10, 5: 4, 6: 4, 7: 16}
    for row in rows:
        meta = expected[row.config.path.resolve()]
        assert row.table == meta["table"] and row.label == meta["row"]
        assert row.paper == meta["paper"]
    stage_two = [row for row in tables[3] if row.needs]
    assert len(stage_two) == 4 and all(row.needs[0].meta.get("stage") == 1 for row in stage_two)
    assert all(row.kind == "test" and row.test_of.path.parent.name == "university1652" for row in tables[7])


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "t7"
    root = ["--data-root", f"university1652={tmp_path / 'absent'}"]
    code = main(["reproduce", "table7", "--rows", "1", "--dry-run", "--out", str(out), *root, "optim.lr=0.5"])
    text = capsys.readouterr().out
    assert code == 0 and not out.exists()
    fit, test = (
        text.index("fit university1652_game4loc-"),
        text.index("test generalisation_game4loc_from_u1652_150-"),
    )
    assert fit < test  # the Table 1 model is trained before the Table 7 row tests it
    assert "waiting on data: university1652 not at" in text
    assert "configs/university1652/game4loc.yaml" in text and "optim.lr=0.5" in text
    # another override is another config: another folder, never the same run resumed
    main(["reproduce", "table7", "--rows", "1", "--dry-run", "--out", str(out), *root, "optim.lr=0.4"])
    other = capsys.readouterr().out
    folder = next(line for line in text.splitlines() if "folder:" in line and "game4loc-" in line)
    assert folder not in other


def test_slurm_writes_job_arrays_chained_by_dependency(tmp_path, capsys):
    out = tmp_path / "t7"
    assert main(["reproduce", "table7", "--rows", "1,2", "--launcher", "slurm", "--gpus", "2",
                 "--sbatch=--time=12:00:00", "--out", str(out)]) == 0  # fmt: skip
    slurm = out / "slurm"
    phase0, phase1 = (
        (slurm / "table7-phase0.sbatch").read_text(),
        (slurm / "table7-phase1.sbatch").read_text(),
    )
    assert "#SBATCH --array=0-0" in phase0 and "torch.distributed.run --nproc_per_node=2" in phase0
    assert "#SBATCH --array=0-1" in phase1 and phase1.count(" test --model ") == 2
    assert "#SBATCH --time=12:00:00" in phase0
    submit = (slurm / "submit-table7.sh").read_text()
    assert "--dependency=afterok:$previous" in submit and submit.index("phase0") < submit.index("phase1")
    for script in (
        slurm / "table7-phase0.sbatch",
        slurm / "table7-phase1.sbatch",
        slurm / "submit-table7.sh",
    ):
        assert subprocess.run(["bash", "-n", str(script)], check=False).returncode == 0


def test_synthetic_table7_row_runs_end_to_end_and_collects_the_rows_own_results(tmp_path, worlds, capsys):
    out = tmp_path / "t7"
    assert main(["reproduce", "table7", "--synthetic", "--rows", "1", "--out", str(out), *worlds]) == 0
    steps = plan_steps(out)
    assert [step["kind"] for step in steps] == ["fit", "test"] and all(s["state"] == "done" for s in steps)
    results = json.loads((Path(steps[1]["folder"]) / "results.json").read_text())
    assert sorted(result["split"] for result in results) == ["drone->satellite/150m", "satellite->drone/150m"]
    by_split = {result["split"].split("/")[0]: result for result in results}
    meta = leaf_meta(CONFIGS / "sues200" / "generalisation" / "game4loc_from_u1652_150.yaml")
    table = read_csv(out / "table.csv")
    assert len({(c["row"], c["group"]) for c in table}) == 16  # the rows not chosen are there, empty
    cells = [c for c in table if c["ours"]]
    assert len(cells) == sum(len(metrics) for metrics in meta["paper"].values())
    for cell in cells:
        assert cell["row"] == meta["row"] and cell["group"] == "150 m"
        assert float(cell["ours"]) == pytest.approx(by_split[cell["direction"]][cell["metric"]], abs=1e-4)
        assert float(cell["paper"]) == meta["paper"][cell["direction"]][cell["metric"]]
        assert float(cell["diff"]) == pytest.approx(float(cell["ours"]) - float(cell["paper"]), abs=1e-3)
    page = (out / "table.html").read_text()
    assert "SYNTHETIC SMOKE RUN" in page and "data:image/png;base64," in page
    assert "SYNTHETIC SMOKE RUN" in (out / "table.md").read_text()


def test_interrupted_reproduce_resumes_without_rerunning_finished_rows(tmp_path, worlds, capsys):
    out = tmp_path / "t6"
    command = ["reproduce", "table6", "--synthetic", "--rows", "1,2", "--out", str(out), *worlds]
    assert main(command) == 0
    first, second = (Path(step["folder"]) for step in plan_steps(out))
    finished = (first / "results.json").stat().st_mtime_ns
    before = json.loads((second / "results.json").read_text())
    # what a kill during the second row's final evaluation leaves: its last checkpoint, no results
    (second / "results.json").unlink()
    (second / "release" / "model.safetensors").unlink()
    capsys.readouterr()
    assert main(command) == 0
    progress = capsys.readouterr().err
    assert f"done         fit {first.name}" in progress and f"resuming     fit {second.name}" in progress
    assert (first / "results.json").stat().st_mtime_ns == finished
    assert (out / "logs" / f"{first.name}.log").read_text().count("$ ") == 1  # run once, never again
    log = (out / "logs" / f"{second.name}.log").read_text()
    assert log.count("$ ") == 2 and "resumed from" in log
    after = json.loads((second / "results.json").read_text())
    assert [r["R@1"] for r in after] == [r["R@1"] for r in before]  # continued the same run
    cells = read_csv(out / "table.csv")
    assert len(cells) == 4 * 4 and len([c for c in cells if c["ours"]]) == 2 * 4


def test_collect_marks_missing_rows_and_another_protocol(tmp_path, capsys):
    out = tmp_path / "t6"
    assert main(["reproduce", "table6", "--rows", "1,2", "--dry-run", "--out", str(out)]) == 0
    folder = Path(next(line.split("folder:")[1].strip() for line in capsys.readouterr().out.splitlines()
                       if "folder:" in line))  # fmt: skip
    # the first row "ran" with flip TTA off (its config, as the paper, evaluates with it on)
    (folder / "release").mkdir(parents=True)
    (folder / "release" / "model.safetensors").write_bytes(b"")
    results = [
        {"split": d, "AP": 10.0 + i, "R@1": 20.0 + i, "gallery_variant": "official", "flip_tta": False}
        for i, d in enumerate(("drone->satellite", "satellite->drone"))
    ]
    (folder / "results.json").write_text(json.dumps(results))
    assert main(["reproduce", "table6", "--rows", "1,2", "--collect", "--out", str(out)]) == 0
    table = (out / "table.md").read_text()
    lines = {line.split("|")[1].strip(): line for line in table.splitlines() if line.startswith("| ")}
    assert "flip TTA off, paper on" in lines["Bi-InfoNCE"] and "21.00 / 85.21 (-64.21)" in lines["Bi-InfoNCE"]
    assert "missing (waiting on data)" in lines["tau = 0.03"]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["table9"], "unknown table 'table9'"),
        (["table6", "--rows", "9"], "--rows: '9' matches no row of table 6"),
        (["table6", "--data-root", "u1652=/x"], "unknown dataset 'u1652'"),
        (["all", "--rows", "1"], "--rows chooses rows of one table"),
    ],
)
def test_wrong_arguments_are_one_line_errors_naming_them(arguments, message, capsys):
    assert main(["reproduce", *arguments, "--dry-run"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("cvd reproduce: error: ") and message in error and "\n" not in error


@pytest.mark.slow
def test_synthetic_table4_runs_every_row_and_each_cell_is_its_rows_result(tmp_path, worlds):
    out = tmp_path / "t4"
    assert main(["reproduce", "table4", "--synthetic", "--out", str(out), *worlds]) == 0
    steps = plan_steps(out)
    assert len(steps) == 10 and all(step["state"] == "done" for step in steps)
    folders = {step["rows"][0].split(":", 1)[1]: Path(step["folder"]) for step in steps}
    rows = {row.key: row for row in all_rows(CONFIGS)[4]}
    cells = read_csv(out / "table.csv")
    assert len(cells) == 10 * 4
    for key, folder in folders.items():
        results = {r["split"]: r for r in json.loads((folder / "results.json").read_text())}
        meta = leaf_meta(rows[key].config.path)
        mine = [c for c in cells if c["runs"] == str(folder)]
        assert len(mine) == 4 and all(c["row"] == meta["row"] for c in mine)
        for cell in mine:
            assert float(cell["ours"]) == pytest.approx(results[cell["direction"]][cell["metric"]], abs=1e-4)
            assert float(cell["paper"]) == meta["paper"][cell["direction"]][cell["metric"]]


def test_a_key_added_to_the_toolkit_at_its_default_keeps_the_rows_folder(tmp_path, monkeypatch):
    import cvd.config
    from cvd.config import load_config, packaged_config_path, read_yaml
    from cvd.reproduce.plan import config_digest

    config = load_config(CONFIGS / "university1652" / "lpn.yaml")
    before = config_digest(config)
    defaults = read_yaml(packaged_config_path())
    defaults["train"]["new_knob"] = 3  # what a later version of the toolkit might add
    newer = tmp_path / "default.yaml"
    newer.write_text(yaml.safe_dump(defaults))
    monkeypatch.setattr(cvd.config, "packaged_config_path", lambda name="default.yaml": newer)
    config["train"]["new_knob"] = 3
    assert config_digest(config) == before
    config["train"]["new_knob"] = 4  # set away from its default: another config, another folder
    assert config_digest(config) != before
    config["train"]["new_knob"] = 3
    config["optim"]["lr"] = config["optim"]["lr"] * 2
    assert config_digest(config) != before
