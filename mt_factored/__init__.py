"""mt_factored: distill multi-task TD-MPC2 experts into one factored per-joint student."""

__version__ = "0.1.0"
