"""Certified robustness: bound propagation (IBP, CROWN), randomized smoothing, Lipschitz and
margin certificates, PGD attacks, and sparse certified personalization (``crop-certified``)."""

from crop.certify.ball import Box, NormBall
from crop.certify.crown import crown_linear_bounds, crown_output_bounds, relaxed_bounds
from crop.certify.ibp import ibp_output_bounds, interval_bounds
from crop.certify.margin import MarginBounds, margin_bounds, margin_spec, verified_accuracy, verify
from crop.certify.modules import LastStep, TakeOutput, Transpose
from crop.certify.network import Network, compile_network

__all__ = [
    "Box",
    "LastStep",
    "MarginBounds",
    "Network",
    "NormBall",
    "TakeOutput",
    "Transpose",
    "compile_network",
    "crown_linear_bounds",
    "crown_output_bounds",
    "ibp_output_bounds",
    "interval_bounds",
    "margin_bounds",
    "margin_spec",
    "relaxed_bounds",
    "verified_accuracy",
    "verify",
]
