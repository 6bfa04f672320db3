"""Sweeps: declarations are checked against the config before anything runs; a 4-trial sweep
on a local Ray instance writes a trial table with every grid point, lists failed trials with
their error without stopping the others, and picks the best finished trial."""

from __future__ import annotations

import csv
import json

import pytest

from lra_wavelet import configlib
from lra_wavelet.sweep import cluster, spec
from tests.conftest import MICRO_OVERRIDES, REPO

LISTOPS = REPO / "configs" / "listops.py"


def test_config_file_sweeps_are_valid():
  for name in ("smoke", "lr_wd", "wavspa_lr"):
    sweep = spec.load(f"{LISTOPS}:{name}")
    assert sweep.config_file == str(LISTOPS)
  assert spec.load(f"{LISTOPS}:smoke").num_trials == 4
  assert spec.load(f"{LISTOPS}:wavspa_lr").num_trials == 15
  assert spec.load(f"{LISTOPS}:lr_wd").num_trials == 8
  with pytest.raises(configlib.ConfigError, match="declared sweeps: lr_wd, smoke, wavspa_lr"):
    spec.load(f"{LISTOPS}:nope")


def test_trial_config_applies_argument_fixed_overrides_then_params():
  sweep = spec.from_dict("s", LISTOPS, dict(
      config="model=transformer,scale=tiny", fixed={"model.dim": 32, "learning_rate": 1.0},
      search={"arg.model": ("grid", ["transformer", "linformer"]), "learning_rate": ("loguniform", 1e-4, 1e-2)}))
  config = spec.trial_config(sweep, {"arg.model": "linformer", "learning_rate": 0.003}, {"model.num_layers": "3"})
  assert config.model_preset == "linformer" and config.model.mixer == "linformer"
  assert config.model.dim == 32 and config.model.num_layers == 3 and config.learning_rate == 0.003
  assert sweep.num_trials == 2
  assert spec.grid_points(sweep) == [{"arg.model": "transformer"}, {"arg.model": "linformer"}]
  command = spec.train_command(sweep, {"arg.model": "linformer", "learning_rate": 0.003})
  assert command.startswith(f"lra-wavelet train --config={LISTOPS}:model=linformer,scale=tiny ")
  assert command.endswith("--config.model.dim=32 --config.learning_rate=0.003")


@pytest.mark.parametrize("declaration, message", [
    (dict(search={"learning_rat": ("grid", [1e-3])}), "unknown config field 'learning_rat'; valid fields"),
    (dict(search={"learning_rate": ("normal", 0, 1)}), "kind one of grid, choice, uniform, loguniform"),
    (dict(search={"learning_rate": ("loguniform", 0, 1)}), "loguniform needs low > 0"),
    (dict(search={"learning_rate": ("uniform", 2, 1)}), "low < high"),
    (dict(search={"arg.model": ("grid", ["transformr"])}), "unknown model preset 'transformr'"),
    (dict(search={}), "empty search space"),
    (dict(search={"learning_rate": ("grid", [1e-3])}, metric="acc"), "unknown metric 'acc'"),
    (dict(search={"learning_rate": ("grid", [1e-3])}, trials=3), "unknown key"),
])
def test_bad_declarations_fail_before_running(declaration, message):
  with pytest.raises(configlib.ConfigError, match=message):
    spec.from_dict("bad", LISTOPS, dict(config="model=transformer,scale=tiny", **declaration))


def test_resources_ask_for_an_accelerator_when_the_cluster_has_one():
  assert cluster.choose_resources({"CPU": 16, "GPU": 8}, [0]).tune() == {"cpu": 1, "gpu": 1}
  tpu = cluster.choose_resources({"CPU": 96, "TPU": 8}, [4, 4])
  assert tpu.tune() == {"cpu": 1, "TPU": 4}  # every chip of one host
  assert tpu.remote_options() == {"num_cpus": 1, "resources": {"TPU": 4}}
  assert cluster.choose_resources({"CPU": 2}, [0], cpus=2).remote_options() == {"num_cpus": 2}


def test_four_trial_sweep_on_local_ray(tmp_path, data_cache):
  pytest.importorskip("ray")
  import ray
  from lra_wavelet.sweep import tuner
  fixed = {**MICRO_OVERRIDES, "num_train_steps": 4, "log_every": 2, "eval_every": 4, "checkpoint_every": 4}
  # Two of the four grid points use a schedule that does not exist: those trials fail at start.
  sweep = spec.from_dict("t", LISTOPS, dict(
      config="model=transformer,scale=tiny", fixed=fixed,
      search={"learning_rate": ("grid", [1e-3, 3e-3]), "schedule": ("grid", ["cosine", "no_such_schedule"])}))
  try:
    rows, best = tuner.run_sweep(sweep, tmp_path / "sweep", overrides={"cache_dir": str(data_cache)},
                                 command="test", log=lambda _: None,
                                 ray_init_kwargs=dict(num_cpus=2, log_to_driver=False))
    assert len(rows) == 4
  finally:
    ray.shutdown()

  with open(tmp_path / "sweep" / "trials.csv") as f:
    table = list(csv.DictReader(f))
  assert len(table) == 4
  points = sorted((float(r["learning_rate"]), r["schedule"]) for r in table)
  assert points == sorted((p["learning_rate"], p["schedule"]) for p in spec.grid_points(sweep))
  ok = [r for r in table if r["status"] == "ok"]
  failed = [r for r in table if r["status"] == "failed"]
  assert sorted(r["schedule"] for r in ok) == ["cosine", "cosine"]
  assert len(failed) == 2 and all("unknown schedule 'no_such_schedule'" in r["error"] for r in failed)
  for r in ok:
    assert 0.0 <= float(r["val_accuracy"]) <= 1.0 and int(r["steps"]) == 4
    assert (tmp_path / "sweep" / r["trial"] / "run" / "results.json").exists()
  # Finished trials first, best first; best.json is the finished trial with the highest val_accuracy.
  assert [r["status"] for r in table] == ["ok", "ok", "failed", "failed"]
  top = max(ok, key=lambda r: float(r["val_accuracy"]))
  stored = json.loads((tmp_path / "sweep" / "best.json").read_text())
  assert stored["trial"] == best["trial"] == top["trial"] == table[0]["trial"]
  assert stored["value"] == pytest.approx(float(top["val_accuracy"]))
  assert stored["command"].endswith(f"--config.learning_rate={stored['params']['learning_rate']} "
                                    "--config.schedule=cosine")
  md = (tmp_path / "sweep" / "trials.md").read_text()
  assert "4 (2 finished, 2 failed)" in md and md.count("| failed |") == 2
