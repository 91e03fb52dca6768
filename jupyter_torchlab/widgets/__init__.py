"""ipywidgets that run in the kernel: the training progress display and the kernel monitor."""
