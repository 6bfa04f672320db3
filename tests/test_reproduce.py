"""Reproduce: the published tables as transcribed, the cell runner (runs, skips finished cells,
reports failed ones without stopping), and the report (ours beside the paper, mean ± std)."""

from __future__ import annotations

import csv
import io
import shutil
import statistics
from pathlib import Path

import numpy as np
import pytest

from lra_wavelet import configlib, presets
from lra_wavelet.reproduce import report, runner, tables
from tests.conftest import MICRO_OVERRIDES, REPO, run_cli

# Averages as printed in REFERENCES.md §1 (WavSpA's LRA table, recomputed from the rows there);
# the transcribed per-task numbers must reproduce them.
PRINTED_AVERAGES = {
    "transformer": 54.39, "transformer_wavspa_ada": 70.59, "transformer_wavspa_ortho": 65.90,
    "transformer_wavspa_lift": 59.85, "longformer": 53.46, "longformer_wavspa_ada": 63.58,
    "longformer_wavspa_ortho": 65.44, "longformer_wavspa_lift": 57.48, "linformer": 49.36,
    "linformer_wavspa_ada": 50.72, "linformer_wavspa_ortho": 52.01, "linformer_wavspa_lift": 52.12,
    "linear": 50.67, "linear_wavspa_ada": 64.32, "linear_wavspa_ortho": 63.33, "linear_wavspa_lift": 56.93,
    "performer": 51.41, "performer_wavspa_ada": 65.47, "performer_wavspa_ortho": 60.69,
    "performer_wavspa_lift": 56.95,
}

# A task config whose runs fail at start (the task does not exist), for the non-fatal path.
BROKEN_CONFIG = '''
from pathlib import Path
from lra_wavelet import configlib

def get_config(arg=None):
  config = configlib.load_config_file(f"{Path(__file__).with_name('listops.py')}:{arg or ''}")
  config.task = "no_such_task"
  return config
'''

MINI = tables.Table(
    name="mini", title="Mini table", source="test", tasks=("listops", "broken", "absent"),
    rows=(tables.Row("transformer", "Transformer", {"listops": 36.37, "broken": 50.0}),
          tables.Row("linear", "Linear")))


def test_wavspa_table_transcription_matches_the_printed_averages():
  table = tables.get("wavspa_lra")
  assert [r.preset for r in table.rows] == list(PRINTED_AVERAGES)
  for preset, printed in PRINTED_AVERAGES.items():
    assert table.paper_average(preset) == pytest.approx(printed, abs=0.006), preset
  assert table.paper("transformer_wavspa_ada", "listops") == 55.40
  assert table.paper("performer_wavspa_lift", "pathfinder") == 76.20


def test_every_table_cell_names_a_preset_and_baselines_restate_wavspa():
  for table in tables.TABLES.values():
    for row in table.rows:
      assert row.preset in presets.PRESETS, (table.name, row.preset)
      assert set(row.paper) <= set(table.tasks)
  lra, wavspa = tables.get("lra"), tables.get("wavspa_lra")
  for row in lra.rows:
    assert row.paper == wavspa.row(row.preset).paper
  # Tables without published numbers have an empty paper column, never invented numbers.
  for name in ("mra_lra", "wersa_lra", "lego"):
    assert all(not row.paper for row in tables.get(name).rows)
  with pytest.raises(configlib.ConfigError, match="valid tables: wavspa_lra"):
    tables.get("wavspa")
  # The names the issues use are aliases of the tables.
  assert tables.get("lra_baselines") is lra and tables.get("wersa") is tables.get("wersa_lra")
  # The CLI's help lists exactly the tables and aliases there are.
  from lra_wavelet import main  # pylint: disable=import-outside-toplevel
  listed = {n.strip() for part in main._TABLE_NAMES.split(",") for n in part.split("=")}  # pylint: disable=protected-access
  assert listed == set(tables.TABLES) | set(tables.ALIASES)


def test_error_summary_picks_the_line_that_says_what_went_wrong():
  log = "step 1\r step 2\nTraceback (most recent call last):\n  File x\nValueError: unknown mixer 'x'\n"
  assert runner.error_summary(log, 1) == "ValueError: unknown mixer 'x'"
  assert runner.error_summary("lra-wavelet: error: ListOps data not found\n", 2) == "ListOps data not found"
  assert runner.error_summary("killed\n", -9) == "the train process exited with code -9; last output: killed"


