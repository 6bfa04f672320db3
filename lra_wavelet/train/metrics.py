"""Where training metrics go: ``metrics.jsonl`` (one JSON object per log) and TensorBoard
event files (written with the tensorboard package's own event writer; no TensorFlow needed).

On resume at step s, ``MetricsWriter`` drops the lines logged after s by the interrupted
run, so the file reads like one uninterrupted run.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Mapping

from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter


class MetricsWriter:
  """Appends metrics to ``metrics.jsonl`` and TensorBoard; with ``enabled=False`` (every
  process but the first of a multi-process run) it writes nothing."""

  def __init__(self, workdir: Path, resume_step: int = 0, enabled: bool = True):
    self.path = Path(workdir) / "metrics.jsonl"
    self.enabled = enabled
    if enabled:
      self._truncate_after(resume_step)
    self._tb = EventFileWriter(str(Path(workdir) / "tensorboard")) if enabled else None

  def _truncate_after(self, step: int) -> None:
    if not self.path.exists():
      return
    kept = [l for l in self.path.read_text().splitlines() if l.strip() and json.loads(l)["step"] <= step]
    tmp = self.path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(l + "\n" for l in kept))
    os.replace(tmp, self.path)

  def write(self, step: int, metrics: Mapping[str, Any]) -> None:
    if not self.enabled:
      return
    record = {"step": int(step), **{k: float(v) for k, v in metrics.items()}}
    with open(self.path, "a") as f:
      f.write(json.dumps(record) + "\n")
    values = [summary_pb2.Summary.Value(tag=k, simple_value=float(v)) for k, v in metrics.items()]
    self._tb.add_event(event_pb2.Event(wall_time=time.time(), step=int(step),
                                       summary=summary_pb2.Summary(value=values)))

  def flush(self) -> None:
    if self._tb is not None:
      self._tb.flush()

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()


def read_metrics(workdir: Path) -> list[dict[str, float]]:
  path = Path(workdir) / "metrics.jsonl"
  return [json.loads(l) for l in path.read_text().splitlines() if l.strip()] if path.exists() else []
