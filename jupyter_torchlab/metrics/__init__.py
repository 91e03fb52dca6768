"""Host, process-tree and GPU sampling: plain dataclasses, never raises, knows nothing of Jupyter."""
