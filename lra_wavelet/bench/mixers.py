"""``lra-wavelet bench``: speed and memory of token mixers, forward + backward, by length.

Each case builds a mixer through the registry, jits the gradient of ``sum(mixer(x))`` with
respect to its parameters and its input, and records the median time of several runs, the
process CPU time, and XLA's memory estimate of the compiled step. ``softmax`` (automatic
implementation) is always measured as the baseline, each of its implementations that can run
on this platform gets its own row, and PyTorch's ``scaled_dot_product_attention`` in the same
layer (q/k/v/output projections, padding mask) runs as a peer when torch is installed. All
ratios compare with ``softmax`` at the same length in the same run.

A case is skipped, with the reason in the table, when XLA's estimate exceeds the memory
available, when its run time predicted from shorter lengths exceeds the time budget, or when
its mixer is not registered (the default list names mixers that other modules provide).
The pseudo-mixer ``wavelet_transform`` (options as for ``wavspa``) times a WavSpA layer's
transforms alone: forward transform, band masks and inverse, without the inner mixer.
"""

from __future__ import annotations

import ast
import dataclasses
import logging
import time
from pathlib import Path
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lra_wavelet import allocator, attention
from lra_wavelet.attention import softmax as softmax_module
from lra_wavelet.bench import common
from lra_wavelet.wavelets import learnable

BASELINE = "softmax"
# Standard exact attention that materialises the [N, N] scores (XLA's kernel): the baseline
# the papers' speed and memory figures are quoted against, reported beside BASELINE.
DENSE_BASELINE = "softmax:implementation=xla"
TORCH_PEER = "torch_sdpa"

# The mixers `lra-wavelet bench` measures when no --mixers are given.
DEFAULT_MIXERS = [
    "softmax",
    "linear",
    "performer",
    "wavspa:inner=softmax;levels=1;wavelet=db2",
    "wavelet_transform:levels=1;wavelet=db2",
    "wavspa:inner=linear",
    "wavspa:inner=performer",
    "mra",
    "mra_sparse",
    "wersa",
]

# A case is skipped when this multiple of its XLA memory estimate exceeds the memory
# available: XLA:CPU's resident memory was measured at up to twice its estimate (dense
# attention at N=4096: 5.2 GB for a 2.6 GB estimate), and other work shares the machine.
_MEMORY_SAFETY = 2.5

_COLUMNS = ("mixer", "impl", "n", "status", "time_s", "min_s", "cpu_s", "runs", "ratio",
            "cpu_ratio", "dense_ratio", "dense_memory_ratio", "xla_temp_mb", "xla_peak_mb",
            "rss_growth_mb", "compile_s")
_HEADERS = {
    "impl": "implementation", "time_s": "time s (median)", "min_s": "min s", "cpu_s": "CPU s",
    "ratio": "x softmax", "cpu_ratio": "x softmax (CPU)", "dense_ratio": "x dense softmax",
    "dense_memory_ratio": "dense softmax peak / peak", "xla_temp_mb": "XLA temp MB",
    "xla_peak_mb": "XLA peak MB", "rss_growth_mb": "RSS growth MB", "compile_s": "compile s",
}


def _parse_value(text: str) -> Any:
  lowered = text.strip().lower()
  if lowered in ("true", "false"):
    return lowered == "true"
  if lowered == "none":
    return None
  try:
    return ast.literal_eval(text.strip())
  except (ValueError, SyntaxError):
    return text.strip()


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
  """"name:key=value;key=value" -> (name, {key: value}); values parsed as Python literals."""
  name, _, rest = spec.partition(":")
  name = name.strip()
  if not name:
    raise ValueError(f"mixer spec {spec!r} has no name; write name or name:key=value;key=value")
  options = {}
  for item in filter(None, (part.strip() for part in rest.split(";"))):
    key, eq, value = item.partition("=")
    if not eq or not key.strip():
      raise ValueError(f"mixer spec {spec!r}: option {item!r} is not key=value")
    options[key.strip()] = _parse_value(value)
  return name, options


