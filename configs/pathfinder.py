"""Pathfinder (LRA): ``--config=configs/pathfinder.py:model=<preset>,scale=<...>[,resolution=32][,difficulty=hard]``.

Data: the LRA release via ``--config.data_dir`` (the folder holding ``pathfinder32/``; one
metadata batch is enough) or, with data_dir empty, images drawn offline by the built-in
generator in the same layout. Pixels are tokens (gray + 1), mean pooling, 80/10/10 split.
``resolution`` and ``difficulty`` (easy | medium | hard = curv_baseline |
curv_contour_length_9 | curv_contour_length_14) are config arguments so the sequence
length, ``data.image_shape`` and the presets stay consistent; configs/pathx.py is this file
at resolution 128.
tiny: a smoke run (1k generated images, a 1-layer model, minutes on a CPU; Path-X: 200 images).
small: 20k generated images and a 1-layer model of width 32 with 2-D sinusoidal positions
(row and column codes), 3,500 steps of 16, ~7 minutes on 2 CPU cores at resolution 32.
Measured on generated easy images (results/wavspa_lra_small.md): above chance within those
minutes; the same model with 1-D sinusoidal positions stayed at chance (0.500 after 3,500 steps).
On the hard images (the default, LRA's setting) this budget stays at chance with either (0.5005
test after 3,500 steps with 2-D positions); LRA trains 200 epochs.
paper: LRA's Transformer settings for the resolution (32: 1 layer, 4 heads, emb 128, qkv 64,
mlp 128, batch 512, lr 1e-3 cosine, 200 epochs of 160k; 128: 1 layer, 2 heads, emb 32,
batch 64, lr 1e-3 cosine, grad clip 1, 200 epochs) on 200k generated images (or the release).
"""

from lra_wavelet import configlib

DIFFICULTIES = ("easy", "medium", "hard")


def get_config(arg=None):
  args = configlib.parse_arg(arg, model="transformer", scale="tiny", wavelet="", resolution=32,
                             difficulty="hard")
  if args.difficulty not in DIFFICULTIES:
    raise configlib.ConfigError(f"unknown difficulty {args.difficulty!r}; valid: {', '.join(DIFFICULTIES)}")
  if args.resolution < 16:
    raise configlib.ConfigError(
        f"resolution={args.resolution} is too small; use 16 or more (LRA: 32, 64, 128, 256)")
  r = args.resolution
  c = configlib.base_config()
  c.task = "pathfinder"
  configlib.add_pixel_fields(c, r, r)
  c.data.resolution = r                # image side in pixels (set it with the config argument resolution=)
  c.data.difficulty = args.difficulty  # easy | medium | hard (set it with the config argument difficulty=)
  c.data.split_seed = 0                # seed of the 80/10/10 split
  # Generator options (used when data_dir is empty).
  c.data.num_images = 200_000          # images in all (the release has about 200k per folder)
  c.data.images_per_batch = 1_000      # images per imgs/<batch>/ folder and metadata/<batch>.npy file
  c.data.max_turn_degrees = 30.0       # bend scale: a path turns by 30-70% of it per dash, plus jitter
  c.data.seed = 0                      # generator seed (independent of the training seed)
  c.data.generator_workers = 0         # drawing processes; 0 = one per CPU
  long = r >= 64  # Path-X-like lengths: LRA's pathfinder128 settings

  if args.scale == "tiny":  # Path-X: batch 1, as softmax attention over 16k tokens needs GBs on a CPU
    c.data.num_images = 200 if long else 1_000
    c.model.update(num_layers=1, dim=16 if long else 32, num_heads=1 if long else 2, qkv_dim=16 if long else 32,
                   mlp_dim=32 if long else 64, dropout=0.0, attention_dropout=0.0,
                   pos_embedding="learned" if long else "sinusoidal")
    c.update(batch_size=1 if long else 16, num_train_steps=10 if long else 200, learning_rate=1e-3,
             schedule="cosine", warmup_steps=2 if long else 20, weight_decay=0.0, log_every=5 if long else 25,
             eval_every=10 if long else 100, checkpoint_every=10 if long else 100,
             eval_batch_size=4 if long else 0)
  elif args.scale == "small":  # resolution 32: ~9 steps/s on 2 CPU cores, 3,500 steps in ~7 min
    c.data.num_images = 20_000
    # 2-D sinusoidal positions: with 1-D ones the same model stayed at chance (see the docstring).
    c.model.update(num_layers=1, dim=32, num_heads=2, qkv_dim=16 if long else 32,
                   mlp_dim=32 if long else 64, dropout=0.0, attention_dropout=0.0,
                   pos_embedding="learned" if long else "sinusoidal_2d")
    c.update(batch_size=8 if long else 16, num_train_steps=2_000 if long else 3_500,
             learning_rate=1e-3 if long else 2e-3, schedule="cosine",
             warmup_steps=100 if long else 200, weight_decay=0.0, log_every=50,
             eval_every=250 if long else 500, checkpoint_every=250 if long else 500)
  elif long:  # paper, resolution >= 64: LRA pathfinder128 (160k images / batch 64 = 2,500 steps per epoch)
    c.model.update(num_layers=1, dim=32, num_heads=2, qkv_dim=16, mlp_dim=32, dropout=0.1,
                   attention_dropout=0.1, pos_embedding="learned")
    c.update(batch_size=64, num_train_steps=500_000, learning_rate=1e-3, schedule="cosine",
             warmup_steps=2_500, weight_decay=0.0, grad_clip_norm=1.0, log_every=500,
             eval_every=2_500, checkpoint_every=2_500)
  else:  # paper, resolution 32: LRA pathfinder32 transformer (160k / batch 512 = 312 steps per epoch)
    c.model.update(num_layers=1, dim=128, num_heads=4, qkv_dim=64, mlp_dim=128, dropout=0.2,
                   attention_dropout=0.1, pos_embedding="sinusoidal")
    c.update(batch_size=512, num_train_steps=62_500, learning_rate=1e-3, schedule="cosine",
             warmup_steps=312, weight_decay=0.0, grad_clip_norm=0.0, log_every=100, eval_every=312,
             checkpoint_every=3_120)
  return configlib.finalize(c, args)
