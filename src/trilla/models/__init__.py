"""Models: importing this package registers every built-in model."""

from trilla.models import backbones, embeddings, panns_cnn, rnn, small_cnn  # noqa: F401  (registers)
from trilla.models.registry import InputSpec, ModelParams, build, list_models, params_class

__all__ = ["InputSpec", "ModelParams", "build", "list_models", "params_class"]
