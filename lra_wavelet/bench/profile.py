"""Where a compiled step's time goes: XLA op times from a JAX profiler trace, by op kind.

``profile_calls`` runs a function a few times under ``jax.profiler`` and reads the trace back
with ``jax.profiler.ProfileData`` (no TensorBoard needed). ``op_kind_times`` sums the
duration of every op XLA executed, per call, grouped by the op's kind: its HLO name without
the ``.N`` suffix (``ynn_fusion.24`` and ``ynn_fusion.3`` are both ``ynn_fusion``; on the
CPU these are the fusions handed to YNNPACK, mostly dots; ``copy_bitcast_fusion`` are
layout changes such as transposes; ``subtract_exponential_fusion`` the softmax exps).

Times are summed over the executing threads, so on a 2-core CPU the total per call is up to
twice the wall time; ``share`` is each kind's part of that total. Ops are taken from the
XLA CPU runtime's worker threads (thread names containing ``XLAEigen`` or
``PjRtCpuClient``) and from the ``XLA Ops`` line of accelerator planes; the executor's own
umbrella events (``ThunkExecutor::...``) are left out, since they contain the ops; time a
worker spends waiting inside a parallel op shows as its own kind (``SlinkyThreadPool::Await``).
"""

from __future__ import annotations

import collections
import re
import tempfile
from pathlib import Path
from typing import Any, Callable, NamedTuple

_CPU_OP_THREADS = ("XLAEigen", "PjRtCpuClient")
_DEVICE_OP_LINE = "XLA Ops"
_UMBRELLA_PREFIX = "ThunkExecutor::"


class OpKindTime(NamedTuple):
  """One op kind: milliseconds per call (summed over threads), op events per call (an op split
  across threads counts once per thread), and its share of the total."""
  kind: str
  ms_per_call: float
  ops_per_call: float
  share: float


def op_kind(name: str) -> str:
  """HLO op name -> its kind: ``"ynn_fusion.24"`` -> ``"ynn_fusion"``, ``"dot"`` -> ``"dot"``."""
  return re.sub(r"\.\d+$", "", name)


def _is_op_line(plane_name: str, line_name: str) -> bool:
  if plane_name.startswith("/device:"):
    return line_name == _DEVICE_OP_LINE
  return any(tag in line_name for tag in _CPU_OP_THREADS)


def op_kind_times(trace_file: str | Path, calls: int) -> list[OpKindTime]:
  """Op times of ``calls`` traced calls in ``trace_file`` (an ``.xplane.pb``), largest first."""
  from jax.profiler import ProfileData  # pylint: disable=import-outside-toplevel
  if calls < 1:
    raise ValueError(f"calls must be at least 1; got {calls}")
  data = ProfileData.from_file(str(trace_file))
  total_ns: collections.Counter = collections.Counter()
  count: collections.Counter = collections.Counter()
  for plane in data.planes:
    for line in plane.lines:
      if not _is_op_line(plane.name, line.name):
        continue
      for event in line.events:
        if event.name.startswith(_UMBRELLA_PREFIX):
          continue
        kind = op_kind(event.name)
        total_ns[kind] += event.duration_ns
        count[kind] += 1
  grand = sum(total_ns.values()) or 1
  return [OpKindTime(kind, ns / calls / 1e6, count[kind] / calls, ns / grand)
          for kind, ns in total_ns.most_common()]


def profile_calls(fn: Callable[[], Any], calls: int = 2, trace_dir: str | Path | None = None
                  ) -> list[OpKindTime]:
  """Run ``fn`` (which must block until its results are ready) ``calls`` times under the JAX
  profiler and return its op times per call (``op_kind_times``). ``fn`` should already be
  compiled and warm, so that the trace holds the steady state only. The trace goes to
  ``trace_dir`` (a temporary folder, removed afterwards, when None)."""
  import jax  # pylint: disable=import-outside-toplevel
  with tempfile.TemporaryDirectory() as scratch:
    folder = Path(trace_dir or scratch)
    jax.profiler.start_trace(str(folder))
    try:
      for _ in range(calls):
        fn()
    finally:
      jax.profiler.stop_trace()
    traces = sorted(folder.rglob("*.xplane.pb"), key=lambda p: p.stat().st_mtime)
    if not traces:
      raise RuntimeError(f"the JAX profiler wrote no .xplane.pb under {folder}")
    return op_kind_times(traces[-1], calls)


def markdown_lines(label: str, times: list[OpKindTime], wall_ms: float, top: int = 12) -> list[str]:
  """A results-page section: the ``top`` op kinds of one case, with the step's wall time."""
  total = sum(t.ms_per_call for t in times)
  lines = [f"### {label}", "",
           f"Wall time per step {wall_ms:.0f} ms; op time summed over threads {total:.0f} ms.", "",
           "| op kind | ms/step (all threads) | ops/step | share |", "|---|---|---|---|"]
  for t in times[:top]:
    lines.append(f"| {t.kind} | {t.ms_per_call:.1f} | {t.ops_per_call:.0f} | {t.share:.1%} |")
  return lines
