"""Train the cells of a published table and collect their results, resumably.

A cell is one (task, model preset, seed) run of ``configs/<task>.py`` at a scale. Each cell
runs as its own ``lra-wavelet train`` process (so a crash, an out-of-memory kill or a missing
mixer fails that cell only, and the exact command of every cell is in its log), in a workdir
named after the cell and a fingerprint of its full config:

    <root>/<scale>/<task>/<preset>/seed<k>-<fingerprint>/   config.json, metrics.jsonl,
        checkpoints/, results.json (written last), train.log, cell.json, error.txt (on failure)

Re-running the same command skips cells whose workdir holds ``results.json``, resumes a
partially trained cell from its checkpoint (the trainer does that), and retries failed cells.
A changed config (another scale, an override, an edited config file) gets a new workdir, so a
finished result always belongs to the config it claims. Cells run one after another on this
machine, or as Ray tasks (one accelerator each) with ``ray_address``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import ml_collections

from lra_wavelet import configlib, tasks
from lra_wavelet.configlib import parse_like  # the config argument's typed conversion
from lra_wavelet.reproduce import tables

REPO_CONFIGS = Path(__file__).resolve().parent.parent.parent / "configs"
# Steps of a tiny-scale cell unless num_train_steps is overridden: a whole tiny table (up to
# 30 cells) must finish in about an hour on two CPU cores; the tiny configs' own step counts
# are meant for single runs.
TINY_REPRODUCE_STEPS = 500
# Config fields that do not change what a run computes, left out of the fingerprint.
NOT_FINGERPRINTED = ("cache_dir", "log_every", "prefetch")


# ----------------------------------------------------------------------------- configs

def parse_overrides(items: Iterable[str]) -> dict[str, str]:
  """``["num_train_steps=300", "model.dim=32"]`` -> {field: text}; a malformed item is an error."""
  overrides = {}
  for item in items:
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
      raise configlib.ConfigError(f"override {item!r} is not of the form field=value (e.g. num_train_steps=300)")
    overrides[key.strip()] = value.strip()
  return overrides


def apply_overrides(config: ml_collections.ConfigDict, overrides: Mapping[str, Any]) -> ml_collections.ConfigDict:
  """Set dotted fields of a (locked) config; text values are converted to the field's type.

  An unknown field lists the valid ones; a value of the wrong type says which type is expected.
  """
  configlib.check_overrides(config, list(overrides))
  for name, value in overrides.items():
    *parents, leaf = name.split(".")
    node = config
    for part in parents:
      node = node[part]
    current = node[leaf]
    if isinstance(value, str) and not isinstance(current, str):
      try:
        value = parse_like(value, current)
      except ValueError as e:
        raise configlib.ConfigError(f"override {name}={value!r}: {e}") from None
    try:
      node[leaf] = value
    except TypeError as e:
      raise configlib.ConfigError(f"override {name}={value!r}: expected a {type(current).__name__} ({e})") from None
  return config


def config_fingerprint(config: ml_collections.ConfigDict) -> str:
  """Short hash of everything in ``config`` that changes what a run computes."""
  values = json.loads(config.to_json_best_effort())
  for key in NOT_FINGERPRINTED:
    values.pop(key, None)
  return tasks.fingerprint(values)[:10]


# ----------------------------------------------------------------------------- cells

@dataclasses.dataclass(frozen=True)
class CellSpec:
  """Everything needed to run one cell anywhere (plain data: it travels to Ray workers)."""
  task: str
  preset: str
  seed: int
  scale: str
  config_file: str                       # absolute path of configs/<task>.py
  overrides: tuple[tuple[str, str], ...]  # (field, text) on top of the config, seed included
  workdir: str                           # absolute

  @property
  def config_arg(self) -> str:
    return f"{self.config_file}:model={self.preset},scale={self.scale}"

  def command(self, python: str = sys.executable) -> list[str]:
    """The ``lra-wavelet train`` command line of this cell."""
    return [python, "-m", "lra_wavelet.main", "train", f"--config={self.config_arg}",
            f"--workdir={self.workdir}", *(f"--config.{k}={v}" for k, v in self.overrides)]


@dataclasses.dataclass
class CellResult:
  """What became of one cell. ``results`` is the trainer's results.json content."""
  task: str
  preset: str
  seed: int
  status: str                            # "done" | "cached" (finished earlier) | "failed" | "not run"
  workdir: str = ""
  results: dict[str, Any] | None = None
  error: str = ""
  wall_seconds: float = 0.0              # wall time of all attempts (process start to exit)


def cell_config(config_file: Path, task: str, preset: str, scale: str, seed: int,
                overrides: Mapping[str, str]) -> tuple[ml_collections.ConfigDict, dict[str, str]]:
  """(config, effective overrides) of a cell: the config file's preset at ``scale``, the seed,
  the scale's reproduce budget, then the user's overrides."""
  config = configlib.load_config_file(f"{config_file}:model={preset},scale={scale}")
  effective = {"seed": str(seed)}
  if scale == "tiny" and "num_train_steps" not in overrides:
    effective["num_train_steps"] = str(min(config.num_train_steps, TINY_REPRODUCE_STEPS))
  effective.update(overrides)
  return apply_overrides(config, effective), effective