def test_plan_fingerprints_the_config_and_caps_tiny_steps(tmp_path, monkeypatch):
  table = tables.get("lra")

  def listops_transformer():
    (cell,) = [c for c in runner.plan(table, scale="tiny", seeds=[0], root=tmp_path)
               if c.task == "listops" and c.preset == "transformer"]
    return cell

  own_steps = configlib.load_config_file(
      str(REPO / "configs" / "listops.py") + ":model=transformer,scale=tiny").num_train_steps
  monkeypatch.setattr(runner, "TINY_REPRODUCE_STEPS", own_steps - 1)  # the cap binds
  assert dict(listops_transformer().overrides) == {"seed": "0", "num_train_steps": str(own_steps - 1)}
  monkeypatch.setattr(runner, "TINY_REPRODUCE_STEPS", own_steps + 1)  # the config's own count is lower
  a = listops_transformer()
  assert dict(a.overrides) == {"seed": "0", "num_train_steps": str(own_steps)}
  assert a.workdir.startswith(str(tmp_path / "tiny" / "listops" / "transformer" / "seed0-"))

  def workdir(**overrides):
    cells = runner.plan(table, scale="tiny", seeds=[0], root=tmp_path, overrides=overrides)
    return next(c.workdir for c in cells if c.task == "listops" and c.preset == "transformer")

  assert workdir() == a.workdir
  assert workdir(cache_dir="/elsewhere") == a.workdir  # where data is cached changes no result
  assert workdir(learning_rate="0.01") != a.workdir
  assert workdir(num_train_steps="1500") != a.workdir


def test_unknown_override_fails_before_any_cell(tmp_path):
  with pytest.raises(configlib.ConfigError, match="unknown config field 'num_train_step'"):
    runner.run(tables.get("lra"), scale="tiny", tasks_to_run=["listops"], root=tmp_path,
               overrides={"num_train_step": "5"}, log=lambda _: None)
  with pytest.raises(configlib.ConfigError, match="has no task"):
    runner.run(tables.get("lra"), scale="tiny", tasks_to_run=["lisops"], root=tmp_path, log=lambda _: None)


def _fake(task, preset, seed, accuracy=None, error="", positions=None):
  if accuracy is None:
    return runner.CellResult(task, preset, seed, "failed", f"/w/{seed}", error=error)
  results = {"test_accuracy": accuracy, "val_accuracy": accuracy - 0.01, "test_majority_rate": 0.2,
             "train_seconds": 10.0 + seed, "num_params": 1234, "steps": 50,
             "machine": {"host": "h", "cpu": "c", "cpu_count": "2", "platform": "cpu", "device_kind": "cpu",
                         "device_count": "1", "python": "3"}}
  if positions:
    results["test_accuracy_by_position"] = positions
  return runner.CellResult(task, preset, seed, "done", f"/w/{seed}", results, wall_seconds=20.0)


def test_summary_is_mean_and_sample_std_over_finished_seeds():
  accs = [0.41, 0.44, 0.39]
  results = [_fake("listops", "transformer", s, a, positions=[a, a / 2]) for s, a in enumerate(accs)]
  results.append(_fake("listops", "transformer", 3, error="ValueError: boom"))
  (s,) = report.summarize(MINI, results)
  assert s.status == "partial" and s.seeds == [0, 1, 2] and s.errors == ["ValueError: boom"]
  assert s.mean == pytest.approx(100 * np.mean(accs))
  assert s.std == pytest.approx(100 * np.std(accs, ddof=1))
  assert s.diff == pytest.approx(100 * np.mean(accs) - 36.37)
  assert s.accuracy_by_position == pytest.approx([100 * np.mean(accs), 50 * np.mean(accs)])
  text = report.markdown(MINI, "tiny", [s], results, command="cmd", overrides={})
  assert f"| {100 * np.mean(accs):.2f} ± {100 * statistics.stdev(accs):.2f} | 36.37 |" in text


@pytest.fixture(scope="module")
def configs_dir(tmp_path_factory):
  folder = tmp_path_factory.mktemp("configs")
  shutil.copy(REPO / "configs" / "listops.py", folder / "listops.py")
  (folder / "broken.py").write_text(BROKEN_CONFIG)
  return folder


