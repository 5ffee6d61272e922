"""Registered models (``gradversary list``): each is a :class:`FeatureClassifier`."""

from . import cnn5, digits, lenet, mlp, multitask, resnet, small_cnn  # noqa: F401  (registers)
from .base import MODELS, FeatureClassifier, create_model

__all__ = ["MODELS", "FeatureClassifier", "create_model"]