@dataclasses.dataclass
class _Case:
  label: str
  name: str
  options: dict[str, Any]


def _implementation_rows() -> list[str]:
  """One spec per softmax implementation that can run on this platform."""
  specs = ["softmax:implementation=blockwise", "softmax:implementation=xla",
           "softmax:implementation=dense"]
  backend = jax.default_backend()
  if backend in ("gpu", "cuda"):
    specs.insert(0, "softmax:implementation=cudnn")
  if backend == "tpu":
    specs.insert(0, "softmax:implementation=pallas")
  return specs


def _cases(mixers: Sequence[str]) -> list[_Case]:
  """The baseline, its implementations, then the requested mixers, each spec once.

  ``TORCH_PEER`` is not a JAX mixer: naming it asks for the PyTorch peer row, which
  ``run_mixer_bench`` adds whenever torch is installed, so it is left out here.
  """
  cases, seen = [], {TORCH_PEER}
  for spec in [BASELINE, *_implementation_rows(), *mixers]:
    spec = spec.strip()
    if spec in seen:
      continue
    seen.add(spec)
    name, options = parse_spec(spec)
    cases.append(_Case(spec, name, options))
  return cases


def _torch():
  try:
    import torch  # pylint: disable=import-outside-toplevel
    return torch
  except ImportError:
    return None


class WaveletRoundTrip(nnx.Module):
  """The part of a ``wavspa`` layer that is not its inner mixer: forward transform, band
  masks, inverse transform (``wavelet``/``levels``/``wlen``/``mode`` as for ``wavspa``).
  Benchmarked as the pseudo-mixer ``TRANSFORM_CASE`` to give the transforms' share of a layer."""

  def __init__(self, *, dim: int, rngs: nnx.Rngs, wavelet: str = "db2", levels: int = 1,
               wlen: int | None = None, mode: str | None = None):
    self.transform = learnable.build_transform(wavelet, dim=dim, wlen=wlen, levels=levels, mode=mode,
                                               rngs=rngs)

  def __call__(self, x: jax.Array, mask: jax.Array, *, deterministic: bool = True) -> jax.Array:
    bands = self.transform.forward(x, mask)
    kept = [jnp.where(m[..., None], b, 0.0) for b, m in zip(bands, self.transform.band_masks(mask))]
    return self.transform.inverse(kept, x.shape[1])


TRANSFORM_CASE = "wavelet_transform"


def _build_layer(case: _Case, dim: int, num_heads: int) -> nnx.Module:
  if case.name == TRANSFORM_CASE:
    return WaveletRoundTrip(dim=dim, rngs=nnx.Rngs(0), **case.options)
  return attention.build(case.name, dim=dim, num_heads=num_heads, rngs=nnx.Rngs(0), **case.options)


def _jax_step(case: _Case, n: int, batch: int, num_heads: int, head_dim: int, dtype):
  """(compiled step, its arguments) for one mixer at length n."""
  dim = num_heads * head_dim
  layer = _build_layer(case, dim, num_heads)
  graphdef, params, rest = nnx.split(layer, nnx.Param, ...)
  params = jax.tree.map(lambda a: a.astype(dtype), params)
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((batch, n, dim), dtype=np.float32), dtype)
  mask = jnp.ones((batch, n), bool)

  def loss(params, x, mask):
    model = nnx.merge(graphdef, params, rest)
    return jnp.sum(model(x, mask, deterministic=True).astype(jnp.float32))

  step = jax.jit(jax.grad(loss, argnums=(0, 1)))
  return step.lower(params, x, mask).compile(), (params, x, mask)


