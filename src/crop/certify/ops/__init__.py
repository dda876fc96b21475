"""The layers the bound propagators understand, one module per kind of operator."""

from crop.certify.ops.activation import HardswishOp
from crop.certify.ops.base import AffineOp, Op
from crop.certify.ops.conv import ConvOp
from crop.certify.ops.diagonal import DiagonalOp, batchnorm_scale_shift
from crop.certify.ops.linear import LinearOp
from crop.certify.ops.recurrent import RecurrentOp, recurrent_interval
from crop.certify.ops.relu import ReLUOp, ReLURelaxation, relu_relaxation
from crop.certify.ops.shape import IdentityOp, LastStepOp, ReshapeOp, TransposeOp

__all__ = [
    "AffineOp",
    "ConvOp",
    "DiagonalOp",
    "HardswishOp",
    "IdentityOp",
    "LastStepOp",
    "LinearOp",
    "Op",
    "ReLUOp",
    "ReLURelaxation",
    "RecurrentOp",
    "ReshapeOp",
    "TransposeOp",
    "batchnorm_scale_shift",
    "recurrent_interval",
    "relu_relaxation",
]
