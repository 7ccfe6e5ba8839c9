"""Retraining through the service: data sources, training jobs, the model registry with its
activation history and rollback. Torch-free except :mod:`app.retrain.dataset` (worker only)."""
