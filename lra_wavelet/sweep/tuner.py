"""Run a sweep as Ray Tune trials and write its trial table.

Each trial trains one config with ``train_and_evaluate`` in its own Ray worker, in the trial's
folder (``<workdir>/<trial>/run``), holding the resources of ``cluster.trial_resources()``
(one GPU, all TPU chips of a host, or CPU cores). A failing trial (bad value, NaN loss, out of
memory) is recorded with its error; the others go on. When all trials have ended, the sweep's
workdir gets

    trials.csv, trials.md   every trial: parameters, metrics, status, error, folder
    best.json               the best finished trial by the sweep's metric, with the
                            ``lra-wavelet train`` command that reruns it alone
    sweep.json              the sweep declaration (a later run with another declaration
                            in the same workdir is refused)

Running the same command again resumes an interrupted sweep (finished trials are kept,
unfinished ones continue from their checkpoints).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from pathlib import Path
from typing import Any, Callable, Mapping

from lra_wavelet import configlib, provenance
from lra_wavelet.reproduce.runner import error_summary
from lra_wavelet.sweep import cluster
from lra_wavelet.sweep.spec import Sweep, example_params, train_command, trial_config

REPORTED = ("val_accuracy", "test_accuracy", "test_loss", "best_step", "steps", "train_seconds",
            "steps_per_second", "num_params")


@dataclasses.dataclass
class TrialRow:
  """One line of the trial table."""
  trial: str
  status: str                          # "ok" | "failed"
  params: dict[str, Any]
  metrics: dict[str, Any]
  error: str
  folder: str


def _train_trial(params: dict[str, Any], *, sweep: dict[str, Any], overrides: dict[str, Any]) -> None:
  """Ray Tune trainable: train one trial's config and report its final metrics."""
  from ray import tune  # pylint: disable=import-outside-toplevel
  from lra_wavelet.train import loop  # pylint: disable=import-outside-toplevel
  config = trial_config(Sweep(**sweep), params, overrides)
  results = loop.train_and_evaluate(config, Path(tune.get_context().get_trial_dir()) / "run")
  tune.report({k: results[k] for k in REPORTED})


def _trial_name(trial) -> str:
  """Short trial names (``<experiment>_<index>``); parameters are in the trial table."""
  return trial.trial_id


def _rows(result_grid, sweep: Sweep) -> list[TrialRow]:
  rows = []
  for result in result_grid:
    params = {k: result.config.get(k) for k in sweep.search}
    if result.error is not None:
      message = str(result.error)
      rows.append(TrialRow(Path(result.path).name, "failed", params, {},
                           error_summary(message, returncode=1), result.path))
    else:
      metrics = {k: result.metrics.get(k) for k in REPORTED}
      rows.append(TrialRow(Path(result.path).name, "ok", params, metrics, "", result.path))
  sign = -1 if sweep.mode == "max" else 1
  rows.sort(key=lambda r: (r.status != "ok", sign * (r.metrics.get(sweep.metric) or 0.0), r.trial))
  return rows


def _fmt(value: Any) -> str:
  if isinstance(value, float):
    return f"{value:.4g}"
  return "" if value is None else str(value)


def write_tables(rows: list[TrialRow], sweep: Sweep, workdir: Path, *, overrides: Mapping[str, Any],
                 command: str) -> dict[str, Any] | None:
  """trials.csv, trials.md and best.json in ``workdir``; returns the best entry (or None)."""
  param_keys = list(sweep.search)
  header = ["trial", "status", *param_keys, *REPORTED, "error", "folder"]
  buffer = io.StringIO()
  writer = csv.writer(buffer)
  writer.writerow(header)
  for r in rows:
    writer.writerow([r.trial, r.status, *(r.params[k] for k in param_keys),
                     *(r.metrics.get(k, "") for k in REPORTED), r.error, r.folder])
  (workdir / "trials.csv").write_text(buffer.getvalue())

  ok = [r for r in rows if r.status == "ok"]
  best = None
  if ok:
    top = ok[0]
    best = {"trial": top.trial, "metric": sweep.metric, "mode": sweep.mode, "value": top.metrics[sweep.metric],
            "params": top.params, "metrics": top.metrics, "folder": top.folder,
            "command": train_command(sweep, top.params, overrides)}
  (workdir / "best.json").write_text(json.dumps(best, indent=2, default=str) + "\n")

  shown = ["val_accuracy", "test_accuracy", "train_seconds", "num_params"]
  lines = [f"# Sweep `{sweep.name}` of `{Path(sweep.config_file).name}`", "",
           f"- command: `{command}`",
           f"- base config: `{sweep.config}`; fixed: `{json.dumps(dict(sweep.fixed))}`"
           + (f"; overrides: `{json.dumps(dict(overrides))}`" if overrides else ""),
           f"- search: `{json.dumps({k: list(v) for k, v in sweep.search.items()}, default=str)}`, "
           f"num_samples {sweep.num_samples}",
           f"- trials: {len(rows)} ({len(ok)} finished, {len(rows) - len(ok)} failed); best by "
           f"{sweep.metric} ({sweep.mode}): " + (f"`{best['trial']}` = {_fmt(best['value'])}" if best else "none"),
           f"- date {provenance.now()}, git {provenance.git_commit()}", "",
           "| trial | status | " + " | ".join(param_keys + shown) + " | error |",
           "|" + "---|" * (3 + len(param_keys) + len(shown))]
  for r in rows:
    cells = [r.trial, r.status, *(_fmt(r.params[k]) for k in param_keys), *(_fmt(r.metrics.get(k)) for k in shown),
             r.error.replace("|", "\\|")]
    lines.append("| " + " | ".join(cells) + " |")
  (workdir / "trials.md").write_text("\n".join(lines) + "\n")
  return best


