"""Models: the encoder (encoder.py) and the task heads (heads.py); ``build_model`` makes the
model a config asks for."""

from __future__ import annotations

from flax import nnx

from lra_wavelet.models.encoder import Encoder, EncoderOptions
from lra_wavelet.models.heads import Classifier


def encoder_options(config, spec) -> EncoderOptions:
  m = config.model
  return EncoderOptions(
      vocab_size=spec.vocab_size, max_len=spec.max_len, num_layers=m.num_layers, dim=m.dim,
      num_heads=m.num_heads, qkv_dim=m.qkv_dim, mlp_dim=m.mlp_dim, dropout=m.dropout,
      attention_dropout=m.attention_dropout, pos_embedding=m.pos_embedding, pooling=m.pooling,
      mixer=m.mixer, mixer_options=m.mixer_options.to_dict(), remat=m.remat,
      image_shape=tuple(config.data.image_shape) if "image_shape" in config.data else None)


def build_model(config, spec, rngs: nnx.Rngs) -> Classifier:
  """The classifier for task ``spec`` with the encoder described by ``config.model``."""
  return Classifier(encoder_options(config, spec), num_classes=spec.num_classes, kind=spec.kind,
                    classifier_dim=config.model.classifier_dim, rngs=rngs)