def test_runner_runs_skips_and_reports(tmp_path, configs_dir, data_cache):
  overrides = {**{k: str(v) for k, v in MICRO_OVERRIDES.items()}, "cache_dir": str(data_cache),
               "num_train_steps": "6", "log_every": "3", "eval_every": "6", "checkpoint_every": "6"}
  kwargs = dict(scale="tiny", seeds=[0], root=tmp_path / "runs", overrides=overrides, configs_dir=configs_dir,
                log=lambda _: None)
  everything = runner.run(MINI, tasks_to_run=["listops", "broken"], presets=["transformer"], **kwargs)
  assert [(r.task, r.preset) for r in everything if r.status == "not run"] == [
      ("listops", "linear"), ("broken", "linear"), ("absent", "transformer"), ("absent", "linear")]
  first = {r.task: r for r in everything if r.preset == "transformer"}
  assert first["listops"].status == "done", first["listops"].error
  assert 0.0 <= first["listops"].results["test_accuracy"] <= 1.0
  assert first["listops"].results["steps"] == 6
  assert first["broken"].status == "failed"
  assert "unknown task 'no_such_task'" in first["broken"].error
  assert (Path(first["broken"].workdir) / "error.txt").exists()
  assert first["absent"].status == "not run" and "no config file" in first["absent"].error

  # Same command again: the finished cell is reused (no new training), the failed one retried.
  second = {r.task: r for r in runner.run(MINI, tasks_to_run=["listops", "absent"], presets=["transformer"], **kwargs)
            if r.preset == "transformer"}
  assert second["listops"].status == "cached"
  assert second["listops"].results == first["listops"].results
  assert (Path(first["listops"].workdir) / "train.log").read_text().count("\n$ ") == 1
  assert second["absent"].status == "failed"

  paths = report.write(MINI, "tiny", list(second.values()), tmp_path / "results", command="lra-wavelet reproduce x")
  names = sorted(p.name for p in paths)
  assert names == ["mini_tiny.csv", "mini_tiny.md", "mini_tiny_accuracy.png", "mini_tiny_time.png"]
  ours = 100 * first["listops"].results["test_accuracy"]
  md = (tmp_path / "results" / "mini_tiny.md").read_text()
  assert f"| Transformer | {ours:.2f} | 36.37 |" in md
  assert "| Linear |" not in md  # rows without any cell in the results are left out
  assert f"{ours - 36.37:+.2f}" in md
  assert "no config file" in md and "lra-wavelet reproduce x" in md and "git commit" in md
  rows = {r["task"]: r for r in csv.DictReader(io.StringIO((tmp_path / "results" / "mini_tiny.csv").read_text()))}
  assert rows["listops"]["status"] == "ok" and float(rows["listops"]["paper"]) == 36.37
  assert float(rows["listops"]["accuracy_mean"]) == pytest.approx(ours, abs=1e-3)
  assert rows["absent"]["status"] == "failed"


def test_cli_unknown_table_is_one_clear_error():
  result = run_cli(["reproduce", "--table=wavspa"], check=False)
  assert result.returncode == 2
  assert "unknown table 'wavspa'; valid tables: wavspa_lra, lra, mra_lra, wersa_lra, lego" in result.stderr


def test_cells_outside_the_request_drop_errors_of_overrides_meant_for_other_tasks(tmp_path):
  # reproduce --tasks=pathfinder --overrides=data.difficulty=easy: ListOps cannot take the
  # override, but it was never asked to run, so its cell reads "not run" without that error.
  plans = runner.plan(tables.get("wavspa_lra"), scale="tiny", seeds=[0], root=tmp_path,
                      overrides={"data.difficulty": "easy"})
  listops = next(c for c in plans if c.task == "listops" and c.preset == "transformer")
  assert isinstance(listops, runner.CellResult) and "data.difficulty" in listops.error
  cleared = runner._not_requested(listops, "tiny", REPO / "configs")
  assert (cleared.status, cleared.error) == ("not run", "")
  absent = runner.CellResult("absent", "transformer", 0, "failed", error="no config file x")
  kept = runner._not_requested(absent, "tiny", REPO / "configs")
  assert (kept.status, kept.error) == ("not run", "no config file x")
