"""Retrieval (LRA AAN, byte level, dual encoder): ``--config=configs/retrieval.py:model=<preset>,scale=<...>``.

Data: the LRA release's ``tsv_data/`` folder via ``--config.data_dir`` (no offline generator).
``max_len`` is per document; the dual encoder shares its weights between the two documents.
tiny: a smoke run (256 bytes per document, a 2-layer model).
small: a CPU-feasible research run at 1,000 bytes per document.
paper: the LRA base hyperparameters (4 layers, 4 heads, emb 128, mlp 512, batch 32, lr 0.05
rsqrt with 8k warmup, 5k steps, CLS pooling) at 4,000 bytes per document.
"""

from lra_wavelet import configlib


def get_config(arg=None):
  args = configlib.parse_arg(arg, model="transformer", scale="tiny", wavelet="")
  c = configlib.base_config()
  c.task = "retrieval"
  c.model.pooling = "cls"

  if args.scale in ("tiny", "small"):
    configlib.apply_document_scale(c, args.scale)
  else:  # paper: LRA base config for Retrieval (its warmup is longer than its run, as published)
    c.max_len = 4000
    c.model.update(num_layers=4, dim=128, num_heads=4, qkv_dim=128, mlp_dim=512, dropout=0.1,
                   attention_dropout=0.1)
    c.update(batch_size=32, num_train_steps=5_000, learning_rate=0.05, schedule="rsqrt",
             warmup_steps=8_000, weight_decay=0.1, log_every=100, eval_every=1000, checkpoint_every=1000)
  return configlib.finalize(c, args)
