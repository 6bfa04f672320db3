"""``lra-wavelet bench --train`` and the training-speed pieces it measures: the FLOP counter
(against hand counts), the smoke run writing its tables, rematerialisation (same gradients,
less memory) and the encoder's hash dropout (rate and independence)."""

from __future__ import annotations

import csv

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lra_wavelet.bench import train as bench_train
from lra_wavelet.models import Classifier, EncoderOptions
from lra_wavelet.dropout import dropout_keep_mask
from lra_wavelet.models.encoder import recompute_in_backward


def test_matmul_flops_matches_hand_counts():
  a, b = jnp.ones((4, 8)), jnp.ones((8, 16))
  small = jnp.ones((2, 3)), jnp.ones((3, 4))
  x, kernel = jnp.ones((1, 2, 10)), jnp.ones((3, 2, 4))  # NCH input, OIH kernel -> [1, 3, 7]

  def fn(a, b, small, x, kernel, flag):
    out = a @ b                                                     # 2 * 4 * 16 * 8 = 1024
    out5, _ = jax.lax.scan(lambda c, _: (c, small[0] @ small[1]), 0.0, None, length=5)  # 5 * 48
    conv = jax.lax.conv_general_dilated(x, kernel, (1,), "VALID")  # 2 * 21 outputs * 8 = 336
    branch = jax.lax.cond(flag, lambda: (b.T @ a.T).sum(), lambda: 0.0)  # max(1024, 0)
    return out.sum() + out5 + conv.sum() + branch

  flops, unbounded = bench_train.matmul_flops(jax.make_jaxpr(fn)(a, b, small, x, kernel, True))
  assert flops == 1024 + 5 * 48 + 336 + 1024
  assert not unbounded

  def loop(a, b, n):
    return jax.lax.fori_loop(0, n, lambda i, c: c + (a @ b).sum(), 0.0)  # trip count unknown

  flops, unbounded = bench_train.matmul_flops(jax.make_jaxpr(loop)(a, b, 3))
  assert flops == 1024 and unbounded


def test_model_flops_count_exact_attention_at_its_dense_cost():
  # 300 tokens + CLS: the automatic softmax runs blockwise and pads to whole tiles; the count
  # must still be the dense formula.
  b, n, d, q, m, hidden, classes = 2, 301, 16, 16, 32, 8, 3
  opts = EncoderOptions(vocab_size=20, max_len=n - 1, num_layers=2, dim=d, num_heads=2, qkv_dim=q,
                        mlp_dim=m, dropout=0.1, attention_dropout=0.1, mixer="softmax")
  model = Classifier(opts, num_classes=classes, kind="single", classifier_dim=hidden,
                     rngs=nnx.Rngs(params=0, dropout=1))
  graphdef, state = nnx.split(model)
  batch = {"inputs": jnp.ones((b, n - 1), jnp.int32)}
  flops, unbounded = bench_train.forward_matmul_flops(graphdef, state, batch, jnp.float32)
  per_layer = 2 * b * n * (3 * d * q + q * d + 2 * d * m) + 2 * 2 * b * n * n * q
  assert flops == 2 * per_layer + 2 * b * (d * hidden + hidden * classes)
  assert not unbounded


def test_default_cases_add_the_pathx_table():
  cases = bench_train.default_cases(["listops", "pathx"], None, ["tiny", "paper"])
  pathx = [c for c in cases if c.task == "pathx" and c.scale == "paper"]
  assert sorted(c.preset for c in pathx) == sorted(bench_train.PATHX_PRESETS)
  assert all(c.batch == 1 and c.remat for c in pathx)
  assert {(c.task, c.preset, c.scale) for c in cases if c.task == "listops"} == {
      ("listops", "transformer", "tiny"), ("listops", "transformer", "paper")}
  explicit = bench_train.default_cases(["listops"], ["linear", "mra2"], ["small"])
  assert [(c.preset, c.batch, c.remat) for c in explicit] == [("linear", None, None), ("mra2", None, None)]
  with pytest.raises(ValueError, match="valid scales"):
    bench_train.default_cases(["listops"], None, ["huge"])


def test_failure_names_running_out_of_memory_near_the_limit(monkeypatch):
  """A kernel's generic error in a process at its memory limit is reported as out of memory."""
  gib = 2**30
  error = RuntimeError("INTERNAL: YNNPACK operation failed: error")
  monkeypatch.setattr(bench_train.resource, "getrlimit", lambda _: (10 * gib, 10 * gib))
  usage = type("Usage", (), {"ru_maxrss": int(9.5 * gib / 1024)})
  monkeypatch.setattr(bench_train.resource, "getrusage", lambda _: usage)
  status = bench_train._failure("failed", error)  # pylint: disable=protected-access
  assert status.startswith("out of memory: the process reached 9.5 GiB of the 10.0 GiB"), status
  assert "YNNPACK operation failed" in status
  usage.ru_maxrss = int(1 * gib / 1024)  # far below the limit: the error is reported as it is
  assert bench_train._failure("failed", error) == (  # pylint: disable=protected-access
      "failed: RuntimeError: INTERNAL: YNNPACK operation failed: error")


