"""The binary's `data` command and its usage errors."""

from __future__ import annotations

import json

from tests.conftest import REPO, MICRO_OVERRIDES, run_cli


def test_data_command_prints_split_statistics(data_cache):
  overrides = [f"--config.{k}={v}" for k, v in MICRO_OVERRIDES.items() if k.startswith(("data.", "max_len"))]
  result = run_cli(["data", f"--config={REPO / 'configs/listops.py'}:scale=tiny",
                    f"--config.cache_dir={data_cache}", *overrides])
  lines = result.stdout.splitlines()
  assert lines[0].startswith("task listops: vocab 16, max_len 32, 10 classes")
  stats = {line.split()[0]: json.loads(line.split(None, 1)[1]) for line in lines[1:]}
  assert [stats[s]["examples"] for s in ("train", "validation", "test")] == [256, 64, 64]
  assert sum(stats["test"]["class_counts"]) == 64
  assert 0 < stats["test"]["majority_rate"] <= 1


def test_unknown_command_shows_usage():
  result = run_cli(["trian"], check=False)
  assert result.returncode == 2 and "usage: lra-wavelet {train|eval|data" in result.stderr


def test_missing_data_dir_is_one_clear_error(tmp_path):
  result = run_cli(["train", f"--config={REPO / 'configs/listops.py'}:scale=tiny",
                    f"--config.data_dir={tmp_path / 'absent'}", f"--workdir={tmp_path / 'w'}"], check=False)
  assert result.returncode == 2
  assert "ListOps data not found" in result.stderr and "lra_release" in result.stderr
  assert "Traceback" not in result.stderr
