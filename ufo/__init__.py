"""UFO: Unified Feature Optimization — multi-task supernet, trimming, metrics, data."""

__version__ = "0.1.0"