def plan(table: tables.Table, *, scale: str, seeds: Sequence[int], root: str | Path,
         overrides: Mapping[str, str] | None = None, configs_dir: str | Path = REPO_CONFIGS
         ) -> list[CellSpec | CellResult]:
  """Every cell of ``table`` for ``seeds``: a CellSpec, or a CellResult with status "failed"
  when the cell cannot even be configured (no config file for its task, a preset or override
  the config rejects)."""
  overrides = dict(overrides or {})
  rows = list(table.rows)
  root = Path(root).resolve()
  cells: list[CellSpec | CellResult] = []
  for task in table.tasks:
    config_file = Path(configs_dir).resolve() / f"{task}.py"
    for row in rows:
      for seed in seeds:
        if not config_file.is_file():
          cells.append(CellResult(task, row.preset, seed, "failed",
                                  error=f"no config file {config_file} for task {task!r}"))
          continue
        try:
          config, effective = cell_config(config_file, task, row.preset, scale, seed, overrides)
        except Exception as e:  # pylint: disable=broad-except  (one broken config file fails its cells only)
          cells.append(CellResult(task, row.preset, seed, "failed", error=f"{type(e).__name__}: {e}"))
          continue
        workdir = root / scale / task / row.preset / f"seed{seed}-{config_fingerprint(config)}"
        cells.append(CellSpec(task, row.preset, seed, scale, str(config_file),
                              tuple(effective.items()), str(workdir)))
  return cells


_ERROR_LINE = re.compile(r"^(lra-wavelet: error: .*|[\w.]*(Error|Exception|Interrupt)(: .*)?)$")


def error_summary(log_text: str, returncode: int) -> str:
  """The one line of a failed run's log that says what went wrong (else the exit code)."""
  lines = [l.strip() for l in log_text.replace("\r", "\n").splitlines() if l.strip()]
  for line in reversed(lines):
    if _ERROR_LINE.match(line):
      return line.removeprefix("lra-wavelet: error: ")
  return f"the train process exited with code {returncode}" + (f"; last output: {lines[-1][:200]}" if lines else "")


def _read_json(path: Path) -> dict[str, Any] | None:
  try:
    return json.loads(path.read_text())
  except (OSError, ValueError):
    return None


def lookup_cell(spec: CellSpec) -> CellResult:
  """The cell's state without running it: "cached" if finished, else "not run"."""
  workdir = Path(spec.workdir)
  results = _read_json(workdir / "results.json")
  wall = (_read_json(workdir / "cell.json") or {}).get("wall_seconds", 0.0)
  if results is not None:
    return CellResult(spec.task, spec.preset, spec.seed, "cached", spec.workdir, results, wall_seconds=wall)
  error = f"last attempt failed: {(workdir / 'error.txt').read_text().strip()}" \
      if (workdir / "error.txt").exists() else ""
  return CellResult(spec.task, spec.preset, spec.seed, "not run", spec.workdir, error=error, wall_seconds=wall)


