"""Training in several processes started from a notebook: :func:`.launch.launch`.

:mod:`.launch` runs a notebook function in N processes; :mod:`.events` is the protocol between
them and the notebook. (Training under torchrun itself is part of fit: ``fit/distributed.py``.)
"""
