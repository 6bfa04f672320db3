"""The ``lra-wavelet`` binary: train | eval | data | reproduce | sweep | bench.

    lra-wavelet train --config=configs/listops.py:model=transformer,scale=tiny --workdir=W
    lra-wavelet eval  --config=... --workdir=W [--split=test]
    lra-wavelet data  --config=configs/listops.py:scale=tiny   (or --task=listops)
    lra-wavelet reproduce --table=wavspa_lra --scale=tiny [--tasks=listops] [--seeds=0,1,2]
    lra-wavelet sweep --sweep=configs/listops.py:smoke [--ray_address=auto]

``--config.<field>=value`` overrides any field; the config is locked, so an unknown field,
argument or preset fails at once with the list of valid ones. This is the only module that
defines flags.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from absl import app, flags, logging
from ml_collections import config_flags

from lra_wavelet import allocator

COMMANDS = ("train", "eval", "data", "reproduce", "sweep", "bench")
REPO_CONFIGS = Path(__file__).resolve().parent.parent / "configs"

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file and argument: path.py:key=value,...",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run folder (checkpoints, metrics, results.json); "
                               "default workdirs/<task>_<preset>_<scale>")
_TASK = flags.DEFINE_string("task", None, "data: task name (uses configs/<task>.py) when --config is not given")
_SPLIT = flags.DEFINE_enum("split", "test", ["train", "validation", "test"], "eval: split to evaluate")
_CHECKPOINT = flags.DEFINE_enum("checkpoint", "best", ["best", "latest"], "eval: which checkpoint")
_MIXERS = flags.DEFINE_list("mixers", None, "bench: mixer specs name[:key=value;key=value] (default: all)")
_LENGTHS = flags.DEFINE_list("lengths", ["1024", "2048", "4096", "8192", "16384"], "bench: sequence lengths")
_RESULTS_DIR = flags.DEFINE_string("results_dir", "results", "bench/reproduce: output folder")
# Kept in step with reproduce.tables (TABLES and ALIASES), which is imported only when reproduce runs.
_TABLE_NAMES = "wavspa_lra, lra = lra_baselines, mra_lra, wersa_lra = wersa, lego"
_TABLE = flags.DEFINE_string("table", None, f"reproduce: table name ({_TABLE_NAMES})")
_SCALE = flags.DEFINE_enum("scale", "tiny", ["tiny", "small", "paper"], "reproduce: config scale of every cell")
_TASKS = flags.DEFINE_list("tasks", None, "reproduce: tasks to run (default: all of the table's)")
_PRESETS = flags.DEFINE_list("presets", None, "reproduce: model presets (rows) to include (default: all)")
_SEEDS = flags.DEFINE_list("seeds", ["0"], "reproduce: training seeds of every cell (mean ± std over them)")
_OVERRIDES = flags.DEFINE_list("overrides", [], "reproduce/sweep: field=value overrides for every run")
_RAY_ADDRESS = flags.DEFINE_string("ray_address", "", "reproduce: run cells on Ray ('local' = start one here; "
                                   "'auto' or host:port = a cluster); sweep: '' = local Ray, else a cluster")
_SWEEP = flags.DEFINE_string("sweep", None, "sweep: configs/<task>.py:<name> (a sweep of that file's get_sweeps())")
_MAX_CONCURRENT = flags.DEFINE_integer("max_concurrent_trials", 0, "sweep: trials at once (0 = as resources allow)")
_CPUS_PER_TRIAL = flags.DEFINE_float("cpus_per_trial", 1, "sweep/reproduce on Ray: CPU cores per run")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "multi-process: host:port of process 0")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "multi-process: number of processes")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "multi-process: index of this process")
_MULTIHOST = flags.DEFINE_bool("multihost", False, "multi-process: let JAX detect the cluster (TPU pod, SLURM, MPI)")
_BENCH_BATCH = flags.DEFINE_integer("bench_batch", 1, "bench: batch size")
_BENCH_HEADS = flags.DEFINE_integer("bench_heads", 8, "bench: attention heads")
_BENCH_HEAD_DIM = flags.DEFINE_integer("bench_head_dim", 64, "bench: head dimension")
_BENCH_DTYPE = flags.DEFINE_enum("bench_dtype", "float32", ["float32", "bfloat16"], "bench: dtype")
_BENCH_REPEATS = flags.DEFINE_integer("bench_repeats", 5, "bench: timed repetitions per case")
_TRAIN = flags.DEFINE_bool("train", False, "bench: whole training steps per --tasks x --presets x "
                           "--bench_scales (results/bench_train.md) instead of single mixers")
_BENCH_PROFILE_STEPS = flags.DEFINE_integer("bench_profile_steps", 0, "bench --train: trace this many more "
                                            "steps per case and tabulate XLA op times by kind (0 = off)")
_BENCH_SCALES = flags.DEFINE_list("bench_scales", ["tiny", "small", "paper"], "bench --train: config scales")


class UsageError(Exception):
  pass


def _fail(message: str) -> None:
  print(f"lra-wavelet: error: {message}", file=sys.stderr)
  sys.exit(2)


def _default_workdir(config) -> Path:
  return Path("workdirs") / f"{config.task}_{config.model_preset}_{config.scale}"


def _config_for_task():
  if _CONFIG.value is not None:
    return _CONFIG.value
  if _TASK.value:
    from lra_wavelet import configlib  # pylint: disable=import-outside-toplevel
    return configlib.load_config_file(f"{REPO_CONFIGS / (_TASK.value + '.py')}")
  raise UsageError("give --config=configs/<task>.py:model=...,scale=... (or --task=<task> for `data`)")


def cmd_train() -> None:
  from lra_wavelet.train import loop  # pylint: disable=import-outside-toplevel
  config = _config_for_task()
  workdir = Path(_WORKDIR.value) if _WORKDIR.value else _default_workdir(config)
  results = loop.train_and_evaluate(config, workdir)
  print(f"\n{config.task} / {config.model_preset} ({config.scale}): "
        f"test_accuracy={results['test_accuracy']:.4f} "
        f"(majority-class rate of the test set {results['test_majority_rate']:.4f}), "
        f"val_accuracy={results['val_accuracy']:.4f}, steps={results['steps']}, "
        f"{results['steps_per_second']:.1f} steps/s, {results['num_params']} parameters")
  print(f"results: {workdir / 'results.json'}")


def cmd_eval() -> None:
  from lra_wavelet.train import loop  # pylint: disable=import-outside-toplevel
  config = _config_for_task()
  workdir = Path(_WORKDIR.value) if _WORKDIR.value else _default_workdir(config)
  result = loop.evaluate_checkpoint(config, workdir, split=_SPLIT.value, which=_CHECKPOINT.value)
  print(json.dumps(result, indent=2))


def cmd_data() -> None:
  from lra_wavelet import tasks  # pylint: disable=import-outside-toplevel
  config = _config_for_task()
  task = tasks.get(config.task)
  spec = task.spec(config)
  print(f"task {spec.name}: vocab {spec.vocab_size}, max_len {spec.max_len}, "
        f"{spec.num_classes} classes, kind {spec.kind}")
  for split in tasks.SPLITS:
    stats = tasks.statistics(task.load(split, config), spec)
    print(f"  {split:10s} {json.dumps(stats)}")


def cmd_bench() -> None:
  if _TRAIN.value:
    from lra_wavelet.bench import train  # pylint: disable=import-outside-toplevel
    path = train.run_train_bench(_TASKS.value, _PRESETS.value, _BENCH_SCALES.value, dtype=_BENCH_DTYPE.value,
                                 repeats=_BENCH_REPEATS.value, overrides=_OVERRIDES.value,
                                 results_dir=_RESULTS_DIR.value, profile_steps=_BENCH_PROFILE_STEPS.value)
    print(f"wrote {path}")
    return
  from lra_wavelet.bench import mixers  # pylint: disable=import-outside-toplevel
  specs = _MIXERS.value or list(mixers.DEFAULT_MIXERS)
  path = mixers.run_mixer_bench(specs, lengths=[int(n) for n in _LENGTHS.value], batch=_BENCH_BATCH.value,
                                num_heads=_BENCH_HEADS.value, head_dim=_BENCH_HEAD_DIM.value,
                                dtype=_BENCH_DTYPE.value, repeats=_BENCH_REPEATS.value,
                                results_dir=_RESULTS_DIR.value)
  print(f"wrote {path}")


def cmd_reproduce() -> None:
  from lra_wavelet import reproduce  # pylint: disable=import-outside-toplevel
  if not _TABLE.value:
    raise UsageError(f"give --table=<name> ({_TABLE_NAMES})")
  paths = reproduce.reproduce(_TABLE.value, scale=_SCALE.value, tasks=_TASKS.value, presets=_PRESETS.value,
                              seeds=[int(s) for s in _SEEDS.value], root=_WORKDIR.value or "workdirs/reproduce",
                              results_dir=_RESULTS_DIR.value, overrides=_OVERRIDES.value,
                              ray_address=_RAY_ADDRESS.value, cpus_per_cell=_CPUS_PER_TRIAL.value,
                              command=" ".join(["lra-wavelet", *sys.argv[1:]]))
  print("wrote " + ", ".join(map(str, paths)))


def cmd_sweep() -> None:
  from lra_wavelet.reproduce.runner import parse_overrides  # pylint: disable=import-outside-toplevel
  from lra_wavelet.sweep import spec, tuner  # pylint: disable=import-outside-toplevel
  if not _SWEEP.value:
    raise UsageError("give --sweep=configs/<task>.py:<name>")
  sweep = spec.load(_SWEEP.value)
  workdir = Path(_WORKDIR.value or f"workdirs/sweeps/{Path(sweep.config_file).stem}_{sweep.name}")
  rows, best = tuner.run_sweep(sweep, workdir, overrides=parse_overrides(_OVERRIDES.value),
                               ray_address=_RAY_ADDRESS.value, max_concurrent=_MAX_CONCURRENT.value,
                               cpus_per_trial=_CPUS_PER_TRIAL.value,
                               command=" ".join(["lra-wavelet", *sys.argv[1:]]))
  print(tuner.describe(rows, best, workdir))


class _QuietLibraries:
  """absl log filter: drop INFO chatter from orbax (every save/restore logs a dozen lines)."""

  def filter(self, record) -> bool:
    return record.levelno >= 30 or "/orbax/" not in record.pathname


def main(argv: list[str]) -> None:
  logging.get_absl_handler().addFilter(_QuietLibraries())
  if len(argv) != 2 or argv[1] not in COMMANDS:
    _fail(f"usage: lra-wavelet {{{'|'.join(COMMANDS)}}} --config=configs/<task>.py:model=...,scale=... "
          f"[--config.<field>=value] [--workdir=DIR]; got {' '.join(argv[1:]) or 'no command'}")
  from lra_wavelet import configlib, tasks  # pylint: disable=import-outside-toplevel
  from lra_wavelet.train import distributed  # pylint: disable=import-outside-toplevel
  from lra_wavelet.train.loop import NonFiniteLossError  # pylint: disable=import-outside-toplevel
  try:
    if argv[1] in ("train", "eval", "bench"):  # before anything touches a device
      distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value, _MULTIHOST.value)
    {"train": cmd_train, "eval": cmd_eval, "data": cmd_data, "reproduce": cmd_reproduce, "sweep": cmd_sweep,
     "bench": cmd_bench}[argv[1]]()
  except (UsageError, configlib.ConfigError, tasks.MissingDataError, tasks.DataFormatError,
          NonFiniteLossError, FileNotFoundError, distributed.DistributedSetupError) as e:
    _fail(str(e))


def _precheck_config(argv: list[str]) -> None:
  """Fail early, with the valid choices, on a bad config argument or an unknown override.

  absl would otherwise report an unknown ``--config.<field>`` without saying what is valid.
  """
  from lra_wavelet import configlib  # pylint: disable=import-outside-toplevel
  spec = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
  overrides = [m.group(1) for a in argv if (m := re.match(r"--config\.([\w.]+)(=|$)", a))]
  if spec is None:
    if overrides:
      _fail("--config.<field> overrides need --config=configs/<task>.py:...")
    return
  try:
    configlib.check_overrides(configlib.load_config_file(spec), overrides)
  except configlib.ConfigError as e:
    _fail(str(e))


def run() -> None:
  allocator.reuse_freed_memory()  # before JAX starts its threads
  _precheck_config(sys.argv)
  app.run(main)


if __name__ == "__main__":
  run()
