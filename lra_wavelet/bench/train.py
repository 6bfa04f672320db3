"""``lra-wavelet bench --train``: whole training steps as the trainer runs them.

For each (task, preset, scale) the command builds the model and optimiser from the task's
config exactly as ``lra-wavelet train`` does, compiles the trainer's own step
(``train.loop.make_train_step``: donated state, one compilation) and records

* steps/s and tokens/s of the step on a batch already on the device (median after warm-up),
  and steps/s of the same step fed by the input pipeline (the training loop's pattern, one
  host sync at the end);
* model FLOPs per step and the utilisation they imply: achieved FLOP/s over the FLOP/s of a
  large float32 matmul measured in the same process right before and after the case (the
  usual model-FLOPs utilisation, MFU, of Chowdhery et al. 2022). Model FLOPs are three times
  the forward pass's matmul FLOPs (the backward pass of a matmul is two matmuls of the same
  size), counted from the forward jaxpr with every loop body multiplied by its trip count and
  exact softmax attention at its dense cost (padding a blockwise kernel adds is overhead); XLA's
  own count (``cost_analysis``) is reported beside it but counts a loop body once, so it
  undercounts the blockwise attention kernel and every other scan;
* peak memory: XLA's memory analysis of the compiled step, and the case process's peak RSS;
* the input pipeline alone (``data.train_batches`` + ``to_global``), in batches/s.

Every case runs in its own process, so peak RSS is the case's own and a crash is a row in the
table, not the end of the run. A case may use 80% of the memory available when it starts:
one whose XLA memory estimate exceeds that is not run (its row says how much it would need),
and past that limit (RLIMIT_DATA) allocations fail inside the case, whose row then says
"out of memory", before the kernel would kill it or another process on the machine. Inputs are random tokens with the task's shapes and vocabulary: the
step's cost does not depend on token values, the pipeline code is the one training uses on a
task's cached arrays, and no task has to download or generate its data to be measured.
Batches the machine cannot run within the time budget are halved (the row gives the batch
used and the config's); Path-X at paper shape runs at batch 1 with rematerialisation.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence
from unittest import mock

import numpy as np

from lra_wavelet import allocator
from lra_wavelet.bench import common, profile

REPO = Path(__file__).resolve().parent.parent.parent
CONFIGS = REPO / "configs"
SCALES = ("tiny", "small", "paper")
DEFAULT_TASKS = ("listops", "text", "retrieval", "image", "pathfinder", "pathx", "lego")
DEFAULT_PRESETS = ("transformer",)
# Path-X at paper shape: every mixer whose memory is linear in the sequence length, softmax
# through its automatic (blockwise) implementation, and softmax forced to XLA's dense kernel.
PATHX_PRESETS = ("linear", "performer", "linear_wavspa", "linear_wavspa_ada", "performer_wavspa",
                 "performer_wavspa_ada", "mra2", "wersa", "transformer", "transformer:implementation=xla")
PATHX_TASK, PATHX_BATCH = "pathx", 1

PEAK_MATMUL_SIZES = (1024, 2048)   # square float32 matmuls whose best median FLOP/s is the peak
MEMORY_FRACTION = 0.8              # a case may use this fraction of the available memory
ASSUMED_UTILISATION = 0.2          # for predicting a step's time from its FLOPs (batch halving)
CASE_TIMEOUT_S = 3600.0
_RESULT_MARKER = "LRA_WAVELET_BENCH_ROW "

_COLUMNS = ("task", "preset", "mixer", "scale", "batch", "config_batch", "tokens", "layers", "dim",
            "remat", "dtype", "status", "steps_per_s", "tokens_per_s", "fed_steps_per_s",
            "model_gflop", "xla_gflop", "achieved_gflops", "peak_gflops", "utilisation",
            "utilisation_cpu", "xla_temp_mb", "xla_peak_mb", "rss_peak_mb", "pipeline_batches_per_s",
            "pipeline_ratio", "compile_s", "step_runs", "load", "flops_note")
_HEADERS = {
    "config_batch": "config batch", "tokens": "tokens/example", "steps_per_s": "steps/s",
    "tokens_per_s": "tokens/s", "fed_steps_per_s": "steps/s fed by pipeline",
    "model_gflop": "model GFLOP/step", "xla_gflop": "XLA GFLOP/step (loops once)",
    "achieved_gflops": "GFLOP/s", "peak_gflops": "matmul peak GFLOP/s", "utilisation": "utilisation",
    "utilisation_cpu": "utilisation (CPU time)", "xla_temp_mb": "XLA temp MB",
    "xla_peak_mb": "XLA peak MB", "rss_peak_mb": "peak RSS MB",
    "pipeline_batches_per_s": "pipeline batches/s", "pipeline_ratio": "pipeline / step",
    "compile_s": "compile s", "step_runs": "timed steps", "load": "load avg", "flops_note": "FLOPs note",
}
_SUMMARY_COLUMNS = ("task", "preset", "scale", "batch", "tokens", "status", "steps_per_s", "tokens_per_s",
                    "utilisation", "rss_peak_mb", "pipeline_ratio")


@dataclasses.dataclass(frozen=True)
class Case:
  """One row: ``configs/<task>.py:model=<preset>,scale=<scale>`` plus overrides.

  ``preset`` may carry mixer options as ``name:key=value;key=value`` (e.g.
  ``transformer:implementation=xla``); ``batch`` and ``remat`` replace the config's values
  when given.
  """
  task: str
  preset: str
  scale: str
  overrides: tuple[tuple[str, str], ...] = ()
  batch: int | None = None
  remat: bool | None = None

  @property
  def label(self) -> str:
    return f"{self.task}/{self.preset}/{self.scale}"


def default_cases(tasks: Sequence[str] | None = None, presets: Sequence[str] | None = None,
                  scales: Sequence[str] = SCALES) -> list[Case]:
  """Every (task, preset, scale); without explicit presets, ``DEFAULT_PRESETS`` everywhere plus
  the Path-X table (``PATHX_PRESETS`` at paper scale) when Path-X and paper are included.
  Path-X at paper scale always runs at batch 1 with rematerialisation."""
  tasks = list(tasks or DEFAULT_TASKS)
  for scale in scales:
    if scale not in SCALES:
      raise ValueError(f"unknown scale {scale!r}; valid scales: {', '.join(SCALES)}")
  specs = list(presets or DEFAULT_PRESETS)
  cases = []
  for task in tasks:
    for scale in scales:
      for preset in specs:
        cases.append(_case(task, preset, scale))
  if not presets and PATHX_TASK in tasks and "paper" in scales:
    listed = {c.preset for c in cases if c.task == PATHX_TASK and c.scale == "paper"}
    cases += [_case(PATHX_TASK, p, "paper") for p in PATHX_PRESETS if p not in listed]
  return cases


def _case(task: str, preset: str, scale: str) -> Case:
  if task == PATHX_TASK and scale == "paper":
    return Case(task, preset, scale, batch=PATHX_BATCH, remat=True)
  return Case(task, preset, scale)


# ----------------------------------------------------------------------------- FLOPs

def _sub_jaxprs(value: Any) -> Iterable[Any]:
  from jax.extend import core as jex_core  # pylint: disable=import-outside-toplevel
  if isinstance(value, (jex_core.ClosedJaxpr, jex_core.Jaxpr)):
    yield value
  elif isinstance(value, (tuple, list)):
    for item in value:
      yield from _sub_jaxprs(item)


def matmul_flops(jaxpr) -> tuple[float, bool]:
  """(FLOPs of every dot_general and convolution in ``jaxpr``, whether a loop was uncounted).

  2 FLOPs per multiply-add. A ``scan`` body counts ``length`` times, a ``cond`` its most
  expensive branch, a ``while`` body once (its trip count is not known when tracing; the flag
  says so); calls (jit, custom_vjp/jvp, checkpoint) count their body.
  """
  jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
  total, unbounded = 0.0, False
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if name == "dot_general":
      (contract_lhs, _), _ = eqn.params["dimension_numbers"]
      lhs = eqn.invars[0].aval.shape
      total += 2.0 * math.prod(eqn.outvars[0].aval.shape) * math.prod(lhs[d] for d in contract_lhs)
      continue
    if name == "conv_general_dilated":
      kernel = eqn.invars[1].aval.shape
      out_features = kernel[eqn.params["dimension_numbers"].rhs_spec[0]]
      total += 2.0 * math.prod(eqn.outvars[0].aval.shape) * math.prod(kernel) / out_features
      continue
    counts = []
    for key, value in eqn.params.items():
      for sub in _sub_jaxprs(value):
        flops, sub_unbounded = matmul_flops(sub)
        counts.append((key, flops))
        unbounded |= sub_unbounded
    if not counts:
      continue
    if name == "cond":
      total += max(f for _, f in counts)
    elif name == "scan":
      total += eqn.params["length"] * sum(f for _, f in counts)
    elif name == "while":
      total += sum(f for key, f in counts if key == "body_jaxpr")
      unbounded |= any(f for key, f in counts if key == "body_jaxpr")
    else:
      total += sum(f for _, f in counts)
  return total, unbounded


def forward_matmul_flops(graphdef, state, batch, compute_dtype) -> tuple[float, bool]:
  """``matmul_flops`` of the model's training-mode forward pass on ``batch``.

  Exact softmax attention is counted at its dense cost (the ``auto`` implementation is traced
  as ``dense``): the tiles a blockwise kernel pads are overhead, not model FLOPs.
  """
  import jax  # pylint: disable=import-outside-toplevel
  from flax import nnx  # pylint: disable=import-outside-toplevel
  from lra_wavelet.attention import softmax  # pylint: disable=import-outside-toplevel
  from lra_wavelet.train import loop  # pylint: disable=import-outside-toplevel

  def forward(state, batch):
    model = nnx.merge(graphdef, state)
    model = model[0] if isinstance(model, tuple) else model  # (model, optimizer) train state
    return loop.forward(model, batch, deterministic=False, compute_dtype=compute_dtype)

  with mock.patch.object(softmax, "choose_implementation", lambda *args, **kwargs: "dense"):
    return matmul_flops(jax.make_jaxpr(forward)(state, batch))


# ----------------------------------------------------------------------------- measuring

def matmul_peak(sizes: Sequence[int] = PEAK_MATMUL_SIZES, repeats: int = 5) -> tuple[float, float]:
  """(FLOP/s per wall second, FLOP/s per CPU second) of the fastest jitted float32 matmul size."""
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  best_wall, best_cpu = 0.0, 0.0
  rng = np.random.default_rng(0)
  for n in sizes:
    a = jnp.asarray(rng.standard_normal((n, n), np.float32))
    b = jnp.asarray(rng.standard_normal((n, n), np.float32))
    matmul = jax.jit(jnp.matmul).lower(a, b).compile()
    timing = common.time_fn(lambda: matmul(a, b).block_until_ready(), repeats=repeats, warmup=1)
    best_wall = max(best_wall, 2.0 * n ** 3 / timing.median)
    best_cpu = max(best_cpu, 2.0 * n ** 3 / max(timing.cpu_median, 1e-9))
  return best_wall, best_cpu


def synthetic_arrays(spec, num_examples: int, seed: int = 0) -> dict[str, np.ndarray]:
  """Random training arrays with the shapes, dtypes and value ranges of task ``spec``."""
  rng = np.random.default_rng(seed)
  tokens = lambda: rng.integers(1, spec.vocab_size, (num_examples, spec.max_len), dtype=np.int32)
  arrays = {"inputs": tokens()}
  if spec.kind == "pair":
    arrays["inputs2"] = tokens()
  target_shape = (num_examples, spec.max_len) if spec.kind == "token" else (num_examples,)
  arrays["targets"] = rng.integers(0, spec.num_classes, target_shape, dtype=np.int32)
  return arrays


def _pipeline_rate(arrays, batch_size: int, mesh, prefetch: int, *, min_batches: int = 20,
                   min_seconds: float = 1.0, max_batches: int = 5000) -> float:
  """Batches/s of ``data.train_batches`` + ``to_global`` on their own (after one batch)."""
  import jax  # pylint: disable=import-outside-toplevel
  from lra_wavelet import data as data_lib  # pylint: disable=import-outside-toplevel
  batches = data_lib.train_batches(arrays, batch_size=batch_size, seed=0, start_step=0,
                                   num_steps=max_batches + 1, prefetch=prefetch)
  jax.block_until_ready(data_lib.to_global(next(batches), mesh))
  start, count = time.perf_counter(), 0
  for batch in batches:
    jax.block_until_ready(data_lib.to_global(batch, mesh))
    count += 1
    if count >= min_batches and time.perf_counter() - start >= min_seconds:
      break
  return count / (time.perf_counter() - start)


def _build_config(case: Case, dtype: str | None):
  from lra_wavelet import configlib  # pylint: disable=import-outside-toplevel
  from lra_wavelet.bench.mixers import parse_spec  # pylint: disable=import-outside-toplevel
  from lra_wavelet.reproduce.runner import apply_overrides  # pylint: disable=import-outside-toplevel
  path = CONFIGS / f"{case.task}.py"
  if not path.is_file():
    raise configlib.ConfigError(f"no config file configs/{case.task}.py")
  preset, mixer_options = parse_spec(case.preset)
  config = configlib.load_config_file(f"{path}:model={preset},scale={case.scale}")
  overrides = dict(case.overrides)
  if case.batch is not None:
    overrides["batch_size"] = case.batch
  if case.remat is not None:
    overrides["model.remat"] = case.remat
  if dtype:
    overrides["model.compute_dtype"] = dtype
  apply_overrides(config, overrides)
  if mixer_options:
    with config.unlocked():
      config.model.mixer_options.update(mixer_options)
  return config


def measure_case(case: Case, *, repeats: int = 5, max_seconds: float = 120.0, dtype: str | None = None,
                 memory_fraction: float = MEMORY_FRACTION,
                 peak_sizes: Sequence[int] = PEAK_MATMUL_SIZES, profile_steps: int = 0) -> dict[str, Any]:
  """Measure one case in this process; returns its table row (``status`` says what happened).

  With ``profile_steps`` > 0, that many more steps run under the JAX profiler and the row's
  ``profile`` holds their op times by kind (``bench.profile.op_kind_times``, as dicts).
  """
  import jax  # pylint: disable=import-outside-toplevel
  from lra_wavelet import data as data_lib, tasks  # pylint: disable=import-outside-toplevel
  from lra_wavelet.train import loop  # pylint: disable=import-outside-toplevel

  row: dict[str, Any] = {"task": case.task, "preset": case.preset, "scale": case.scale,
                         "load": os.getloadavg()[0]}
  try:
    config = _build_config(case, dtype)
    spec = tasks.get(config.task).spec(config)
    mesh = data_lib.make_mesh(config.mesh_data_axis)
    data_lib.check_batch_size(config.batch_size, mesh)
    graphdef, state, _ = loop.init_state(config, spec, mesh)
  except Exception as e:  # pylint: disable=broad-except
    # A preset, mixer or task that is missing (or broken) is one skipped row, not a failed run.
    row["status"] = f"skipped: {type(e).__name__}: {_first_line(e)}"
    return row
  m = config.model
  row.update(mixer=m.mixer, config_batch=config.batch_size, layers=m.num_layers, dim=m.dim,
             remat=bool(m.remat), dtype=m.compute_dtype,
             tokens=spec.max_len * (2 if spec.kind == "pair" else 1))
  compute_dtype = loop.COMPUTE_DTYPES[m.compute_dtype]
  peak_before = matmul_peak(peak_sizes)

  def forward_flops(state, batch) -> tuple[float, bool]:
    return forward_matmul_flops(graphdef, state, batch, compute_dtype)

  def device_batch(batch_size: int):
    arrays = synthetic_arrays(spec, max(2 * batch_size, min(2048, (256 << 20) // (4 * row["tokens"] + 8))))
    first = next(data_lib.train_batches(arrays, batch_size=batch_size, seed=0, start_step=0,
                                        num_steps=1, prefetch=0))
    return arrays, data_lib.to_global(first, mesh)

  # Model FLOPs from the forward pass; halve the batch while three steps (two warm-up, one
  # timed) are predicted to take longer than the budget.
  batch_size = config.batch_size
  arrays, batch = device_batch(batch_size)
  fwd_flops, unbounded = forward_flops(state, batch)
  min_batch = mesh.devices.size
  while batch_size > min_batch and 3 * 3 * fwd_flops / (ASSUMED_UTILISATION * peak_before[0]) > max_seconds:
    batch_size = max(min_batch, batch_size // 2 // min_batch * min_batch)
    arrays, batch = device_batch(batch_size)
    fwd_flops, unbounded = forward_flops(state, batch)
  row.update(batch=batch_size, model_gflop=3 * fwd_flops / 1e9,
             flops_note="has a while loop counted once" if unbounded else "")

  start = time.perf_counter()
  try:
    compiled = loop.make_train_step(graphdef, config).lower(state, batch).compile()
  except Exception as e:  # pylint: disable=broad-except
    row["status"] = _failure("failed to compile", e)
    return row
  row["compile_s"] = time.perf_counter() - start
  allocator.release_free_memory()  # the compiler's freed heap, before the step's first temporary
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  if cost and "flops" in cost:
    row["xla_gflop"] = float(cost["flops"]) / 1e9
  memory = common.xla_memory(compiled)
  if memory is not None:
    row.update(xla_temp_mb=memory.temp / common.MB, xla_peak_mb=memory.peak / common.MB)
    budget = memory_fraction * common.available_memory_bytes()
    limit = resource.getrlimit(resource.RLIMIT_DATA)[0]
    if limit != resource.RLIM_INFINITY:
      budget = min(budget, limit)
    if memory.peak > budget:
      row["status"] = (f"does not fit: XLA needs {memory.peak / 2**30:.1f} GiB, "
                       f"the case may use {budget / 2**30:.1f} GiB")
      return row

  holder = {"state": state}

  def step():
    holder["state"], metrics = compiled(holder["state"], batch)
    jax.block_until_ready((holder["state"], metrics))

  try:
    timing = common.time_fn(step, repeats=repeats, warmup=2, max_seconds=max_seconds)
    # The training loop's pattern: each batch from the pipeline goes to the device and the step
    # is dispatched without waiting; one host sync at the end. The first batch warms the pipeline.
    fed_steps = max(1, min(len(timing.wall), int(max_seconds / 2 / timing.median)))
    fed = data_lib.train_batches(arrays, batch_size=batch_size, seed=1, start_step=0,
                                 num_steps=fed_steps + 1, prefetch=config.prefetch)
    holder["state"], metrics = compiled(holder["state"], data_lib.to_global(next(fed), mesh))
    jax.block_until_ready((holder["state"], metrics))
    start = time.perf_counter()
    for host_batch in fed:
      holder["state"], metrics = compiled(holder["state"], data_lib.to_global(host_batch, mesh))
    jax.block_until_ready((holder["state"], metrics))
    fed_rate = fed_steps / (time.perf_counter() - start)
    if profile_steps:
      row["profile"] = [t._asdict() for t in profile.profile_calls(step, profile_steps)]
  except Exception as e:  # pylint: disable=broad-except
    row["status"] = _failure("failed", e)
    return row
  peak_after = matmul_peak(peak_sizes)
  peak_wall = max(peak_before[0], peak_after[0])
  peak_cpu = max(peak_before[1], peak_after[1])
  model_flops = row["model_gflop"] * 1e9
  row.update(
      status="ok", steps_per_s=1.0 / timing.median, step_runs=len(timing.wall),
      tokens_per_s=batch_size * row["tokens"] / timing.median, fed_steps_per_s=fed_rate,
      achieved_gflops=model_flops / timing.median / 1e9, peak_gflops=peak_wall / 1e9,
      utilisation=model_flops / timing.median / peak_wall,
      utilisation_cpu=model_flops / max(timing.cpu_median, 1e-9) / peak_cpu,
      pipeline_batches_per_s=_pipeline_rate(arrays, batch_size, mesh, config.prefetch))
  row["pipeline_ratio"] = row["pipeline_batches_per_s"] / row["steps_per_s"]
  row["rss_peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / common.MB
  return row


def _first_line(error: BaseException) -> str:
  text = str(error).strip()
  return text.splitlines()[0] if text else ""


# A failure in a process whose peak RSS reached this fraction of its memory limit counts as
# running out of memory, whatever the message: XLA's CPU kernels (YNNPACK, oneDNN) report a
# failed allocation as a generic "operation failed".
_NEAR_LIMIT = 0.8


def _failure(what: str, error: BaseException) -> str:
  """A row status for an exception; running out of memory says so (and how much was allowed)."""
  text = str(error)
  limit = resource.getrlimit(resource.RLIMIT_DATA)[0]
  limited = limit != resource.RLIM_INFINITY
  peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
  if isinstance(error, MemoryError) or "RESOURCE_EXHAUSTED" in text or (
      "allocat" in text and "fail" in text) or (limited and peak_rss >= _NEAR_LIMIT * limit):
    allowed = (f": the process reached {peak_rss / 2**30:.1f} GiB of the {limit / 2**30:.1f} GiB "
               f"the case may use" if limited else "")
    return f"out of memory{allowed} ({what}: {_first_line(error)})"
  return f"{what}: {type(error).__name__}: {_first_line(error)}"


# ----------------------------------------------------------------------------- one process per case

def _run_isolated(case: Case, settings: Mapping[str, Any], timeout: float) -> dict[str, Any]:
  """``measure_case`` in a fresh Python process; a crash or a kill becomes the row's status."""
  # The case process may use this much memory: past it, allocations fail inside the case
  # (a row saying so) instead of the kernel killing it or another process on the machine.
  limit = int(MEMORY_FRACTION * common.available_memory_bytes())
  payload = json.dumps({"case": dataclasses.asdict(case), "settings": dict(settings), "memory_limit": limit})
  row = {"task": case.task, "preset": case.preset, "scale": case.scale}
  try:
    proc = subprocess.run([sys.executable, "-m", "lra_wavelet.bench.train", payload], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout, env=dict(os.environ))
  except subprocess.TimeoutExpired:
    row["status"] = f"timed out after {timeout:.0f} s"
    return row
  for line in proc.stdout.splitlines():
    if line.startswith(_RESULT_MARKER):
      return json.loads(line[len(_RESULT_MARKER):])
  if proc.returncode < 0:
    reason = f"killed by signal {-proc.returncode}" + (
        f" (out of memory? the case may use {limit / 2**30:.1f} GiB)" if proc.returncode in (-6, -9) else "")
  else:
    tail = [l for l in proc.stderr.splitlines() if l.strip()]
    reason = f"exit code {proc.returncode}: {tail[-1] if tail else 'no output'}"
  row["status"] = f"crashed: {reason}"
  return row