def test_bench_train_smoke_writes_tables(tmp_path):
  micro = ["max_len=32", "model.num_layers=1", "model.dim=16", "model.qkv_dim=16", "model.num_heads=2",
           "model.mlp_dim=32", "batch_size=8", "model.dropout=0.1"]
  cases = [bench_train.Case("listops", "transformer", "tiny"),
           bench_train.Case("listops", "no_such_preset", "tiny"),
           bench_train.Case("no_such_task", "transformer", "tiny")]
  path = bench_train.run_train_bench(cases=cases, overrides=micro, repeats=2, results_dir=tmp_path,
                                     peak_sizes=(256,), profile_steps=1)
  text = path.read_text()
  assert "## Where the step's time goes" in text and "### listops / transformer / tiny" in text
  assert path == tmp_path / "bench_train.md"
  assert "Matmul peak" in text and "- commit:" in text and "## Cases" in text
  with open(tmp_path / "bench_train.csv", newline="") as f:
    rows = list(csv.DictReader(f))
  assert [r["status"].split(":")[0] for r in rows] == ["ok", "skipped", "skipped"]
  ok = rows[0]
  assert ok["mixer"] == "softmax" and int(ok["batch"]) == 8 and int(ok["tokens"]) == 32
  for key in ("steps_per_s", "tokens_per_s", "fed_steps_per_s", "model_gflop", "xla_gflop",
              "utilisation", "utilisation_cpu", "xla_temp_mb", "rss_peak_mb", "pipeline_batches_per_s"):
    assert float(ok[key]) > 0, key
  assert "unknown model preset" in rows[1]["status"] and "configs/no_such_task.py" in rows[2]["status"]


def _model(remat: bool) -> Classifier:
  opts = EncoderOptions(vocab_size=20, max_len=128, num_layers=3, dim=16, num_heads=2, qkv_dim=16,
                        mlp_dim=32, dropout=0.2, attention_dropout=0.2, mixer="softmax",
                        mixer_options={"implementation": "xla"}, remat=remat)
  return Classifier(opts, num_classes=3, kind="single", classifier_dim=16,
                    rngs=nnx.Rngs(params=0, dropout=jax.random.key(1, impl="philox2x32")))


def test_remat_gives_the_same_gradients_with_less_memory():
  tokens = jnp.asarray(np.random.default_rng(0).integers(1, 20, (4, 128)), jnp.int32)
  results = {}
  for remat in (False, True):
    graphdef, state = nnx.split(_model(remat))

    def grads(state, tokens):
      model = nnx.merge(graphdef, state)
      return nnx.grad(lambda m: jnp.sum(m(tokens, deterministic=False) ** 2))(model)

    compiled = jax.jit(grads).lower(state, tokens).compile()
    results[remat] = (jax.tree.leaves(compiled(state, tokens)), compiled.memory_analysis().temp_size_in_bytes)
  (plain, plain_bytes), (rematted, remat_bytes) = results[False], results[True]
  for g0, g1 in zip(plain, rematted):
    np.testing.assert_allclose(g1, g0, rtol=2e-5, atol=1e-6)
  assert remat_bytes < 0.6 * plain_bytes, (remat_bytes, plain_bytes)


def test_recompute_in_backward_propagates_nan():
  fn = recompute_in_backward(lambda x: jnp.sin(x) * 2.0)
  x = jnp.arange(3.0)
  np.testing.assert_allclose(jax.grad(lambda x: fn(x).sum())(x), 2.0 * np.cos(np.arange(3.0)), rtol=1e-6)
  assert np.isnan(np.asarray(jax.grad(lambda x: (fn(x) * jnp.nan).sum())(x))).all()


def test_dropout_keep_mask_rate_and_independence():
  n = 200_000
  key = jax.random.key(3, impl="philox2x32")
  first = np.asarray(dropout_keep_mask(key, (n,), 0.7))
  again = np.asarray(dropout_keep_mask(key, (n,), 0.7))
  other = np.asarray(dropout_keep_mask(jax.random.fold_in(key, 1), (n,), 0.7))
  sigma = np.sqrt(0.7 * 0.3 / n)
  assert abs(first.mean() - 0.7) < 5 * sigma
  np.testing.assert_array_equal(first, again)
  # Independent masks agree on 0.7^2 + 0.3^2 = 58% of the elements; neighbours are uncorrelated.
  assert abs((first == other).mean() - 0.58) < 0.01
  assert abs(np.corrcoef(first[:-1], first[1:])[0, 1]) < 0.01