def _torch_step(torch, n: int, batch: int, num_heads: int, head_dim: int, dtype: str):
  """A no-argument function running forward + backward of the same layer in PyTorch."""
  dim = num_heads * head_dim
  torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
  torch.manual_seed(0)
  projections = torch.nn.ModuleList(
      [torch.nn.Linear(dim, dim, dtype=torch_dtype) for _ in range(4)])
  x = torch.randn(batch, n, dim, dtype=torch_dtype, requires_grad=True)
  mask = torch.ones(batch, 1, 1, n, dtype=torch.bool)

  def heads(t):
    return t.view(batch, n, num_heads, head_dim).transpose(1, 2)

  def run():
    query, key, value, out = projections
    y = torch.nn.functional.scaled_dot_product_attention(heads(query(x)), heads(key(x)), heads(value(x)),
                                                         attn_mask=mask)
    loss = out(y.transpose(1, 2).reshape(batch, n, dim)).float().sum()
    projections.zero_grad(set_to_none=True)
    x.grad = None
    loss.backward()

  return run


def _skip(row: dict, reason: str) -> dict:
  row["status"] = f"skipped: {reason}"
  logging.info("bench %s n=%d %s", row["mixer"], row["n"], row["status"])
  return row


def _measure(run, row: dict, repeats: int, max_seconds: float, history: list) -> dict:
  rss_before = common.peak_rss_bytes()
  timing = common.time_fn(run, repeats=repeats, warmup=1, max_seconds=max_seconds)
  row.update(status="ok", time_s=timing.median, min_s=timing.minimum, cpu_s=timing.cpu_median,
             runs=len(timing.wall), rss_growth_mb=(common.peak_rss_bytes() - rss_before) / common.MB)
  history.append((row["n"], timing.median))
  logging.info("bench %s n=%d: %.4f s (CPU %.4f s)", row["mixer"], row["n"], timing.median, timing.cpu_median)
  return row


def _failure(error: Exception) -> str:
  message = str(error).splitlines()[0] if str(error) else ""
  return f"failed: {type(error).__name__}: {message}"


def _softmax_implementation(case: _Case, batch, num_heads, n, head_dim, dtype) -> str:
  """What a softmax row runs: its forced implementation, or what "auto" picks here."""
  implementation = case.options.get("implementation", "auto")
  if implementation != "auto":
    return implementation
  shape = jax.ShapeDtypeStruct((batch, num_heads, n, head_dim), dtype)
  chosen = softmax_module.choose_implementation(shape, shape, shape, jnp.ones((batch, n), bool),
                                                causal=bool(case.options.get("causal")))
  return f"auto: {chosen}"


