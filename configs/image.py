"""Image (LRA CIFAR-10, 1,024 gray pixels): ``--config=configs/image.py:model=<preset>,scale=<...>``.

Data: TFDS ``cifar10`` (45k/5k/10k: validation = the last 10% of train). Mean pooling and
``data.image_shape=(32, 32)``, so 2-D aware mixers (MRA's patch blocks) see the pixel grid.
tiny: a smoke run (a 1-layer model, minutes on a CPU).
small: a CPU-feasible research run.
paper: LRA's CIFAR-10 Transformer (1 layer, 8 heads, emb 128, batch 256, lr 5e-4 with warmup
and cosine decay, 200 epochs of 45k images, no weight decay).
"""

from lra_wavelet import configlib


def get_config(arg=None):
  args = configlib.parse_arg(arg, model="transformer", scale="tiny", wavelet="")
  c = configlib.base_config()
  c.task = "image"
  configlib.add_tfds_fields(c)
  configlib.add_pixel_fields(c, 32, 32)

  if args.scale == "tiny":
    c.model.update(num_layers=1, dim=32, num_heads=2, qkv_dim=32, mlp_dim=64, dropout=0.0,
                   attention_dropout=0.0)
    c.update(batch_size=32, num_train_steps=500, learning_rate=1e-3, schedule="cosine",
             warmup_steps=50, weight_decay=0.0, log_every=50, eval_every=250, checkpoint_every=250,
             max_eval_batches=20)
  elif args.scale == "small":
    c.model.update(num_layers=2, dim=64, num_heads=4, qkv_dim=64, mlp_dim=128, dropout=0.1,
                   attention_dropout=0.1)
    c.update(batch_size=64, num_train_steps=5_000, learning_rate=1e-3, schedule="cosine",
             warmup_steps=250, weight_decay=0.0, log_every=100, eval_every=500, checkpoint_every=500)
  else:  # paper: LRA CIFAR-10 (200 epochs of 45k at batch 256 = 35,000 steps, 1 epoch of warmup)
    c.model.update(num_layers=1, dim=128, num_heads=8, qkv_dim=128, mlp_dim=128, dropout=0.3,
                   attention_dropout=0.2)
    c.update(batch_size=256, num_train_steps=35_000, learning_rate=5e-4, schedule="cosine",
             warmup_steps=175, weight_decay=0.0, grad_clip_norm=0.0, log_every=100, eval_every=175,
             checkpoint_every=1750)
  return configlib.finalize(c, args)