def run_train_bench(tasks: Sequence[str] | None = None, presets: Sequence[str] | None = None,
                    scales: Sequence[str] = SCALES, *, dtype: str | None = None, repeats: int = 5,
                    overrides: Sequence[str] = (), max_seconds: float = 120.0,
                    results_dir: str | Path = "results", isolate: bool = True,
                    cases: Sequence[Case] | None = None,
                    peak_sizes: Sequence[int] = PEAK_MATMUL_SIZES, profile_steps: int = 0) -> Path:
  """Measure every case and write ``bench_train.md`` and ``bench_train.csv`` in ``results_dir``.

  Args:
    tasks: config names under configs/ (default ``DEFAULT_TASKS``).
    presets: model presets, each optionally ``name:key=value;...`` with mixer options
      (default: ``DEFAULT_PRESETS`` plus the Path-X table).
    scales: config scales.
    dtype: compute dtype ("float32" or "bfloat16"); None keeps the config's.
    repeats: timed steps per case after two warm-up steps (fewer when a step is slow).
    overrides: ``field=value`` config overrides applied to every case.
    max_seconds: time budget of a case's timed steps; the batch is halved until a step is
      predicted to fit it (repeats are cut to fit it, down to one).
    results_dir: output folder.
    isolate: run each case in its own process (peak RSS per case, crashes contained).
    cases: explicit cases instead of the product of tasks, presets and scales.
    peak_sizes: sizes of the square float32 matmuls whose best FLOP/s is the peak.
    profile_steps: if > 0, trace this many more steps per case and add a section with each
      case's op times by kind (``bench.profile``).

  Returns:
    Path of the markdown file.
  """
  from lra_wavelet.reproduce.runner import parse_overrides  # pylint: disable=import-outside-toplevel
  if repeats < 1:
    raise ValueError(f"repeats must be at least 1; got {repeats}")
  if profile_steps < 0:
    raise ValueError(f"profile_steps must be 0 (off) or more; got {profile_steps}")
  if dtype not in (None, "float32", "bfloat16"):
    raise ValueError(f"dtype must be float32 or bfloat16; got {dtype!r}")
  extra = tuple(parse_overrides(overrides).items())
  cases = list(cases) if cases is not None else default_cases(tasks, presets, scales)
  cases = [dataclasses.replace(c, overrides=c.overrides + extra) for c in cases]
  settings = {"repeats": repeats, "max_seconds": max_seconds, "dtype": dtype, "peak_sizes": list(peak_sizes),
              "profile_steps": profile_steps}
  load_before = os.getloadavg()
  peak_start = matmul_peak(peak_sizes)
  rows = []
  for case in cases:
    start = time.perf_counter()
    row = _run_isolated(case, settings, CASE_TIMEOUT_S) if isolate else measure_case(case, **settings)
    row["seconds"] = time.perf_counter() - start
    rows.append(row)
    print(f"bench --train {case.label}: {row['status']}"
          + (f", {row['steps_per_s']:.3g} steps/s, utilisation {row['utilisation']:.1%}"
             if row.get("status") == "ok" else ""), flush=True)
  peak_end = matmul_peak(peak_sizes)
  return _write(rows, Path(results_dir), settings=settings, overrides=extra, peaks=(peak_start, peak_end),
                loads=(load_before, os.getloadavg()))