def run_cell(spec: CellSpec) -> CellResult:
  """Run one cell to completion (or reuse its finished result); never raises for a failed run."""
  found = lookup_cell(spec)
  if found.status == "cached":
    return found
  workdir = Path(spec.workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  (workdir / "error.txt").unlink(missing_ok=True)
  command = spec.command()
  start = time.perf_counter()
  with open(workdir / "train.log", "ab") as log:
    log.write(f"\n$ {' '.join(command)}\n".encode())
    log.flush()
    returncode = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"}, check=False).returncode
  wall = found.wall_seconds + time.perf_counter() - start
  (workdir / "cell.json").write_text(json.dumps({"wall_seconds": wall, "command": command}, indent=2) + "\n")
  results = _read_json(workdir / "results.json")
  if returncode == 0 and results is not None:
    return CellResult(spec.task, spec.preset, spec.seed, "done", spec.workdir, results, wall_seconds=wall)
  error = error_summary((workdir / "train.log").read_text(errors="replace"), returncode)
  (workdir / "error.txt").write_text(error + "\n")
  return CellResult(spec.task, spec.preset, spec.seed, "failed", spec.workdir, error=error, wall_seconds=wall)


def _run_local(specs: Sequence[CellSpec], log: Callable[[str], None]) -> Iterator[CellResult]:
  for i, spec in enumerate(specs):
    log(f"[{i + 1}/{len(specs)}] {spec.task}/{spec.preset} seed {spec.seed}: training "
        f"(log: {spec.workdir}/train.log)")
    yield run_cell(spec)


def _run_ray(specs: Sequence[CellSpec], ray_address: str, cpus: float) -> Iterator[CellResult]:
  """Cells as Ray tasks, each holding one accelerator (or one CPU) of the cluster; results
  are yielded as they finish. Workdirs should be on storage every node sees."""
  import ray  # pylint: disable=import-outside-toplevel
  from lra_wavelet.sweep import cluster  # pylint: disable=import-outside-toplevel
  cluster.connect(ray_address)
  remote = ray.remote(run_cell).options(**cluster.trial_resources(cpus).remote_options(), max_retries=0)
  pending = {remote.remote(spec): spec for spec in specs}
  while pending:
    done, _ = ray.wait(list(pending), num_returns=1)
    spec = pending.pop(done[0])
    try:
      yield ray.get(done[0])
    except Exception as e:  # pylint: disable=broad-except  (a lost worker fails its cell only)
      yield CellResult(spec.task, spec.preset, spec.seed, "failed", spec.workdir,
                       error=f"Ray task failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")


def _check_override_names(overrides: Mapping[str, str], config_files: Sequence[Path], scale: str) -> None:
  """An override no requested task's config knows is a typo: fail before any cell runs."""
  configs = [configlib.load_config_file(f"{f}:scale={scale}") for f in config_files if f.is_file()]
  for name in overrides:
    errors = []
    for config in configs:
      try:
        configlib.check_overrides(config, [name])
      except configlib.ConfigError as e:
        errors.append(e)
    if configs and len(errors) == len(configs):
      raise errors[0]


def run(table: tables.Table, *, scale: str, tasks_to_run: Sequence[str] | None = None,
        presets: Sequence[str] | None = None, seeds: Sequence[int] = (0,), root: str | Path,
        overrides: Mapping[str, str] | None = None, ray_address: str = "", cpus_per_cell: float = 1,
        configs_dir: str | Path = REPO_CONFIGS, log: Callable[[str], None] = print) -> list[CellResult]:
  """Run the cells of ``tasks_to_run`` x ``presets`` (default: all of the table's tasks and
  rows) and look up the others, so the report shows every cell of the table with what earlier
  runs left. Returns one CellResult per cell."""
  unknown = sorted(set(tasks_to_run or ()) - set(table.tasks))
  if unknown:
    raise configlib.ConfigError(f"table {table.name!r} has no task(s) {', '.join(unknown)}; "
                                f"its tasks: {', '.join(table.tasks)}")
  wanted = set(tasks_to_run or table.tasks)
  wanted_presets = {table.row(p).preset for p in presets} if presets else {r.preset for r in table.rows}
  _check_override_names(overrides or {}, [Path(configs_dir) / f"{t}.py" for t in sorted(wanted)], scale)
  cells = plan(table, scale=scale, seeds=seeds, root=root, overrides=overrides, configs_dir=configs_dir)

  def requested(cell: CellSpec | CellResult) -> bool:
    return cell.task in wanted and cell.preset in wanted_presets

  to_run = [c for c in cells if isinstance(c, CellSpec) and requested(c) and lookup_cell(c).status != "cached"]
  results: dict[tuple[str, str, int], CellResult] = {}
  for cell in cells:
    key = (cell.task, cell.preset, cell.seed)
    if isinstance(cell, CellResult):  # could not be configured
      results[key] = cell if requested(cell) else _not_requested(cell, scale, configs_dir)
    else:
      results[key] = lookup_cell(cell)
  log(f"{table.name} at scale {scale}: {len(cells)} cells, {len(to_run)} to run, "
      f"{sum(r.status == 'cached' for r in results.values())} finished earlier"
      + (f" (on Ray at {ray_address})" if ray_address else ""))
  finished = _run_ray(to_run, ray_address, cpus_per_cell) if ray_address and to_run else _run_local(to_run, log)
  for result in finished:
    results[(result.task, result.preset, result.seed)] = result
    log(f"  {result.task}/{result.preset} seed {result.seed}: {_describe(result)}")
  return [results[(c.task, c.preset, c.seed)] for c in cells]


def _not_requested(cell: CellResult, scale: str, configs_dir: str | Path) -> CellResult:
  """A cell outside the request that could not be configured: "not run", keeping the error only
  when it is the cell's own (a missing config file, a broken preset), not an override meant for
  the requested tasks (``--tasks=pathfinder --overrides=data.difficulty=easy`` on ListOps)."""
  config_file = Path(configs_dir).resolve() / f"{cell.task}.py"
  if not config_file.is_file():
    return dataclasses.replace(cell, status="not run")
  try:
    cell_config(config_file, cell.task, cell.preset, scale, cell.seed, {})
  except Exception:  # pylint: disable=broad-except  (the cell's own error stays in the report)
    return dataclasses.replace(cell, status="not run")
  return dataclasses.replace(cell, status="not run", error="")


def _describe(result: CellResult) -> str:
  if result.status in ("done", "cached") and result.results:
    r = result.results
    return (f"{result.status}: test_accuracy={r['test_accuracy']:.4f} val_accuracy={r['val_accuracy']:.4f} "
            f"in {result.wall_seconds:.0f} s")
  return f"{result.status}: {result.error}"
