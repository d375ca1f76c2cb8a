"""Calibration sets: drawn once from the user's data, saved, and reused by every target."""
from .sets import CalibrationSet, load_calibration, make_calibration

__all__ = ["CalibrationSet", "make_calibration", "load_calibration"]