# ----------------------------------------------------------------------------- tables

def _summary_lines(rows: Sequence[Mapping[str, Any]]) -> list[str]:
  """Facts the issue asks about, computed from the rows."""
  ok = [r for r in rows if r.get("status") == "ok"]
  lines = []
  if ok:
    best = max(ok, key=lambda r: r["utilisation"])
    lines.append(f"- Highest utilisation: {best['utilisation']:.1%} ({best['task']}/{best['preset']}/"
                 f"{best['scale']}, batch {best['batch']}).")
    worst = min(ok, key=lambda r: r["pipeline_ratio"])
    lines.append(f"- Input pipeline vs. the step it feeds: at least {worst['pipeline_ratio']:.0f}x "
                 f"faster in every measured case (lowest: {worst['task']}/{worst['preset']}/{worst['scale']}).")
  pathx = [r for r in rows if r["task"] == PATHX_TASK and r["scale"] == "paper"]
  if pathx:
    ran = [r["preset"] for r in pathx if r.get("status") == "ok"]
    failed = [f"{r['preset']} ({r.get('status')})" for r in pathx if r.get("status") != "ok"]
    lines.append(f"- Path-X at paper shape, batch {PATHX_BATCH}, rematerialised: {len(ran)} of "
                 f"{len(pathx)} presets ran a train step ({', '.join(ran) or 'none'})"
                 + (f"; did not: {'; '.join(failed)}." if failed else "."))
  return lines


