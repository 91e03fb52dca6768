"""Data-parallel training: fit under torchrun (:mod:`.distributed`) and from a notebook.

:mod:`.launch` runs a notebook function in N processes; :mod:`.events` is its protocol.
"""
