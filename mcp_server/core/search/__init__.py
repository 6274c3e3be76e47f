"""Sweeps: grid and random spaces, adaptive asks (Optuna), pruning, budgets, previews, progress."""
