"""Torch helpers: device choice, CIFAR-10 data, the tutorial's networks, fit and evaluate.

Nothing here imports Jupyter or ipywidgets; progress is reported through :mod:`.callbacks`.
"""