def _param_space(sweep: Sweep) -> dict[str, Any]:
  from ray import tune  # pylint: disable=import-outside-toplevel
  make = {"grid": lambda d: tune.grid_search(d[1]), "choice": lambda d: tune.choice(d[1]),
          "uniform": lambda d: tune.uniform(d[1], d[2]), "loguniform": lambda d: tune.loguniform(d[1], d[2]),
          "randint": lambda d: tune.randint(d[1], d[2])}
  return {k: make[d[0]](d) for k, d in sweep.search.items()}


def run_sweep(sweep: Sweep, workdir: str | Path, *, overrides: Mapping[str, Any] | None = None,
              ray_address: str = "", max_concurrent: int = 0, cpus_per_trial: float = 1,
              command: str = "", log: Callable[[str], None] = print,
              ray_init_kwargs: Mapping[str, Any] | None = None) -> tuple[list[TrialRow], dict[str, Any] | None]:
  """Run (or resume) ``sweep`` in ``workdir``; returns (trial rows, best entry)."""
  from ray import tune  # pylint: disable=import-outside-toplevel
  overrides = dict(overrides or {})
  trial_config(sweep, example_params(sweep), overrides)  # a bad command-line override fails before Ray starts
  workdir = Path(workdir).resolve()
  declaration = {"sweep": sweep.to_dict(), "overrides": overrides}
  stored = workdir / "sweep.json"
  if stored.exists() and json.loads(stored.read_text()) != json.loads(json.dumps(declaration, default=str)):
    raise configlib.ConfigError(f"{workdir} holds a different sweep (see {stored}); delete it or give another --workdir")
  workdir.mkdir(parents=True, exist_ok=True)
  stored.write_text(json.dumps(declaration, indent=2, default=str) + "\n")

  cluster.connect(ray_address, **dict(ray_init_kwargs or {}))
  resources = cluster.trial_resources(cpus=cpus_per_trial)
  trainable = tune.with_resources(
      tune.with_parameters(_train_trial, sweep=sweep.to_dict(), overrides=overrides), resources.tune())
  log(f"sweep {sweep.name}: {sweep.num_trials} trials, each with {resources.tune()}, in {workdir}")
  if tune.Tuner.can_restore(str(workdir)):
    log("resuming the interrupted sweep found there")
    tuner = tune.Tuner.restore(str(workdir), trainable=trainable, resume_unfinished=True, resume_errored=False)
  else:
    tuner = tune.Tuner(
        trainable, param_space=_param_space(sweep),
        tune_config=tune.TuneConfig(num_samples=sweep.num_samples, max_concurrent_trials=max_concurrent or None,
                                    trial_name_creator=_trial_name, trial_dirname_creator=_trial_name),
        run_config=tune.RunConfig(name=workdir.name, storage_path=str(workdir.parent),
                                  failure_config=tune.FailureConfig(max_failures=0), verbose=1))
  rows = _rows(tuner.fit(), sweep)
  best = write_tables(rows, sweep, workdir, overrides=overrides, command=command)
  return rows, best


def describe(rows: list[TrialRow], best: dict[str, Any] | None, workdir: Path) -> str:
  """A few lines for the terminal: counts, the best trial and how to rerun it."""
  failed = sum(r.status != "ok" for r in rows)
  text = f"{len(rows)} trials, {failed} failed; table: {Path(workdir) / 'trials.md'}"
  if best:
    text += (f"\nbest {best['trial']}: {best['metric']}={_fmt(best['value'])} with {best['params']}"
             f"\nrerun it alone: {best['command']}")
  return text
