"""Write a reproduced table: ``results/<table>_<scale>.md`` and ``.csv``, plus PNG plots.

Per cell: our test accuracy as mean ± sample standard deviation over the seeds that finished,
the paper's number, the difference in points, wall and training time, parameter count, and
the status (with the error of a failed cell). Plots: accuracy per task (bars; the paper's
numbers as markers), accuracy against training time, and for token tasks (LEGO) accuracy per
position. Every file carries its provenance: command, date, git commit, package versions and
the machines the cells ran on (taken from the cells' results.json).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import platform
import statistics
import textwrap
from pathlib import Path
from typing import Sequence

from lra_wavelet import provenance
from lra_wavelet.reproduce.runner import TINY_REPRODUCE_STEPS, CellResult
from lra_wavelet.reproduce.tables import Table

TASK_LABELS = {"listops": "ListOps", "text": "Text", "retrieval": "Retrieval", "image": "Image",
               "pathfinder": "Pathfinder", "lego": "LEGO"}


@dataclasses.dataclass
class CellSummary:
  """One (task, preset) cell aggregated over seeds; accuracies in %."""
  task: str
  preset: str
  label: str
  paper: float | None
  accuracies: list[float]
  seeds: list[int]
  status: str                 # "ok" (all seeds finished) | "partial" | "failed" | "not run"
  errors: list[str]
  val_accuracy: float | None
  majority_rate: float | None
  train_seconds: float | None
  wall_seconds: float | None
  num_params: int | None
  steps: int | None
  workdirs: list[str]
  accuracy_by_position: list[float] | None

  @property
  def mean(self) -> float | None:
    return statistics.fmean(self.accuracies) if self.accuracies else None

  @property
  def std(self) -> float | None:
    return statistics.stdev(self.accuracies) if len(self.accuracies) > 1 else None

  @property
  def diff(self) -> float | None:
    return None if self.mean is None or self.paper is None else self.mean - self.paper


def _mean(values: Sequence[float]) -> float | None:
  values = [v for v in values if v is not None]
  return statistics.fmean(values) if values else None


def summarize(table: Table, results: Sequence[CellResult]) -> list[CellSummary]:
  """Group cell results by (task, preset), in the table's row order, tasks in table order."""
  summaries = []
  for task in table.tasks:
    for row in table.rows:
      cells = [r for r in results if r.task == task and r.preset == row.preset]
      if not cells:
        continue
      ok = [c for c in cells if c.status in ("done", "cached") and c.results]
      failed = [c for c in cells if c.status == "failed"]
      status = ("ok" if len(ok) == len(cells) else "partial" if ok else "failed" if failed else "not run")
      res = [c.results for c in ok]
      positions = [r["test_accuracy_by_position"] for r in res if r.get("test_accuracy_by_position")]
      summaries.append(CellSummary(
          task=task, preset=row.preset, label=row.label, paper=table.paper(row.preset, task),
          accuracies=[100 * r["test_accuracy"] for r in res], seeds=[c.seed for c in ok],
          status=status, errors=sorted({c.error for c in cells if c.error and c.status != "cached"}),
          val_accuracy=_mean([100 * r["val_accuracy"] for r in res]),
          majority_rate=_mean([100 * r["test_majority_rate"] for r in res]),
          train_seconds=_mean([r["train_seconds"] for r in res]),
          wall_seconds=_mean([c.wall_seconds for c in ok if c.wall_seconds]),
          num_params=res[0]["num_params"] if res else None, steps=res[0]["steps"] if res else None,
          workdirs=[c.workdir for c in cells if c.workdir],
          accuracy_by_position=[100 * statistics.fmean(p) for p in zip(*positions)] if positions else None))
  return summaries


def _pct(value: float | None, std: float | None = None) -> str:
  if value is None:
    return "—"
  return f"{value:.2f}" + (f" ± {std:.2f}" if std is not None else "")


def _signed(value: float | None) -> str:
  return "—" if value is None else f"{value:+.2f}"


def _seconds(value: float | None) -> str:
  return "—" if value is None else f"{value:.0f}"


def _shown_path(path: str) -> str:
  """``path`` relative to the current folder when it lies below it (tables carry no home paths)."""
  try:
    return str(Path(path).relative_to(Path.cwd()))
  except ValueError:
    return path


def _escape(text: str) -> str:
  return text.replace("|", "\\|").replace("\n", " ")


def provenance_lines(results: Sequence[CellResult], command: str) -> list[str]:
  """Command, date, commit, versions, and the machines the cells ran on."""
  machines = {json.dumps(r.results["machine"], sort_keys=True) for r in results if r.results and "machine" in r.results}
  machine_text = "; ".join(
      f"{m['device_count']} x {m['device_kind']} ({m['platform']}) on {m['host']}, {m['cpu']}, "
      f"{m['cpu_count']} CPUs, Python {m['python']}" for m in map(json.loads, sorted(machines)))
  versions = provenance.package_versions()
  return [
      f"- command: `{command}`",
      f"- date: {provenance.now()}; git commit: {provenance.git_commit()}",
      f"- machine: {machine_text or 'no finished cell (report written on ' + platform.node() + ')'}",
      "- versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
  ]


