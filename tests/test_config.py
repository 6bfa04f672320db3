"""Config files: typed arguments, locked configs, clear errors that list the valid choices."""

from __future__ import annotations

import pytest

from lra_wavelet import configlib
from lra_wavelet.presets import PRESETS
from tests.conftest import REPO, run_cli

LISTOPS = f"{REPO / 'configs/listops.py'}"


@pytest.mark.parametrize("scale", configlib.SCALES)
def test_every_scale_loads(scale):
  config = configlib.load_config_file(f"{LISTOPS}:model=transformer,scale={scale}")
  assert config.scale == scale and config.model.mixer == "softmax"


def test_paper_scale_matches_lra_listops():
  c = configlib.load_config_file(f"{LISTOPS}:model=transformer,scale=paper")
  assert (c.model.num_layers, c.model.num_heads, c.model.dim, c.model.mlp_dim) == (4, 8, 512, 1024)
  assert (c.batch_size, c.learning_rate, c.schedule, c.warmup_steps, c.max_len) == (32, 0.05, "rsqrt", 1000, 2000)


def test_unknown_argument_lists_valid_ones():
  with pytest.raises(configlib.ConfigError, match="unknown config argument 'modle'.*model, scale"):
    configlib.load_config_file(f"{LISTOPS}:modle=transformer")


def test_unknown_preset_lists_valid_ones():
  with pytest.raises(configlib.ConfigError, match="unknown model preset 'transfomer'.*transformer"):
    configlib.load_config_file(f"{LISTOPS}:model=transfomer")


def test_unknown_scale():
  with pytest.raises(configlib.ConfigError, match="valid scales: tiny, small, paper"):
    configlib.load_config_file(f"{LISTOPS}:scale=huge")


def test_config_is_locked():
  config = configlib.load_config_file(f"{LISTOPS}:model=transformer")
  with pytest.raises(AttributeError):
    config.lerning_rate = 1.0


def test_check_overrides_lists_fields():
  config = configlib.load_config_file(LISTOPS)
  configlib.check_overrides(config, ["learning_rate", "model.num_layers", "data.num_train"])
  with pytest.raises(configlib.ConfigError, match="unknown config field 'model.num_layyers'.*num_layers"):
    configlib.check_overrides(config, ["model.num_layyers"])
  with pytest.raises(configlib.ConfigError, match="unknown config field 'lerning_rate'.*learning_rate"):
    configlib.check_overrides(config, ["lerning_rate"])


def test_cli_rejects_unknown_override_before_training(tmp_path):
  result = run_cli(["train", f"--config={LISTOPS}:model=transformer,scale=tiny",
                    f"--workdir={tmp_path}", "--config.model.dimm=8"], check=False)
  assert result.returncode == 2
  assert "unknown config field 'model.dimm'" in result.stderr and "num_heads" in result.stderr
  assert not (tmp_path / "checkpoints").exists()


def test_presets_cover_the_wavspa_table_rows():
  for backbone in ("transformer", "longformer", "linformer", "linear", "performer"):
    for suffix in ("", "_wavspa", "_wavspa_ada", "_wavspa_ortho", "_wavspa_lift"):
      assert backbone + suffix in PRESETS
  for name in ("fnet", "fourier_attention", "mra2", "mra2_sparse", "wersa"):
    assert name in PRESETS


def test_fixed_wavelet_argument():
  config = configlib.load_config_file(f"{LISTOPS}:model=performer_wavspa,wavelet=sym4")
  assert config.model.mixer == "wavspa"
  assert config.model.mixer_options.wavelet == "sym4"
  assert config.model.mixer_options.inner == "performer"


def test_pathfinder_small_model_gets_the_image_shape_for_2d_positions():
  from lra_wavelet import tasks
  from lra_wavelet.models import encoder_options
  config = configlib.load_config_file(f"{REPO / 'configs/pathfinder.py'}:model=transformer,scale=small")
  opts = encoder_options(config, tasks.get("pathfinder").spec(config))
  assert (opts.pos_embedding, opts.image_shape, opts.seq_len) == ("sinusoidal_2d", (32, 32), 1024)
