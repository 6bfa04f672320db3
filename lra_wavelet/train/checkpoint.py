"""Checkpoints with orbax: the latest train state for resuming, and the best by validation
accuracy for the final test evaluation.

A checkpoint holds the whole NNX state of (model, optimizer) — parameters, optimiser moments,
step counter, dropout RNG counters and non-trainable variables such as random feature
matrices — plus a small JSON record (best validation accuracy so far, elapsed train time).
Saves are synchronous and orbax writes them atomically, so a run killed at any moment
(even kill -9) resumes from the last complete checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp


class Checkpoints:
  """``workdir/checkpoints`` (latest, for resume) or ``workdir/best`` (best validation)."""

  def __init__(self, folder: Path, max_to_keep: int = 1):
    self.manager = ocp.CheckpointManager(
        Path(folder).resolve(),
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                             enable_async_checkpointing=False))

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, state: Any, record: dict[str, Any]) -> None:
    if step in self.manager.all_steps():  # a resumed run re-saving the same step
      self.manager.delete(step)
    self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                    record=ocp.args.JsonSave(record)), force=True)
    self.manager.wait_until_finished()

  def restore(self, abstract_state: Any, step: int | None = None) -> tuple[Any, dict[str, Any], int]:
    """Restore into the structure/shardings of ``abstract_state`` (from ``jax.eval_shape`` or a
    live state). Returns (state, record, step)."""
    step = self.manager.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no checkpoint in {self.manager.directory}")
    target = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)),
        abstract_state)
    restored = self.manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(target), record=ocp.args.JsonRestore()))
    return restored["state"], dict(restored["record"]), step

  def close(self) -> None:
    self.manager.close()
