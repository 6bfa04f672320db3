"""``bench.profile``: op times read back from a JAX profiler trace, grouped by op kind."""

from __future__ import annotations

import os
import time

import jax
import jax.numpy as jnp
import pytest

from lra_wavelet.bench import profile


def test_op_kind_drops_only_the_instance_number():
  assert profile.op_kind("ynn_fusion.24") == "ynn_fusion"
  assert profile.op_kind("copy_bitcast_fusion") == "copy_bitcast_fusion"
  assert profile.op_kind("fusion.3.clone") == "fusion.3.clone"


def test_profile_finds_the_op_that_takes_the_time():
  x = jax.random.normal(jax.random.key(0), (1 << 21,))
  small = jnp.ones((8,))
  heavy = jax.jit(lambda x, s: (jnp.sort(x), s + 1.0))  # a large sort next to a tiny add
  jax.block_until_ready(heavy(x, small))

  def call():
    jax.block_until_ready(heavy(x, small))

  start = time.perf_counter()
  call()
  wall_ms = (time.perf_counter() - start) * 1e3
  times = profile.profile_calls(call, calls=3)
  assert times, "no XLA op found in the trace"
  assert "sort" in times[0].kind and times[0].share > 0.5, times[:3]
  assert times[0].ops_per_call >= 1.0  # once per thread that ran a part of it
  total = sum(t.ms_per_call for t in times)
  # Summed over threads, an op's time cannot exceed a call's wall time times the cores (with
  # slack for a slower traced call), and the sort is most of the call.
  assert 0.2 * wall_ms < total < 3.0 * wall_ms * (os.cpu_count() or 1)
  assert sum(t.share for t in times) == pytest.approx(1.0)
  lines = profile.markdown_lines("case", times, wall_ms)
  assert lines[0] == "### case" and any(times[0].kind in line for line in lines)


def test_profile_rejects_zero_calls(tmp_path):
  with pytest.raises(ValueError, match="calls must be at least 1"):
    profile.op_kind_times(tmp_path / "none.xplane.pb", 0)