def markdown(table: Table, scale: str, summaries: Sequence[CellSummary], results: Sequence[CellResult],
             *, command: str, overrides: dict[str, str]) -> str:
  tasks = [t for t in table.tasks if any(s.task == t for s in summaries)]
  by_key = {(s.task, s.preset): s for s in summaries}
  seeds = sorted({r.seed for r in results})
  lines = [f"# {table.title} — scale `{scale}`", "",
           f"Paper: {table.source}.", ""]
  if table.notes:
    lines += [table.notes, ""]
  lines += [
      f"Ours: test accuracy (%) of the best-validation checkpoint, mean ± sample std over seeds "
      f"{', '.join(map(str, seeds))}; Δ = ours − paper in points. At scale `{scale}` the models, "
      f"data and training budgets are far smaller than the paper's"
      + (" (tiny: a smoke test of the pipeline, not a reproduction)" if scale == "tiny" else "")
      + ", so compare rankings rather than absolute numbers."
      + (f" Overrides on every cell: `{', '.join(f'{k}={v}' for k, v in overrides.items())}`." if overrides else "")
      + " Train s / Wall s: wall-clock seconds of the training steps / of the whole cell process (compile, "
        "data, evaluation included) on the machine below; on a shared machine they are noisy."
      + (f" Tiny-scale reproduce budget: at most {TINY_REPRODUCE_STEPS} training steps per cell "
         f"(`--overrides=num_train_steps=N` changes it)." if scale == "tiny" and "num_train_steps" not in overrides
         else ""),
      "", *provenance_lines(results, command), "", "## Accuracy (%): ours | paper", "",
      "| Model | " + " | ".join(f"{TASK_LABELS.get(t, t)} ours | paper" for t in tasks)
      + (" | Avg ours | Avg paper |" if len(tasks) > 1 else " |"),
      "|---|" + "---:|---:|" * len(tasks) + ("---:|---:|" if len(tasks) > 1 else "")]
  for row in table.rows:
    cells = [by_key.get((t, row.preset)) for t in tasks]
    if not any(cells):
      continue
    parts = [row.label]
    for task, s in zip(tasks, cells):
      ours = _pct(s.mean, s.std) if s and s.mean is not None else (s.status if s else "—")
      parts += [ours, _pct(table.paper(row.preset, task))]
    if len(tasks) > 1:
      means = [s.mean if s else None for s in cells]
      parts += [_pct(statistics.fmean(means)) if all(m is not None for m in means) else "—",
                _pct(table.paper_average(row.preset, tuple(tasks)))]
    lines.append("| " + " | ".join(parts) + " |")

  lines += ["", "## Cells", "",
            "| Task | Model | Preset | Seeds | Ours | Paper | Δ | Val | Majority | Train s | Wall s | "
            "Params | Steps | Status |",
            "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
  for s in summaries:
    status = s.status if not s.errors else f"{s.status}: {'; '.join(s.errors)}"
    lines.append("| " + " | ".join([
        TASK_LABELS.get(s.task, s.task), s.label, f"`{s.preset}`", ",".join(map(str, s.seeds)) or "—",
        _pct(s.mean, s.std), _pct(s.paper), _signed(s.diff), _pct(s.val_accuracy), _pct(s.majority_rate),
        _seconds(s.train_seconds), _seconds(s.wall_seconds),
        f"{s.num_params:,}" if s.num_params else "—", str(s.steps or "—"), _escape(status)]) + " |")
  failed = [r for r in results if r.status == "failed"]
  if failed:
    lines += ["", "## Failed cells", ""]
    lines += [f"- {r.task}/{r.preset} seed {r.seed}: {_escape(r.error)}"
              + (f" (log: `{_shown_path(r.workdir)}/train.log`)" if r.workdir else "") for r in failed]
  return "\n".join(lines) + "\n"


CSV_FIELDS = ("table", "scale", "task", "preset", "label", "status", "seeds", "accuracy_mean", "accuracy_std",
              "accuracies", "paper", "diff", "val_accuracy", "majority_rate", "train_seconds", "wall_seconds",
              "num_params", "steps", "errors", "workdirs")


def _round(value: float | None) -> float | None:
  return None if value is None else round(value, 4)


def csv_text(table: Table, scale: str, summaries: Sequence[CellSummary]) -> str:
  buffer = io.StringIO()
  writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS)
  writer.writeheader()
  for s in summaries:
    writer.writerow({
        "table": table.name, "scale": scale, "task": s.task, "preset": s.preset, "label": s.label,
        "status": s.status, "seeds": ";".join(map(str, s.seeds)), "accuracy_mean": _round(s.mean),
        "accuracy_std": _round(s.std), "accuracies": ";".join(f"{a:.4f}" for a in s.accuracies),
        "paper": s.paper, "diff": _round(s.diff), "val_accuracy": _round(s.val_accuracy),
        "majority_rate": _round(s.majority_rate), "train_seconds": _round(s.train_seconds),
        "wall_seconds": _round(s.wall_seconds), "num_params": s.num_params, "steps": s.steps,
        "errors": " | ".join(s.errors), "workdirs": ";".join(map(_shown_path, s.workdirs))})
  return buffer.getvalue()


