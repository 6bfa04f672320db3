"""The one training loop: any task x any mixer from a config, resumable, data parallel.

Sections, in order: task and data (user errors surface here, before any compilation),
mesh, model and optimiser, checkpoint/resume, compiled steps, loop (log, evaluate, save),
final test of the best checkpoint, results.json. Train state = nnx.split((model, optimizer)):
one pytree, replicated over the mesh, donated to a jitted step that compiles once.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from flax import nnx
from tqdm import tqdm

from lra_wavelet import data as data_lib
from lra_wavelet import allocator, provenance, tasks
from lra_wavelet.models import build_model
from lra_wavelet.train.checkpoint import Checkpoints
from lra_wavelet.train.metrics import MetricsWriter
from lra_wavelet.train.optim import make_optimizer

COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}

# Dropout keys are Philox keys (Salmon et al. 2011; counter-based, passes BigCrush). On the CPU
# JAX lowers its default threefry to a rolled loop that makes several passes over every mask:
# threefry masks took ~25% of a ListOps step. Every dropout layer of the model zoo draws only
# two words per call from these keys and hashes its mask from them (lra_wavelet/dropout.py).
DROPOUT_PRNG_IMPL = "philox2x32"


class NonFiniteLossError(FloatingPointError):
  """Training produced a NaN/inf loss; the message names the step."""


# ----------------------------------------------------------------------------- loss & metrics

def weighted_cross_entropy(logits: jax.Array, targets: jax.Array, weights: jax.Array,
                           label_smoothing: float = 0.0) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Sums over weighted examples (or tokens): (loss_sum, correct_sum, weight_sum).

  logits f32[..., C]; targets int32[...] (-1 = not supervised); weights f32[...].
  """
  weights = weights * (targets >= 0)
  num_classes = logits.shape[-1]
  onehot = jax.nn.one_hot(jnp.maximum(targets, 0), num_classes)
  if label_smoothing:
    onehot = optax.smooth_labels(onehot, label_smoothing)
  losses = optax.softmax_cross_entropy(logits.astype(jnp.float32), onehot)
  correct = (jnp.argmax(logits, -1) == targets).astype(jnp.float32)
  return (losses * weights).sum(), (correct * weights).sum(), weights.sum()


def _cast_floats(tree: Any, dtype) -> Any:
  return jax.tree.map(lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)


def forward(model, batch: dict[str, jax.Array], *, deterministic: bool, compute_dtype=jnp.float32):
  """Logits of ``model`` on ``batch``; with a bf16 compute dtype the parameters are cast for
  the forward pass (gradients still reach the float32 master copy)."""
  if compute_dtype == jnp.float32:
    return model(batch["inputs"], batch.get("inputs2"), deterministic=deterministic)
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  low = nnx.merge(graphdef, _cast_floats(params, compute_dtype), rest)
  logits = low(batch["inputs"], batch.get("inputs2"), deterministic=deterministic)
  nnx.update(model, nnx.state(low, nnx.RngState))  # keep dropout RNG counters advancing
  return logits.astype(jnp.float32)


def example_weights(batch, logits_ndim: int) -> jax.Array:
  w = batch.get("weights", jnp.ones(batch["inputs"].shape[0], jnp.float32))
  return w.reshape(w.shape + (1,) * (logits_ndim - 2))


# ----------------------------------------------------------------------------- compiled steps

def make_train_step(graphdef, config):
  compute_dtype = COMPUTE_DTYPES[config.model.compute_dtype]

  def loss_fn(model, batch):
    logits = forward(model, batch, deterministic=False, compute_dtype=compute_dtype)
    w = jnp.broadcast_to(example_weights(batch, logits.ndim), batch["targets"].shape)
    loss_sum, correct, count = weighted_cross_entropy(logits, batch["targets"], w, config.label_smoothing)
    count = jnp.maximum(count, 1.0)
    return loss_sum / count, correct / count

  def step(state, batch):
    model, optimizer = nnx.merge(graphdef, state)
    (loss, accuracy), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model, batch)
    optimizer.update(model, grads)
    metrics = {"loss": loss, "accuracy": accuracy, "grad_norm": optax.global_norm(grads)}
    return nnx.state((model, optimizer)), metrics

  return jax.jit(step, donate_argnums=0)


def make_eval_step(graphdef, config):
  compute_dtype = COMPUTE_DTYPES[config.model.compute_dtype]

  def step(state, batch, num_groups=0):
    model, _ = nnx.merge(graphdef, state)
    logits = forward(model, batch, deterministic=True, compute_dtype=compute_dtype)
    w = jnp.broadcast_to(example_weights(batch, logits.ndim), batch["targets"].shape)
    sums = dict(zip(("loss", "correct", "count"),
                    weighted_cross_entropy(logits, batch["targets"], w)))
    hits = jnp.argmax(logits, -1) == batch["targets"]
    if logits.ndim == 3:  # token task: accuracy per position
      valid = w * (batch["targets"] >= 0)
      sums["correct_by_position"] = (hits * valid).sum(0)
      sums["count_by_position"] = valid.sum(0)
    if num_groups:  # accuracy per task-given group id (``groups``, shaped like targets, -1 = none)
      groups = batch["groups"].reshape(-1)
      valid = (w * (batch["targets"] >= 0)).reshape(-1) * (groups >= 0)
      ids = jnp.maximum(groups, 0)
      sums["correct_by_group"] = jax.ops.segment_sum(hits.reshape(-1) * valid, ids, num_groups)
      sums["count_by_group"] = jax.ops.segment_sum(valid, ids, num_groups)
    return sums

  return jax.jit(step, static_argnames="num_groups")


