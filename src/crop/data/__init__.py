"""Sensor windows, splits, the HAPT loader, scenarios and context transforms."""

from crop.data.sensing import ContextSplit, SensingData, load_npz, stratified_split

__all__ = ["ContextSplit", "SensingData", "load_npz", "stratified_split"]
