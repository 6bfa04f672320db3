"""Shared pieces of the benchmark commands: provenance, timing, memory, tables and plots.

Every ``lra-wavelet bench`` table states where its numbers came from (machine, package
versions, commit, date), times a case as the median of several runs after a warm-up (wall
clock and process CPU time, since CPU time is the steadier number on a shared machine),
reads XLA's own memory estimate of a compiled function, and writes the same rows as
markdown, CSV and a log-log plot.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import resource
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from lra_wavelet import provenance

MB = 1024 * 1024


def provenance_record(extra_packages: Iterable[str] = ()) -> dict:
  """``provenance.record()`` plus the versions of ``extra_packages`` (e.g. peers like torch)."""
  record = provenance.record()
  record["versions"].update(provenance.package_versions(tuple(extra_packages)))
  return record


def provenance_lines(record: Mapping) -> list[str]:
  """Human-readable lines for the header of a results table."""
  machine = record["machine"]
  versions = ", ".join(f"{k} {v}" for k, v in record["versions"].items() if v != "not installed")
  return [
      f"- date: {record['date']}",
      f"- machine: {machine['cpu']} ({machine['cpu_count']} CPUs), JAX platform "
      f"{machine['platform']} ({machine['device_kind']} x{machine['device_count']}), "
      f"Python {machine['python']}, host {machine['host']}",
      f"- host memory: {machine.get('malloc', 'not recorded')}",
      f"- commit: {record['git_commit']}",
      f"- versions: {versions}",
  ]


@dataclasses.dataclass(frozen=True)
class Timing:
  """Times of the repeated runs of one case, in seconds."""
  wall: tuple[float, ...]
  cpu: tuple[float, ...]
  warmup_wall: float

  @property
  def median(self) -> float:
    return statistics.median(self.wall)

  @property
  def minimum(self) -> float:
    return min(self.wall)

  @property
  def cpu_median(self) -> float:
    return statistics.median(self.cpu)


def time_fn(fn: Callable[[], Any], *, repeats: int = 5, warmup: int = 1,
            max_seconds: float | None = None) -> Timing:
  """Run ``fn`` (which must block until its work is done) ``warmup`` times, then time it.

  With ``max_seconds``, the number of timed runs is cut (to at least one) so that they fit in
  the budget as estimated from the last warm-up run.
  """
  if repeats < 1:
    raise ValueError(f"repeats must be at least 1; got {repeats}")
  warmup_wall = 0.0
  for _ in range(max(warmup, 0)):
    start = time.perf_counter()
    fn()
    warmup_wall = time.perf_counter() - start
  if max_seconds is not None and warmup_wall > 0:
    repeats = max(1, min(repeats, int(max_seconds // warmup_wall)))
  wall, cpu = [], []
  for _ in range(repeats):
    start_cpu, start = time.process_time(), time.perf_counter()
    fn()
    wall.append(time.perf_counter() - start)
    cpu.append(time.process_time() - start_cpu)
  return Timing(tuple(wall), tuple(cpu), warmup_wall)


def predicted_seconds(points: Sequence[tuple[float, float]], n: float, default_power: float = 2.0) -> float | None:
  """Extrapolate a run time to size ``n`` from measured (size, seconds) points.

  Uses the power law through the last two points (at least linear), or ``default_power``
  from a single point; None without points.
  """
  points = [(x, t) for x, t in points if x > 0 and t > 0]
  if not points:
    return None
  (x1, t1) = points[-1]
  power = default_power
  if len(points) >= 2:
    x0, t0 = points[-2]
    if x1 != x0:
      power = max(1.0, math.log(t1 / t0) / math.log(x1 / x0))
  return t1 * (n / x1) ** power


@dataclasses.dataclass(frozen=True)
class XlaMemory:
  """XLA's memory estimate of a compiled function, in bytes."""
  argument: int
  output: int
  temp: int
  alias: int

  @property
  def peak(self) -> int:
    """Arguments + outputs + temporaries (buffers an output aliases counted once)."""
    return self.argument + self.output + self.temp - self.alias


def xla_memory(compiled) -> XlaMemory | None:
  """Memory estimate of a ``jax.jit(...).lower(...).compile()`` result (None if unavailable)."""
  try:
    stats = compiled.memory_analysis()
  except (NotImplementedError, AttributeError, RuntimeError):
    return None
  if stats is None:
    return None
  return XlaMemory(int(stats.argument_size_in_bytes), int(stats.output_size_in_bytes),
                   int(stats.temp_size_in_bytes), int(stats.alias_size_in_bytes))


def available_memory_bytes() -> int:
  """Memory the OS could give this process now (MemAvailable), or total RAM as a fallback."""
  try:
    for line in Path("/proc/meminfo").read_text().splitlines():
      if line.startswith("MemAvailable:"):
        return int(line.split()[1]) * 1024
  except OSError:
    pass
  return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def peak_rss_bytes() -> int:
  """High-water mark of this process's resident memory (grows only when a case sets a new peak)."""
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _cell(value: Any) -> str:
  if value is None:
    return ""
  if isinstance(value, float):
    if value == 0:
      return "0"
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
  return str(value)


def write_csv(path: str | Path, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> Path:
  """Rows as CSV with a header; missing values empty, floats at full precision."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  with path.open("w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    for row in rows:
      writer.writerow({c: "" if row.get(c) is None else row.get(c) for c in columns})
  return path


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str],
                   headers: Mapping[str, str] | None = None) -> str:
  """Rows as a GitHub markdown table; floats to 3 significant digits."""
  headers = headers or {}
  lines = ["| " + " | ".join(headers.get(c, c) for c in columns) + " |",
           "|" + "|".join("---" for _ in columns) + "|"]
  for row in rows:
    lines.append("| " + " | ".join(_cell(row.get(c)).replace("|", "/") for c in columns) + " |")
  return "\n".join(lines)


def write_markdown(path: str | Path, title: str, record: Mapping, sections: Sequence[str]) -> Path:
  """A results page: title, provenance lines, then the given sections (tables, notes)."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  body = [f"# {title}", "", *provenance_lines(record), ""]
  for section in sections:
    body += [section, ""]
  path.write_text("\n".join(body))
  return path


def plot_loglog(path: str | Path, series: Mapping[str, Sequence[tuple[float, float]]], *,
                xlabel: str, ylabel: str, title: str) -> Path | None:
  """One line per series on log-log axes (matplotlib Agg); None if no series has points."""
  series = {k: sorted(v) for k, v in series.items() if v}
  if not series:
    return None
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  fig, ax = plt.subplots(figsize=(8, 5.5))
  for label, points in series.items():
    xs, ys = zip(*points)
    ax.plot(xs, ys, marker="o", label=label)
  ax.set_xscale("log", base=2)
  ax.set_yscale("log")
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  ax.set_title(title, fontsize=10)
  ax.grid(True, which="both", alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path
