"""Sweep declarations: what a config file's ``get_sweeps()`` returns, validated, and the
config of one trial.

A config file may define ``get_sweeps() -> {name: dict}``, each dict with

* ``config``: the ``get_config`` argument every trial starts from (``"model=transformer,scale=small"``);
* ``fixed``: ``{field: value}`` set in every trial (dotted config fields);
* ``search``: ``{key: distribution}`` where ``key`` is a dotted config field, or ``arg.<name>``
  for an argument of ``get_config`` (e.g. ``arg.model`` to sweep over presets), and the
  distribution is one of ``("grid", [values])`` (every value, crossed with the other grid keys),
  ``("choice", [values])``, ``("uniform", low, high)``, ``("loguniform", low, high)``,
  ``("randint", low, high)`` (high excluded);
* ``num_samples`` (default 1): how many times the grid is run; random keys are drawn anew
  for each trial (Ray Tune's semantics);
* ``metric`` (default ``val_accuracy``) and ``mode`` (``max`` or ``min``): what "best" means.

Everything here is plain Python (no Ray): a sweep is checked against the config before any
trial starts, so a misspelled field fails at once with the valid ones.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from pathlib import Path
from typing import Any, Mapping

import ml_collections

from lra_wavelet import configlib
from lra_wavelet.reproduce.runner import apply_overrides

DISTRIBUTIONS = ("grid", "choice", "uniform", "loguniform", "randint")
METRICS = ("val_accuracy", "test_accuracy", "test_loss", "train_seconds", "steps_per_second")
KEYS = ("config", "fixed", "search", "num_samples", "metric", "mode")
ARG_PREFIX = "arg."


@dataclasses.dataclass(frozen=True)
class Sweep:
  """A validated sweep of ``config_file``'s configs."""
  name: str
  config_file: str                     # absolute path of the config file
  config: str = ""                     # get_config argument shared by every trial
  fixed: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  search: Mapping[str, tuple] = dataclasses.field(default_factory=dict)
  num_samples: int = 1
  metric: str = "val_accuracy"
  mode: str = "max"

  @property
  def num_trials(self) -> int:
    grid = [len(d[1]) for d in self.search.values() if d[0] == "grid"]
    return math.prod(grid) * self.num_samples

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)


def parse_arg(text: str) -> dict[str, str]:
  """``"model=x,scale=tiny"`` -> {"model": "x", "scale": "tiny"} (order kept)."""
  items = (s.strip() for s in (text or "").split(","))
  return dict((item.partition("=")[0].strip(), item.partition("=")[2].strip()) for item in items if item)


def _check_distribution(key: str, dist: Any) -> tuple:
  if not isinstance(dist, (tuple, list)) or not dist or dist[0] not in DISTRIBUTIONS:
    raise configlib.ConfigError(
        f"sweep key {key!r}: expected (kind, ...) with kind one of {', '.join(DISTRIBUTIONS)}, got {dist!r}")
  kind = dist[0]
  if kind in ("grid", "choice"):
    if len(dist) != 2 or not isinstance(dist[1], (list, tuple)) or not dist[1]:
      raise configlib.ConfigError(f"sweep key {key!r}: ({kind!r}, [values]) needs a non-empty list of values")
    return (kind, list(dist[1]))
  if len(dist) != 3 or not all(isinstance(v, (int, float)) for v in dist[1:]) or not dist[1] < dist[2]:
    raise configlib.ConfigError(f"sweep key {key!r}: ({kind!r}, low, high) needs two numbers with low < high")
  if kind == "loguniform" and dist[1] <= 0:
    raise configlib.ConfigError(f"sweep key {key!r}: loguniform needs low > 0")
  return (kind, dist[1], dist[2])


