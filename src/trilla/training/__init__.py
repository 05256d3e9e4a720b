"""Training: `train`/`resume` (train.py), callbacks, distributed processes, sweeps."""