def run_mixer_bench(mixers: Sequence[str], lengths: Sequence[int] = (1024, 2048, 4096, 8192, 16384),
                    batch: int = 1, num_heads: int = 8, head_dim: int = 64, dtype: str = "float32",
                    repeats: int = 5, results_dir: str | Path = "results",
                    max_seconds_per_case: float = 120.0, torch_peer: bool = True) -> Path:
  """Benchmark forward + backward of ``mixers`` at each length; write the tables and plot.

  Args:
    mixers: registry names or "name:key=value;key=value" specs. ``softmax`` and its
      implementations are always added; names that are not registered are reported as
      skipped.
    lengths: sequence lengths N.
    batch, num_heads, head_dim: layer shape; the model width is num_heads * head_dim.
    dtype: "float32" or "bfloat16" (inputs and parameters).
    repeats: timed runs per case (after one warm-up run); the median is reported.
    results_dir: where bench_mixers.md, bench_mixers.csv and bench_mixers.png go.
    max_seconds_per_case: time budget of one case: a case whose single run is predicted
      (from shorter lengths) to exceed it is skipped, and repeats are cut to fit it.
    torch_peer: also measure PyTorch's SDPA layer when torch is importable.

  Returns:
    Path of the markdown table.
  """
  if dtype not in ("float32", "bfloat16"):
    raise ValueError(f"dtype must be float32 or bfloat16; got {dtype!r}")
  if not lengths or any(int(n) < 1 for n in lengths):
    raise ValueError(f"lengths must be positive integers; got {list(lengths)}")
  if repeats < 1:
    raise ValueError(f"repeats must be at least 1; got {repeats}")
  lengths = sorted(int(n) for n in lengths)
  jax_dtype = jnp.dtype(dtype)
  cases = _cases(mixers)
  peer_asked = any(spec.strip() == TORCH_PEER for spec in mixers)
  torch = _torch() if torch_peer or peer_asked else None
  if peer_asked and torch is None:
    logging.warning("bench: %s asked for but torch is not installed (pip install torch); "
                    "measuring the JAX mixers only", TORCH_PEER)
  labels = [c.label for c in cases] + ([TORCH_PEER] if torch is not None else [])
  history: dict[str, list] = {label: [] for label in labels}
  too_slow: dict[str, str] = {}

  def over_budget(label: str, n: int) -> str | None:
    """Why the case (label, n) is skipped for time, or None; once too slow, always too slow."""
    predicted = common.predicted_seconds(history[label], n)
    if label not in too_slow and predicted is not None and predicted > max_seconds_per_case:
      too_slow[label] = (f"predicted {predicted:.0f} s per run at n={n} exceeds the "
                         f"{max_seconds_per_case:.0f} s budget")
    return too_slow.get(label)

  rows = []
  for n in lengths:
    for case in cases:
      row = {"mixer": case.label, "n": n}
      rows.append(row)
      try:
        if case.name != TRANSFORM_CASE:
          attention.get(case.name)
      except ValueError:
        _skip(row, "mixer not registered")
        continue
      if case.name == BASELINE:
        row["impl"] = _softmax_implementation(case, batch, num_heads, n, head_dim, jax_dtype)
      try:
        # Compile first: XLA's memory estimate is worth reporting even for skipped cases.
        start = time.perf_counter()
        compiled, args = _jax_step(case, n, batch, num_heads, head_dim, jax_dtype)
        row["compile_s"] = time.perf_counter() - start
        memory = common.xla_memory(compiled)
        if memory is not None:
          row["xla_temp_mb"] = memory.temp / common.MB
          row["xla_peak_mb"] = memory.peak / common.MB
          allocator.release_free_memory()  # what earlier cases freed counts as available
          available = common.available_memory_bytes()
          if memory.peak * _MEMORY_SAFETY > available:
            _skip(row, f"XLA estimate {memory.peak / 2**30:.1f} GiB (x{_MEMORY_SAFETY} margin) "
                       f"exceeds the {available / 2**30:.1f} GiB available")
            continue
        reason = over_budget(case.label, n)
        if reason:
          _skip(row, reason)
          continue
        _measure(lambda: jax.block_until_ready(compiled(*args)), row, repeats, max_seconds_per_case,
                 history[case.label])
      except Exception as e:  # pylint: disable=broad-except
        # One broken mixer must not cost the whole table: record why and go on.
        _skip(row, _failure(e))
    if torch is not None:
      row = {"mixer": TORCH_PEER, "n": n, "impl": f"torch {torch.__version__}"}
      rows.append(row)
      reason = over_budget(TORCH_PEER, n)
      if reason:
        _skip(row, reason)
        continue
      try:
        _measure(_torch_step(torch, n, batch, num_heads, head_dim, dtype), row, repeats,
                 max_seconds_per_case, history[TORCH_PEER])
      except Exception as e:  # pylint: disable=broad-except
        _skip(row, _failure(e))
  _add_ratios(rows)
  return _write(rows, labels, lengths, results_dir, batch=batch, num_heads=num_heads,
                head_dim=head_dim, dtype=dtype, repeats=repeats, max_seconds=max_seconds_per_case,
                torch_version=torch.__version__ if torch is not None else None)


