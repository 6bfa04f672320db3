"""ListOps (LRA): ``--config=configs/listops.py:model=<preset>,scale=<tiny|small|paper>``.

tiny: a smoke run of a few minutes on 2 CPU cores on short generated expressions.
small: a CPU-feasible research run (longer expressions, more steps).
paper: the LRA base hyperparameters (4 layers, 8 heads, emb 512, mlp 1024, batch 32,
lr 0.05 rsqrt with 1k warmup, 5k steps, length 2000) on 96k/2k/2k generated examples
or the official files via --config.data_dir.
"""

from lra_wavelet import configlib


def get_config(arg=None):
  args = configlib.parse_arg(arg, model="transformer", scale="tiny", wavelet="")
  c = configlib.base_config()
  c.task = "listops"
  # Generator options (used when data_dir is empty); the LRA generator's defaults at paper scale.
  c.data.num_train = 96_000     # training examples
  c.data.num_val = 2_000        # validation examples
  c.data.num_test = 2_000       # test examples
  c.data.min_length = 500       # keep expressions with min_length < tokens < max_length
  c.data.max_length = 2000
  c.data.max_depth = 10         # deeper nodes are always leaves
  c.data.max_args = 10          # operators take 2..max_args arguments
  c.data.seed = 0               # generator seed (independent of the training seed)
  c.model.pooling = "cls"

  if args.scale == "tiny":
    c.data.update(num_train=6_000, num_val=500, num_test=500, min_length=16, max_length=128, max_depth=6)
    c.max_len = 128
    c.model.update(num_layers=2, dim=64, num_heads=4, qkv_dim=64, mlp_dim=128, dropout=0.0,
                   attention_dropout=0.0)
    c.update(batch_size=32, num_train_steps=400, learning_rate=2e-3, schedule="cosine",
             warmup_steps=40, weight_decay=0.01, log_every=50, eval_every=100, checkpoint_every=100)
  elif args.scale == "small":
    c.data.update(num_train=20_000, num_val=1_000, num_test=1_000, min_length=100, max_length=500)
    c.max_len = 512
    c.model.update(num_layers=4, dim=128, num_heads=4, qkv_dim=128, mlp_dim=256, dropout=0.1,
                   attention_dropout=0.1)
    c.update(batch_size=32, num_train_steps=10_000, learning_rate=1e-3, schedule="cosine",
             warmup_steps=500, weight_decay=0.01, log_every=100, eval_every=1000, checkpoint_every=1000)
  else:  # paper: LRA base config for ListOps
    c.max_len = 2000
    c.model.update(num_layers=4, dim=512, num_heads=8, qkv_dim=512, mlp_dim=1024, dropout=0.1,
                   attention_dropout=0.1)
    c.update(batch_size=32, num_train_steps=5_000, learning_rate=0.05, schedule="rsqrt",
             warmup_steps=1_000, weight_decay=0.1, log_every=100, eval_every=1000, checkpoint_every=1000)
  return configlib.finalize(c, args)


def get_sweeps():
  """Hyperparameter sweeps: ``lra-wavelet sweep --sweep=configs/listops.py:<name>``.

  Format in ``lra_wavelet/sweep/spec.py``: ``config`` (get_config argument), ``fixed`` fields,
  ``search`` ({field or arg.<name>: distribution}), ``num_samples``, ``metric``, ``mode``.
  """
  # A run of seconds per trial on generated toy data: checks that a Ray setup works.
  smoke_fixed = {"num_train_steps": 20, "data.num_train": 256, "data.num_val": 64, "data.num_test": 64,
                 "data.min_length": 8, "data.max_length": 40, "data.max_depth": 4, "max_len": 40,
                 "batch_size": 16, "model.num_layers": 1, "model.dim": 32, "model.qkv_dim": 32,
                 "model.mlp_dim": 64, "warmup_steps": 5, "log_every": 10, "eval_every": 20,
                 "checkpoint_every": 20}
  return {
      "smoke": dict(config="model=transformer,scale=tiny", fixed=smoke_fixed,
                    search={"learning_rate": ("grid", [1e-3, 3e-3]), "model.num_heads": ("grid", [1, 2])}),
      # Learning rate and weight decay of the Transformer baseline at small scale.
      "lr_wd": dict(config="model=transformer,scale=small",
                    search={"learning_rate": ("loguniform", 1e-4, 3e-3),
                            "weight_decay": ("choice", [0.01, 0.1])},
                    num_samples=8),
      # The learning rate of each WavSpA variant next to its backbone (small scale).
      "wavspa_lr": dict(config="model=transformer,scale=small",
                        search={"arg.model": ("grid", ["transformer", "transformer_wavspa",
                                                       "transformer_wavspa_ada", "transformer_wavspa_ortho",
                                                       "transformer_wavspa_lift"]),
                                "learning_rate": ("grid", [5e-4, 1e-3, 2e-3])}),
  }