def evaluate(eval_step, state, arrays, config, mesh) -> dict[str, Any]:
  """Loss and accuracy of ``state`` on a whole split (``max_eval_batches`` caps it)."""
  batch_size = config.eval_batch_size or config.batch_size
  num_groups = int(arrays["groups"].max()) + 1 if "groups" in arrays else 0
  totals: dict[str, Any] = {}
  for batch in data_lib.eval_batches(arrays, batch_size=batch_size, max_batches=config.max_eval_batches):
    sums = eval_step(state, data_lib.to_global(batch, mesh), num_groups=num_groups)
    totals = sums if not totals else jax.tree.map(jnp.add, totals, sums)
  totals = jax.tree.map(np.asarray, totals)
  count = max(float(totals["count"]), 1.0)
  result: dict[str, Any] = {"loss": float(totals["loss"]) / count,
                            "accuracy": float(totals["correct"]) / count, "examples": count}
  if "correct_by_position" in totals:
    result["accuracy_by_position"] = (totals["correct_by_position"] /
                                      np.maximum(totals["count_by_position"], 1)).tolist()
  if "correct_by_group" in totals:
    result["accuracy_by_group"] = (totals["correct_by_group"] /
                                   np.maximum(totals["count_by_group"], 1)).tolist()
  return result


# ----------------------------------------------------------------------------- setup helpers

def load_task(config):
  """(spec, {split: arrays}) — raises the task's MissingDataError / DataFormatError early."""
  task = tasks.get(config.task)
  spec = task.spec(config)
  splits = {split: task.load(split, config) for split in tasks.SPLITS}
  for split, arrays in splits.items():
    logging.info("%s %s: %d examples", config.task, split, len(arrays["targets"]))
  return spec, splits


def init_state(config, spec, mesh):
  """(graphdef, replicated state, num_params) of a fresh (model, optimizer)."""
  dropout_key = jax.random.key(config.seed + 1, impl=DROPOUT_PRNG_IMPL)
  model = build_model(config, spec, nnx.Rngs(params=config.seed, dropout=dropout_key))
  tx, _ = make_optimizer(config)
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  num_params = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
  graphdef, state = nnx.split((model, optimizer))
  return graphdef, data_lib.replicate(state, mesh), int(num_params)


def _write_json(path: Path, obj: Any) -> None:
  tmp = path.with_suffix(".tmp")
  tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
  os.replace(tmp, path)


def _check_finite(losses: list[jax.Array], first_step: int) -> np.ndarray:
  values = np.asarray(jnp.stack(losses))
  bad = np.flatnonzero(~np.isfinite(values))
  if bad.size:
    step = first_step + int(bad[0])
    raise NonFiniteLossError(
        f"training loss became {values[bad[0]]} at step {step}; lower --config.learning_rate or "
        f"enable gradient clipping (--config.grad_clip_norm); checkpoints up to the last save are kept")
  return values


# ----------------------------------------------------------------------------- the loop

