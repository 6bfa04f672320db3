"""Text (LRA IMDB, byte level): ``--config=configs/text.py:model=<preset>,scale=<tiny|small|paper>``.

Data: TFDS ``imdb_reviews`` (downloaded by TFDS with network access, or a prepared copy via
``--config.data.tfds_data_dir``). Validation = test split as in LRA; ``--config.data.val_fraction=0.1``
holds out 10% of the training reviews as a real validation split instead.
tiny: a smoke run (256 bytes per review, a 2-layer model, minutes on a CPU).
small: a CPU-feasible research run at LRA's public length of 1,000 bytes.
paper: the LRA base hyperparameters (4 layers, 4 heads, emb 256, mlp 1024, batch 32, lr 0.05
rsqrt with 8k warmup, 20k steps, CLS pooling) at the paper's 4,096 bytes
(``--config.max_len=1000`` gives the public config's length).
"""

from lra_wavelet import configlib


def get_config(arg=None):
  args = configlib.parse_arg(arg, model="transformer", scale="tiny", wavelet="")
  c = configlib.base_config()
  c.task = "text"
  configlib.add_tfds_fields(c)
  c.data.val_fraction = 0.0     # 0 = LRA (validation = test split); > 0 = hold out this fraction of train
  c.data.split_seed = 0         # seed of the held-out subset when val_fraction > 0
  c.model.pooling = "cls"

  if args.scale in ("tiny", "small"):
    configlib.apply_document_scale(c, args.scale)
  else:  # paper: LRA base config for Text, at the paper's length
    c.max_len = 4096
    c.model.update(num_layers=4, dim=256, num_heads=4, qkv_dim=256, mlp_dim=1024, dropout=0.1,
                   attention_dropout=0.1)
    c.update(batch_size=32, num_train_steps=20_000, learning_rate=0.05, schedule="rsqrt",
             warmup_steps=8_000, weight_decay=0.1, log_every=100, eval_every=1000, checkpoint_every=1000)
  return configlib.finalize(c, args)
