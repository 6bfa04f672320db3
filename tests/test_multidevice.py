"""Data parallelism and multi-process start-up.

* The same micro training on 1 and on 4 (forced host) devices gives the same loss curve: the
  batch is split over the mesh and the gradients are averaged across it, so only the order of
  floating-point sums may differ.
* Two processes with 2 devices each (gloo on CPU, like two hosts) give the 4-device curve, and
  only process 0 writes metrics and results.
* ``distributed.plan``: when ``jax.distributed.initialize`` is called, and with what.
"""

from __future__ import annotations

import json
import socket
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from lra_wavelet.train import distributed
from lra_wavelet.train.metrics import read_metrics
from tests.conftest import cli_args, run_cli

STEPS = 12


def _train(data_cache, workdir, devices: int):
  run_cli(cli_args(data_cache, workdir, num_train_steps=STEPS, log_every=2, eval_every=STEPS,
                   checkpoint_every=STEPS), devices=devices)
  losses = [m["train_loss"] for m in read_metrics(workdir) if "train_loss" in m]
  return np.asarray(losses), json.loads((workdir / "results.json").read_text())


def test_one_and_four_devices_give_the_same_loss_curve(data_cache, tmp_path):
  with ThreadPoolExecutor(2) as pool:
    one, four = pool.map(lambda d: _train(data_cache, tmp_path / f"devices{d}", d), (1, 4))
  (loss1, results1), (loss4, results4) = one, four
  assert results1["machine"]["device_count"] == "1"
  assert results4["machine"]["device_count"] == "4"
  assert loss1.shape == loss4.shape == (STEPS // 2,)
  assert np.all(np.isfinite(loss1))
  assert loss1[-1] < loss1[0]  # it trained
  np.testing.assert_allclose(loss4, loss1, rtol=1e-5)  # measured: ~1e-7
  assert results4["num_params"] == results1["num_params"]
  assert abs(results4["val_accuracy"] - results1["val_accuracy"]) <= 1 / 64  # at most one example differs


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def test_two_processes_train_like_one_process_with_their_devices(data_cache, tmp_path):
  args = cli_args(data_cache, tmp_path / "two", num_train_steps=STEPS, log_every=2, eval_every=STEPS,
                  checkpoint_every=STEPS)
  address = f"localhost:{_free_port()}"
  with ThreadPoolExecutor(3) as pool:
    runs = [pool.submit(run_cli, args + [f"--coordinator_address={address}", "--num_processes=2",
                                         f"--process_id={p}"], devices=2) for p in (0, 1)]
    single = pool.submit(_train, data_cache, tmp_path / "one", 4)
    for run in runs:
      run.result()
    loss4, results4 = single.result()
  loss2x2 = np.asarray([m["train_loss"] for m in read_metrics(tmp_path / "two") if "train_loss" in m])
  results2x2 = json.loads((tmp_path / "two" / "results.json").read_text())
  assert results2x2["machine"]["device_count"] == "4"
  np.testing.assert_allclose(loss2x2, loss4, rtol=1e-5)
  assert results2x2["test_accuracy"] == pytest.approx(results4["test_accuracy"], abs=1 / 64)
  assert len(read_metrics(tmp_path / "two")) == len(read_metrics(tmp_path / "one"))  # no second writer


def test_single_process_needs_no_initialisation():
  assert distributed.plan(environ={}) is None
  assert distributed.plan(num_processes=1, environ={}) is None
  assert distributed.plan(environ={"SLURM_NTASKS": "1", "OMPI_COMM_WORLD_SIZE": "1"}) is None


def test_explicit_settings_from_flags_or_jax_environment():
  want = {"coordinator_address": "10.0.0.1:1234", "num_processes": 2, "process_id": 1}
  assert distributed.plan("10.0.0.1:1234", 2, 1, environ={}) == want
  env = {"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "1"}
  assert distributed.plan(environ=env) == want
  # Flags win over the environment.
  assert distributed.plan(process_id=0, environ=env)["process_id"] == 0


def test_launchers_and_multihost_flag_let_jax_detect_the_cluster():
  assert distributed.plan(environ={"SLURM_NTASKS": "4"}) == {}
  assert distributed.plan(environ={"OMPI_COMM_WORLD_SIZE": "8"}) == {}
  assert distributed.plan(multihost=True, environ={}) == {}


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_processes=2), "needs --coordinator_address and --process_id"),
    (dict(num_processes=2, coordinator_address="h:1"), "needs --process_id"),
    (dict(num_processes=2, coordinator_address="h:1", process_id=2), "must be in 0..1"),
    (dict(num_processes=0), "at least 1"),
])
def test_incomplete_settings_are_one_clear_error(kwargs, message):
  with pytest.raises(distributed.DistributedSetupError, match=message):
    distributed.plan(environ={}, **kwargs)


def test_bad_process_count_in_environment_is_named():
  with pytest.raises(distributed.DistributedSetupError, match="JAX_NUM_PROCESSES"):
    distributed.plan(environ={"JAX_NUM_PROCESSES": "two"})