def train_and_evaluate(config, workdir: str | Path) -> dict[str, Any]:
  """Train ``config`` in ``workdir`` (resuming if it holds a checkpoint), evaluate the best
  validation checkpoint on test, write and return results.json's content."""
  workdir = Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)

  # Task and data: user errors (missing data, malformed files) surface before compiling.
  spec, splits = load_task(config)

  # Mesh: data parallel over every device.
  mesh = data_lib.make_mesh(config.mesh_data_axis)
  data_lib.check_batch_size(config.batch_size, mesh)
  data_lib.check_batch_size(config.eval_batch_size or config.batch_size, mesh)

  # Model and optimiser.
  graphdef, state, num_params = init_state(config, spec, mesh)
  logging.info("model %s (%s): %d parameters", config.model_preset, config.model.mixer, num_params)

  # Checkpoints: resume from the latest if there is one.
  latest, best = Checkpoints(workdir / "checkpoints"), Checkpoints(workdir / "best")
  record = {"best_val_accuracy": -1.0, "best_step": -1, "train_seconds": 0.0}
  start_step = 0
  if latest.latest_step() is not None:
    state, record, start_step = latest.restore(state)
    logging.info("resumed from step %d in %s", start_step, workdir)
  is_chief = jax.process_index() == 0  # only the first process writes files other than checkpoints
  if is_chief:
    (workdir / "config.json").write_text(config.to_json_best_effort(indent=2) + "\n")

  train_step = make_train_step(graphdef, config)
  eval_step = make_eval_step(graphdef, config)
  writer = MetricsWriter(workdir, resume_step=start_step, enabled=is_chief)
  total = config.num_train_steps
  _, schedule = make_optimizer(config)
  batches = data_lib.train_batches(splits["train"], batch_size=config.batch_size, seed=config.seed,
                                   start_step=start_step, num_steps=total, prefetch=config.prefetch)

  def save_latest(step: int) -> None:
    latest.save(step, state, record)

  pending: list[jax.Array] = []
  pending_acc: list[jax.Array] = []
  session_steps, session_seconds = 0, 0.0
  interval_start = time.perf_counter()
  bar = tqdm(total=total, initial=start_step, desc=f"{config.task}/{config.model_preset}",
             unit="step", mininterval=2.0, dynamic_ncols=True, disable=not is_chief)
  step = start_step
  try:
    for batch in batches:
      state, metrics = train_step(state, data_lib.to_global(batch, mesh))
      if step == start_step:  # the first call compiled the step: free what the compiler left
        allocator.release_free_memory()
      pending.append(metrics["loss"])
      pending_acc.append(metrics["accuracy"])
      step += 1
      bar.update(1)
      is_last = step == total
      do_eval = step % config.eval_every == 0 or is_last
      if step % config.log_every == 0 or do_eval or step % config.checkpoint_every == 0:
        losses = _check_finite(pending, step - len(pending) + 1)  # the only host sync
        elapsed = time.perf_counter() - interval_start
        session_steps += len(pending)
        session_seconds += elapsed
        record["train_seconds"] += elapsed
        writer.write(step, {"train_loss": losses.mean(),
                            "train_accuracy": np.asarray(jnp.stack(pending_acc)).mean(),
                            "learning_rate": schedule(step),
                            "steps_per_second": len(pending) / max(elapsed, 1e-9)})
        bar.set_postfix(loss=f"{losses.mean():.4f}")
        pending, pending_acc = [], []
        if do_eval:
          val = evaluate(eval_step, state, splits["validation"], config, mesh)
          writer.write(step, {"val_loss": val["loss"], "val_accuracy": val["accuracy"]})
          if is_chief:
            bar.write(f"step {step}: val_accuracy={val['accuracy']:.4f} val_loss={val['loss']:.4f}")
          if val["accuracy"] > record["best_val_accuracy"]:
            record.update(best_val_accuracy=val["accuracy"], best_step=step)
            best.save(step, state, record)
          # Evaluation ran executables of other sizes: hand the heap they left free back to the
          # OS, so that holes split by small allocations cannot add up over a long run.
          allocator.release_free_memory()
        if do_eval or step % config.checkpoint_every == 0:
          save_latest(step)
        writer.flush()
        interval_start = time.perf_counter()
  finally:
    bar.close()
    writer.close()

  # Test: the checkpoint with the best validation accuracy.
  best_state, _, best_step = best.restore(state)
  test = evaluate(eval_step, best_state, splits["test"], config, mesh)
  test_stats = tasks.statistics(splits["test"], spec)
  results = {
      "task": config.task, "model_preset": config.model_preset, "mixer": config.model.mixer,
      "scale": config.scale,
      "val_accuracy": record["best_val_accuracy"], "best_step": best_step,
      "test_accuracy": test["accuracy"], "test_loss": test["loss"],
      "test_majority_rate": test_stats["majority_rate"],
      "steps": step, "train_seconds": record["train_seconds"],
      "steps_per_second": session_steps / max(session_seconds, 1e-9),
      "num_params": num_params,
      "config": json.loads(config.to_json_best_effort()),
      **provenance.record(),
  }
  if "accuracy_by_position" in test:
    results["test_accuracy_by_position"] = test["accuracy_by_position"]
  if "accuracy_by_group" in test:
    results["test_accuracy_by_group"] = test["accuracy_by_group"]
  task = tasks.get(config.task)
  if is_chief:
    if hasattr(task, "report"):  # task-specific additions (e.g. LEGO's extrapolation table and plot)
      results.update(task.report(results, workdir, config) or {})
    _write_json(workdir / "results.json", results)
  for ckpt in (latest, best):
    ckpt.close()
  return results


def evaluate_checkpoint(config, workdir: str | Path, split: str = "test", which: str = "best"
                        ) -> dict[str, Any]:
  """Accuracy of a workdir's ``best`` (or ``latest``) checkpoint on ``split``."""
  workdir = Path(workdir)
  folder = workdir / ("best" if which == "best" else "checkpoints")
  if not folder.is_dir():
    raise FileNotFoundError(f"no {which} checkpoint in {workdir}; train first with "
                            f"`lra-wavelet train --workdir={workdir} ...`")
  task = tasks.get(config.task)
  spec = task.spec(config)
  arrays = task.load(split, config)
  mesh = data_lib.make_mesh(config.mesh_data_axis)
  graphdef, state, _ = init_state(config, spec, mesh)
  state, _, step = Checkpoints(folder).restore(state)
  result = evaluate(make_eval_step(graphdef, config), state, arrays, config, mesh)
  result.update(split=split, step=step, checkpoint=which)
  return result
