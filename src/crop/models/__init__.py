"""Architectures, inference helpers and safe model files."""

from crop.models.hapt import HAPTNet, Standardize
from crop.models.io import load_model, load_state, save_model
from crop.models.layers import LastStep, TakeOutput, Transpose
from crop.models.paper import ExtraSensoryCNNGRU, PerceptBiLSTM, StressMLP, WidarLeNet
from crop.models.utils import clone_model, n_classes_of, predict, predict_logits, score, state_copy

__all__ = [
    "ExtraSensoryCNNGRU",
    "HAPTNet",
    "LastStep",
    "PerceptBiLSTM",
    "Standardize",
    "StressMLP",
    "TakeOutput",
    "Transpose",
    "WidarLeNet",
    "clone_model",
    "load_model",
    "load_state",
    "n_classes_of",
    "predict",
    "predict_logits",
    "save_model",
    "score",
    "state_copy",
]
