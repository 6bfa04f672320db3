"""Smoke test of the mixer benchmark (lra_wavelet/bench/mixers.py) and its shared helpers.

Not a timing assertion: a tiny run must write the markdown, CSV and plot with one row per
(mixer, length), the baseline's ratio must be 1, an unregistered mixer must be reported as
skipped, and the helpers must parse specs, cut repeats to a budget and extrapolate times.
"""

import csv
import time

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lra_wavelet.bench import common, mixers


def test_parse_spec():
  assert mixers.parse_spec("softmax") == ("softmax", {})
  assert mixers.parse_spec("wavspa:inner=softmax;levels=1;wavelet=db2") == (
      "wavspa", {"inner": "softmax", "levels": 1, "wavelet": "db2"})
  assert mixers.parse_spec("local:window=2.5;causal=true") == ("local", {"window": 2.5, "causal": True})
  for bad in ("", ":levels=1", "mra:levels"):
    with pytest.raises(ValueError):
      mixers.parse_spec(bad)


def test_default_mixers_are_specs():
  names = [mixers.parse_spec(spec)[0] for spec in mixers.DEFAULT_MIXERS]
  assert names[0] == "softmax" and {"wavspa", "mra", "wersa", "linear", "performer"} <= set(names)


def test_torch_peer_named_as_a_mixer_is_not_a_jax_case():
  labels = [case.label for case in mixers._cases(["wersa", mixers.TORCH_PEER, "wersa"])]  # pylint: disable=protected-access
  assert mixers.TORCH_PEER not in labels and labels.count("wersa") == 1 and labels[0] == "softmax"


def test_time_fn_budget_and_prediction():
  calls = []
  timing = common.time_fn(lambda: calls.append(1), repeats=3, warmup=2)
  assert len(calls) == 5 and len(timing.wall) == 3 and timing.minimum <= timing.median
  # A 20 ms function with a 30 ms budget gets one timed run after the warm-up.
  timing = common.time_fn(lambda: time.sleep(0.02), repeats=5, max_seconds=0.03)
  assert len(timing.wall) == 1 and timing.median >= 0.02
  assert common.predicted_seconds([], 100) is None
  assert common.predicted_seconds([(100, 1.0)], 200) == pytest.approx(4.0)  # quadratic default
  assert common.predicted_seconds([(100, 1.0), (200, 2.0)], 400) == pytest.approx(4.0)  # linear fit
  assert common.predicted_seconds([(100, 1.0), (200, 1.0)], 400) == pytest.approx(2.0)  # at least linear


def test_run_mixer_bench_writes_tables(tmp_path):
  lengths = (16, 32)
  path = mixers.run_mixer_bench(["softmax", "no_such_mixer", "wavelet_transform:levels=1"], lengths=lengths, batch=1, num_heads=2,
                                head_dim=8, repeats=1, results_dir=tmp_path, max_seconds_per_case=60)
  assert path == tmp_path / "bench_mixers.md"
  with (tmp_path / "bench_mixers.csv").open() as f:
    rows = list(csv.DictReader(f))
  by_case = {(r["mixer"], int(r["n"])): r for r in rows}
  expected = ["softmax", "softmax:implementation=blockwise", "softmax:implementation=xla",
              "softmax:implementation=dense", "no_such_mixer"]
  for label in expected:
    for n in lengths:
      assert (label, n) in by_case, (label, n)
  for n in lengths:
    base = by_case[("softmax", n)]
    assert base["status"] == "ok" and base["impl"].startswith("auto: ")
    assert float(base["ratio"]) == 1.0 and float(base["time_s"]) > 0
    assert float(base["xla_peak_mb"]) > 0
    assert by_case[("softmax:implementation=blockwise", n)]["status"] == "ok"
    assert by_case[("no_such_mixer", n)]["status"] == "skipped: mixer not registered"
    assert by_case[("wavelet_transform:levels=1", n)]["status"] == "ok"
  markdown = path.read_text()
  assert "softmax:implementation=blockwise" in markdown and "skipped: mixer not registered" in markdown
  assert "jax 0." in markdown and "- date:" in markdown
  assert (tmp_path / "bench_mixers.png").stat().st_size > 1000


def test_wavelet_transform_case_is_the_identity_for_an_orthogonal_wavelet():
  # Forward + inverse periodized db2 reconstruct the input exactly: the case times only the
  # transforms of a wavspa layer, and this checks it runs both of them.
  layer = mixers.WaveletRoundTrip(dim=4, rngs=nnx.Rngs(0), wavelet="db2", levels=2)
  x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 16, 4)), jnp.float32)
  np.testing.assert_allclose(layer(x, jnp.ones((2, 16), bool)), x, atol=1e-5)


def test_ratios_against_softmax_and_dense_softmax():
  dense = mixers.DENSE_BASELINE
  rows = [
      {"mixer": "softmax", "n": 8, "status": "ok", "time_s": 2.0, "cpu_s": 4.0, "xla_peak_mb": 50.0},
      {"mixer": dense, "n": 8, "status": "ok", "time_s": 8.0, "cpu_s": 8.0, "xla_peak_mb": 400.0},
      {"mixer": "mra", "n": 8, "status": "ok", "time_s": 0.5, "cpu_s": 1.0, "xla_peak_mb": 20.0},
      # At a length where dense attention does not fit, only its memory estimate exists.
      {"mixer": "softmax", "n": 16, "status": "ok", "time_s": 4.0, "cpu_s": 8.0, "xla_peak_mb": 90.0},
      {"mixer": dense, "n": 16, "status": "skipped: too big", "xla_peak_mb": 1600.0},
      {"mixer": "mra", "n": 16, "status": "ok", "time_s": 1.0, "cpu_s": 2.0, "xla_peak_mb": 40.0},
  ]
  mixers._add_ratios(rows)
  mra8, mra16 = rows[2], rows[5]
  assert mra8["ratio"] == 0.25 and mra8["cpu_ratio"] == 0.25
  assert mra8["dense_ratio"] == 0.0625 and mra8["dense_memory_ratio"] == 20.0
  assert mra16["ratio"] == 0.25 and "dense_ratio" not in mra16
  assert mra16["dense_memory_ratio"] == 40.0
  assert "dense_memory_ratio" not in rows[1] and "dense_memory_ratio" not in rows[4]
