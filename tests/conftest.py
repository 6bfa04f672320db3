"""Shared fixtures: a micro ListOps config that trains in seconds, and a subprocess runner for
the CLI (multi-device and kill -9 tests need separate processes)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# Overrides that shrink configs/listops.py:scale=tiny to a seconds-long run.
MICRO_OVERRIDES = {
    "data.num_train": 256, "data.num_val": 64, "data.num_test": 64,
    "data.min_length": 4, "data.max_length": 30, "data.max_depth": 3,
    "max_len": 32, "model.num_layers": 1, "model.dim": 16, "model.qkv_dim": 16,
    "model.num_heads": 2, "model.mlp_dim": 32, "batch_size": 8, "num_train_steps": 40,
    "warmup_steps": 5, "log_every": 5, "eval_every": 10, "checkpoint_every": 10,
    "prefetch": 2,
}


def micro_config(cache_dir: Path, **overrides):
  """The micro ListOps config as a live ConfigDict (for in-process tests)."""
  from lra_wavelet import configlib
  config = configlib.load_config_file(f"{REPO / 'configs/listops.py'}:model=transformer,scale=tiny")
  values = {**MICRO_OVERRIDES, "cache_dir": str(cache_dir), **overrides}
  with config.unlocked():
    for key, value in values.items():
      node = config
      *parents, leaf = key.split(".")
      for p in parents:
        node = node[p]
      node[leaf] = value
  return config


def cli_args(cache_dir: Path, workdir: Path, **overrides) -> list[str]:
  values = {**MICRO_OVERRIDES, "cache_dir": str(cache_dir), **overrides}
  return ["train", f"--config={REPO / 'configs/listops.py'}:model=transformer,scale=tiny",
          f"--workdir={workdir}"] + [f"--config.{k}={v}" for k, v in values.items()]


def run_cli(args: list[str], *, devices: int = 1, check: bool = True, **popen) -> subprocess.CompletedProcess:
  env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
             JAX_PLATFORMS="cpu")
  result = subprocess.run([sys.executable, "-m", "lra_wavelet.main", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600, **popen)
  if check and result.returncode != 0:
    raise AssertionError(f"lra-wavelet {' '.join(args)} failed:\n{result.stderr[-4000:]}")
  return result


@pytest.fixture(scope="session")
def data_cache(tmp_path_factory) -> Path:
  """One generated-data cache shared by the whole session (generation runs once)."""
  return tmp_path_factory.mktemp("cache")
