"""Evaluation and review: scores, prediction files, the ensemble, curves, figures and the report."""