def _save(fig, path: Path, footer: str) -> Path:
  """Provenance under the axes, then write and close the figure."""
  lines = footer.count("\n") + 1
  fig.text(0.01, 0.01, footer, fontsize=5, va="bottom", family="monospace")
  fig.tight_layout(rect=(0, 0.025 + 0.02 * lines, 1, 1))
  fig.savefig(path, dpi=120)
  return path


def plots(table: Table, scale: str, summaries: Sequence[CellSummary], footer: str, out_dir: Path) -> list[Path]:
  """PNG plots of the finished cells (none when no cell finished)."""
  done = [s for s in summaries if s.mean is not None]
  if not done:
    return []
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  stem = f"{table.name}_{scale}"
  tasks = [t for t in table.tasks if any(s.task == t for s in done)]
  presets = [r.preset for r in table.rows if any(s.preset == r.preset for s in done)]
  labels = {r.preset: r.label for r in table.rows}
  cmap = plt.get_cmap("tab10" if len(presets) <= 10 else "tab20")
  colors = {p: cmap(i % cmap.N) for i, p in enumerate(presets)}
  paths = []

  # Accuracy per task: one bar per model (std over seeds as error bar), the paper as a dash.
  fig, ax = plt.subplots(figsize=(6 + 0.5 * len(tasks) * len(presets) / 4, 4.5))
  width = 0.8 / len(presets)
  labelled: set[str] = set()
  for i, preset in enumerate(presets):
    for j, task in enumerate(tasks):
      x = j - 0.4 + width * (i + 0.5)
      s = next((s for s in done if s.task == task and s.preset == preset), None)
      if s:
        ax.bar(x, s.mean, width, yerr=s.std, capsize=2, color=colors[preset], edgecolor="k", linewidth=0.5,
               label=None if preset in labelled else labels[preset])
        labelled.add(preset)
      paper = table.paper(preset, task)
      if paper is not None:
        ax.scatter([x], [paper], marker="_", s=max(40, 900 * width), linewidths=2.5, color="k", zorder=3,
                   label=None if "paper" in labelled else "paper")
        labelled.add("paper")
  ax.set_xticks(range(len(tasks)), [TASK_LABELS.get(t, t) for t in tasks])
  ax.set_ylabel("test accuracy (%)")
  ax.set_title(f"{table.name} ({scale}): ours (bars) and the paper (dashes)")
  ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
  paths.append(_save(fig, out_dir / f"{stem}_accuracy.png", footer))
  plt.close(fig)

  # Accuracy against training time: colour = model, marker = task.
  fig, ax = plt.subplots(figsize=(8, 4.5))
  markers = "osD^vP*X"
  for s in (s for s in done if s.train_seconds):
    ax.scatter(s.train_seconds, s.mean, marker=markers[tasks.index(s.task) % len(markers)], s=30,
               color=colors[s.preset])
    ax.annotate(f"{labels[s.preset]} ({TASK_LABELS.get(s.task, s.task)})", (s.train_seconds, s.mean), fontsize=6,
                xytext=(3, 3), textcoords="offset points")
  ax.set_xscale("log")
  ax.set_xlabel("training time (s, log scale; wall clock of the training steps)")
  ax.set_ylabel("test accuracy (%)")
  ax.set_title(f"{table.name} ({scale}): accuracy vs training time")
  paths.append(_save(fig, out_dir / f"{stem}_time.png", footer))
  plt.close(fig)

  # Token tasks (LEGO): accuracy per position.
  curves = [s for s in done if s.accuracy_by_position]
  if curves:
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for s in curves:
      ax.plot(range(1, len(s.accuracy_by_position) + 1), s.accuracy_by_position, marker="o",
              color=colors[s.preset], label=labels[s.preset])
    ax.set_xlabel("position")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{table.name} ({scale}): accuracy per position")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    paths.append(_save(fig, out_dir / f"{stem}_positions.png", footer))
    plt.close(fig)
  return paths


def write(table: Table, scale: str, results: Sequence[CellResult], out_dir: str | Path, *, command: str,
          overrides: dict[str, str] | None = None) -> list[Path]:
  """Write the markdown, CSV and plots of ``results``; returns the paths written."""
  out_dir = Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  summaries = summarize(table, results)
  md = out_dir / f"{table.name}_{scale}.md"
  md.write_text(markdown(table, scale, summaries, results, command=command, overrides=overrides or {}))
  csv_path = out_dir / f"{table.name}_{scale}.csv"
  csv_path.write_text(csv_text(table, scale, summaries))
  footer = textwrap.fill(f"{command}  |  {provenance.now()}  |  git {provenance.git_commit()[:12]}  |  "
                         f"{provenance.cpu_model()}", 170)
  return [md, csv_path, *plots(table, scale, summaries, footer, out_dir)]