def from_dict(name: str, config_file: str | Path, declaration: Mapping[str, Any]) -> Sweep:
  """Validate one ``get_sweeps()`` entry against the config it sweeps."""
  unknown = sorted(set(declaration) - set(KEYS))
  if unknown:
    raise configlib.ConfigError(f"sweep {name!r}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(KEYS)}")
  search = {k: _check_distribution(k, d) for k, d in dict(declaration.get("search", {})).items()}
  sweep = Sweep(name=name, config_file=str(Path(config_file).resolve()), config=declaration.get("config", ""),
                fixed=dict(declaration.get("fixed", {})), search=search,
                num_samples=int(declaration.get("num_samples", 1)),
                metric=declaration.get("metric", "val_accuracy"), mode=declaration.get("mode", "max"))
  if sweep.metric not in METRICS:
    raise configlib.ConfigError(f"sweep {name!r}: unknown metric {sweep.metric!r}; valid metrics: {', '.join(METRICS)}")
  if sweep.mode not in ("max", "min"):
    raise configlib.ConfigError(f"sweep {name!r}: mode must be 'max' or 'min', got {sweep.mode!r}")
  if sweep.num_samples < 1:
    raise configlib.ConfigError(f"sweep {name!r}: num_samples must be at least 1")
  if not search:
    raise configlib.ConfigError(f"sweep {name!r} has an empty search space; give 'search': {{field: distribution}}")
  # Every grid/choice value of a config argument must make a valid config; fields must exist.
  for key, dist in search.items():
    if key.startswith(ARG_PREFIX) and dist[0] in ("grid", "choice"):
      for value in dist[1]:
        trial_config(sweep, {key: value})
  trial_config(sweep, example_params(sweep))
  return sweep


def example_params(sweep: Sweep) -> dict[str, Any]:
  """One point of the search space (first grid/choice value, lower bound of ranges)."""
  return {k: d[1][0] if d[0] in ("grid", "choice") else d[1] for k, d in sweep.search.items()}


def load(spec: str) -> Sweep:
  """``path/to/config.py:name`` -> the validated sweep ``name`` of that file's ``get_sweeps()``."""
  import importlib.util  # pylint: disable=import-outside-toplevel
  path, _, name = spec.partition(":")
  if not Path(path).is_file():
    raise configlib.ConfigError(f"config file {path!r} not found (give --sweep=configs/<task>.py:<name>)")
  module_spec = importlib.util.spec_from_file_location("_lra_wavelet_sweep_config", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  sweeps = module.get_sweeps() if hasattr(module, "get_sweeps") else {}
  if name not in sweeps:
    raise configlib.ConfigError(
        f"{path} declares no sweep {name!r}; declared sweeps: {', '.join(sorted(sweeps)) or '(none: add get_sweeps())'}")
  return from_dict(name, path, sweeps[name])


def trial_config(sweep: Sweep, params: Mapping[str, Any],
                 overrides: Mapping[str, Any] | None = None) -> ml_collections.ConfigDict:
  """The config of the trial with search values ``params``: the config argument (with the
  ``arg.*`` params), then ``fixed``, then ``overrides`` (from the command line), then the
  field params."""
  args = parse_arg(sweep.config)
  args.update({k[len(ARG_PREFIX):]: str(v) for k, v in params.items() if k.startswith(ARG_PREFIX)})
  arg_text = ",".join(f"{k}={v}" for k, v in args.items())
  config = configlib.load_config_file(f"{sweep.config_file}:{arg_text}")
  apply_overrides(config, dict(sweep.fixed))
  apply_overrides(config, dict(overrides or {}))
  apply_overrides(config, {k: v for k, v in params.items() if not k.startswith(ARG_PREFIX)})
  return config


def grid_points(sweep: Sweep) -> list[dict[str, Any]]:
  """Every combination of the grid keys (random keys left out), in declaration order."""
  keys = [k for k, d in sweep.search.items() if d[0] == "grid"]
  return [dict(zip(keys, values)) for values in itertools.product(*(sweep.search[k][1] for k in keys))]


def train_command(sweep: Sweep, params: Mapping[str, Any], overrides: Mapping[str, Any] | None = None) -> str:
  """The ``lra-wavelet train`` command that reruns one trial on its own."""
  args = parse_arg(sweep.config)
  args.update({k[len(ARG_PREFIX):]: str(v) for k, v in params.items() if k.startswith(ARG_PREFIX)})
  fields = {**sweep.fixed, **(overrides or {}), **{k: v for k, v in params.items() if not k.startswith(ARG_PREFIX)}}
  parts = [f"lra-wavelet train --config={sweep.config_file}:{','.join(f'{k}={v}' for k, v in args.items())}"]
  parts += [f"--config.{k}={v}" for k, v in fields.items()]
  return " ".join(parts)
