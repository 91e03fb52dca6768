"""The hub-wide service: every user server's torchlab snapshot in one place.

Run by JupyterHub as a managed service, ``python -m jupyter_torchlab.hub`` (README: "For
JupyterHub operators"). It runs in the hub's environment, a different process (often a different
image) from the single-user servers, and talks to them over HTTP only: it imports nothing of
``jupyter_torchlab.server``, and the snapshot document is the contract between the two.

- :mod:`.config`: settings from the hub's environment and the command line;
- :mod:`.discovery`: which servers run and their own addresses (the hub's REST API);
- :mod:`.collector`: one round: every server's snapshot, fetched directly, never through the proxy;
- :mod:`.exposition`: the round as Prometheus text, every series labelled ``user`` and ``server``;
- :mod:`.view`: the round as the admin page's rows (idle GPU holders first); :mod:`.page`: HTML;
- :mod:`.app`: the web service (the metrics endpoint, the admin page through hub OAuth).

Importing this package imports nothing else; jupyterhub is imported where the service starts.
"""
