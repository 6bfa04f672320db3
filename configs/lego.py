"""LEGO (Zhang et al. 2022): ``--config=configs/lego.py:model=<preset>,scale=<tiny|small|paper>``.

Chains of ``data.num_variables`` = 12 shuffled assignments; training supervises the first
``data.train_supervised`` = 6 variables of each chain, the test all 12; results.json gets the
accuracy per chain position (``lego``) and the workdir a plot ``lego_extrapolation.png``.
tiny: a smoke run (a 2-layer model, a few minutes on a CPU).
small: a CPU-feasible run (a 3-layer model, ~11 minutes on 2 CPU cores). Measured (results/lego_small.md):
  the Transformer learns the first hops (positions 1-2 at 100%) and stays at chance beyond them.
paper: a BERT-small-sized encoder (as in the LEGO paper's from-scratch runs, scaled to 6 layers).
"""

from lra_wavelet import configlib


def get_config(arg=None):
  args = configlib.parse_arg(arg, model="transformer", scale="tiny", wavelet="")
  c = configlib.base_config()
  c.task = "lego"
  c.data.num_variables = 12     # chain length n (at most 26: one letter per variable)
  c.data.train_supervised = 6   # chain positions labelled in train and validation (the test labels all n)
  c.data.num_train = 50_000     # generated chains per split
  c.data.num_val = 2_000
  c.data.num_test = 2_000
  c.data.seed = 0               # generator seed (independent of the training seed)
  c.max_len = 64                # 5 tokens per clause: 60 for 12 variables, padded to 64
  c.model.pooling = "mean"      # no CLS token: every position is a clause token or padding
  # Fixed sin/cos positions: the same clause layout repeats every 5 tokens, which a fixed table
  # exposes from the start (small scale: one reasoning hop after ~1k steps, vs. none with
  # learned positions).
  c.model.pos_embedding = "sinusoidal"

  if args.scale == "tiny":
    c.data.update(num_train=5_000, num_val=500, num_test=500)
    c.model.update(num_layers=2, dim=64, num_heads=4, qkv_dim=64, mlp_dim=128, dropout=0.0,
                   attention_dropout=0.0)
    c.update(batch_size=32, num_train_steps=600, learning_rate=1e-3, schedule="cosine",
             warmup_steps=50, weight_decay=0.01, log_every=50, eval_every=200, checkpoint_every=200)
  elif args.scale == "small":
    c.data.update(num_train=50_000, num_val=1_000, num_test=2_000)
    c.model.update(num_layers=3, dim=128, num_heads=4, qkv_dim=128, mlp_dim=256, dropout=0.0,
                   attention_dropout=0.0)
    c.update(batch_size=64, num_train_steps=3_000, learning_rate=1e-3, schedule="cosine",
             warmup_steps=200, weight_decay=0.01, log_every=100, eval_every=250, checkpoint_every=500)
  else:  # paper
    c.data.update(num_train=200_000, num_val=2_000, num_test=10_000)
    c.model.update(num_layers=6, dim=512, num_heads=8, qkv_dim=512, mlp_dim=2048, dropout=0.1,
                   attention_dropout=0.1)
    c.update(batch_size=256, num_train_steps=20_000, learning_rate=5e-4, schedule="cosine",
             warmup_steps=1_000, weight_decay=0.01, log_every=100, eval_every=1000, checkpoint_every=1000)
  return configlib.finalize(c, args)