def _add_ratios(rows: list[dict]) -> None:
  """Time ratios against BASELINE and DENSE_BASELINE at the same N, and how many times less
  peak memory (XLA's estimate) a case needs than DENSE_BASELINE, whose estimate is known even
  where it is too large to run."""
  def by_length(label: str, ran_only: bool = True) -> dict[int, dict]:
    return {r["n"]: r for r in rows
            if r["mixer"] == label and (r.get("status") == "ok" or not ran_only)}
  baseline, dense = by_length(BASELINE), by_length(DENSE_BASELINE)
  dense_estimate = by_length(DENSE_BASELINE, ran_only=False)
  for row in rows:
    estimate = dense_estimate.get(row["n"], {}).get("xla_peak_mb")
    if estimate and row.get("xla_peak_mb") and row["mixer"] != DENSE_BASELINE:
      row["dense_memory_ratio"] = estimate / row["xla_peak_mb"]
    if row.get("status") != "ok":
      continue
    if row["n"] in baseline:
      base = baseline[row["n"]]
      row["ratio"] = row["time_s"] / base["time_s"]
      row["cpu_ratio"] = row["cpu_s"] / base["cpu_s"]
    if row["n"] in dense:
      row["dense_ratio"] = row["time_s"] / dense[row["n"]]["time_s"]


def _write(rows, labels, lengths, results_dir, *, batch, num_heads, head_dim, dtype, repeats,
           max_seconds, torch_version) -> Path:
  results_dir = Path(results_dir)
  record = common.provenance_record(("torch",))
  common.write_csv(results_dir / "bench_mixers.csv", rows, _COLUMNS)
  summary = []
  for label in labels:
    line = {"mixer": label}
    for r in rows:
      if r["mixer"] == label:
        line[str(r["n"])] = r["time_s"] if r.get("status") == "ok" else "skipped"
    summary.append(line)
  series = {label: [(r["n"], r["time_s"]) for r in rows if r["mixer"] == label and r.get("status") == "ok"]
            for label in labels}
  plot = common.plot_loglog(results_dir / "bench_mixers.png", series, xlabel="sequence length N",
                            ylabel="forward + backward time (s, median)",
                            title=f"token mixers, batch {batch}, {num_heads} heads x {head_dim}, {dtype}")
  settings = (f"Forward + backward (gradient of sum(output) w.r.t. parameters and input) of one "
              f"mixer layer: batch {batch}, {num_heads} heads of dim {head_dim} (width "
              f"{num_heads * head_dim}), {dtype}, all tokens valid (the padding mask is still "
              f"applied). Median of {repeats} runs after one warm-up (fewer when a case would "
              f"pass the {max_seconds:.0f} s budget).")
  notes = "\n".join([
      "Columns: `time s` is the median wall-clock time and `CPU s` the median process CPU time "
      "(all threads; steadier than wall time when other work shares the machine). `x softmax` "
      "divides by the `softmax` row (automatic implementation) at the same N in this run, "
      f"`x dense softmax` by the `{DENSE_BASELINE}` row (standard attention with the [N, N] "
      "scores in memory, the baseline of the papers' speed and memory figures), and "
      "`dense softmax peak / peak` is how many times less XLA peak memory the case needs than "
      f"`{DENSE_BASELINE}`, whose estimate is known even at lengths where it cannot run. "
      "`XLA temp MB` is the compiled step's temporary buffers (activations and workspace) and "
      "`XLA peak MB` adds its arguments and outputs, both from XLA's memory analysis; a case "
      f"whose estimate (times a safety margin of {_MEMORY_SAFETY}) passes the available memory is "
      "skipped and only the estimate is shown. "
      "`RSS growth MB` is how far the process's peak resident memory rose during the case "
      "(zero when an earlier case already reached more).",
      "",
      f"`{TORCH_PEER}`: the same layer in PyTorch {torch_version} (four nn.Linear projections, "
      "`scaled_dot_product_attention` with the padding mask), gradients w.r.t. parameters and "
      "input." if torch_version else f"`{TORCH_PEER}`: not measured (torch is not installed).",
  ])
  sections = [settings, "## Median time (s) by length", common.markdown_table(
      summary, ["mixer"] + [str(n) for n in lengths]), "## All cases",
              common.markdown_table(rows, _COLUMNS, _HEADERS), "## Notes", notes]
  if plot is not None:
    sections.insert(1, f"![time vs length]({plot.name})")
  return common.write_markdown(results_dir / "bench_mixers.md",
                               "Token mixers: forward + backward time and memory", record, sections)