def _shorten(text: str, limit: int = 140) -> str:
  """A status for the markdown table (the CSV keeps it whole)."""
  return text if len(text) <= limit else text[:limit - 3] + "..."


def _write(rows, results_dir: Path, *, settings, overrides, peaks, loads) -> Path:
  record = common.provenance_record()
  common.write_csv(results_dir / "bench_train.csv", rows, _COLUMNS + ("seconds",))
  (peak_start, peak_end) = peaks
  header = [
      f"Each case: the trainer's compiled train step (`train.loop.make_train_step`, donated state) "
      f"on the task config's model, optimiser and batch; median of up to {settings['repeats']} steps "
      f"after 2 warm-up steps (fewer when a step is slow; budget {settings['max_seconds']:.0f} s), "
      f"compute dtype {settings['dtype'] or 'as configured'}"
      + (f", overrides {', '.join(f'{k}={v}' for k, v in overrides)}" if overrides else "") + ".",
      f"Matmul peak of this machine (best median of jitted float32 matmuls of sizes "
      f"{', '.join(map(str, settings['peak_sizes']))}): {peak_start[0] / 1e9:.1f} GFLOP/s at the start of the "
      f"run, {peak_end[0] / 1e9:.1f} GFLOP/s at the end; each case divides by the better of two "
      f"measurements taken in its own process right before and after its steps.",
      f"Load average (1/5/15 min) at the start: {' / '.join(f'{x:.1f}' for x in loads[0])}, at the end: "
      f"{' / '.join(f'{x:.1f}' for x in loads[1])} (other work on the machine slows every number here).",
  ]
  notes = "\n".join([
      "- `model GFLOP/step`: 3 x the matmul and convolution FLOPs of the forward pass (2 per "
      "multiply-add), counted from its jaxpr with scan bodies multiplied by their length and "
      "exact softmax attention at its dense cost; the usual model-FLOPs count (recomputation "
      "from rematerialisation or a recomputing attention backward, and blocks padded by a "
      "blockwise kernel, are not counted). `XLA GFLOP/step` is XLA's `cost_analysis()` of the compiled "
      "step: it includes elementwise work and recomputation but counts each loop body once, so "
      "it is far too low for blockwise attention and other scans.",
      "- `utilisation`: model FLOP/s (wall clock) over the matmul peak; `utilisation (CPU time)` "
      "divides FLOPs per process-CPU-second by the matmul's, which is steadier when other "
      "processes share the cores.",
      "- `steps/s fed by pipeline`: the same step driven by `data.train_batches` + `to_global` "
      "as in training (dispatch is asynchronous, the next batch is assembled while the step "
      "runs, one host sync at the end). `pipeline batches/s`: the pipeline alone; "
      "`pipeline / step` is its rate over the step's.",
      "- Memory: `XLA temp MB` (activations and workspace) and `XLA peak MB` (plus arguments and "
      "outputs) from XLA's memory analysis; `peak RSS MB` is the case process's high-water mark "
      "(includes the Python/JAX runtime, about 0.3 GB). A case whose XLA peak exceeds "
      f"{MEMORY_FRACTION:.0%} of the available memory is not run (`does not fit`).",
      "- Inputs are random tokens with the task's vocabulary and shapes (no data download or "
      "generation needed); costs do not depend on token values.",
  ])
  shown = [dict(r, status=_shorten(r.get("status", ""))) for r in rows]
  sections = header + ["## Summary", "\n".join(_summary_lines(rows)) or "(no case ran)",
                       "## Cases", common.markdown_table(shown, _SUMMARY_COLUMNS, _HEADERS),
                       "## All columns", common.markdown_table(shown, _COLUMNS, _HEADERS),
                       "## Notes", notes]
  profiled = [r for r in rows if r.get("profile")]
  if profiled:
    sections += ["## Where the step's time goes",
                 f"XLA op times of {settings['profile_steps']} more steps per case under the JAX profiler, "
                 "by op kind (`lra_wavelet.bench.profile`), summed over the executing threads."]
    sections += ["\n".join(profile.markdown_lines(
        f"{r['task']} / {r['preset']} / {r['scale']}", [profile.OpKindTime(**t) for t in r["profile"]],
        1e3 / r["steps_per_s"])) for r in profiled]
  return common.write_markdown(results_dir / "bench_train.md",
                               "Training throughput: whole train steps", record, sections)


def _child_main(payload: str) -> None:
  """Entry of the per-case process: measure one case and print its row as one marked JSON line."""
  allocator.reuse_freed_memory()  # before JAX starts its threads, as the binary does
  request = json.loads(payload)
  limit = request["memory_limit"]
  resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
  case = request["case"]
  case["overrides"] = tuple(tuple(item) for item in case["overrides"])
  row = measure_case(Case(**case), **request["settings"])
  print(_RESULT_MARKER + json.dumps(row, default=float), flush=True)


if __name__ == "__main__":
  _child_main(sys.argv[1])
