"""The one place that imports jupyterhub: lazily, with what to install when it is missing."""

from __future__ import annotations

from types import ModuleType

__all__ = ["MissingJupyterHub", "services_auth"]


class MissingJupyterHub(RuntimeError):
    """jupyterhub is not installed where the hub service runs."""


def services_auth() -> ModuleType:
    """Return ``jupyterhub.services.auth`` (HubOAuth and its handlers), or say what to install."""
    try:
        from jupyterhub.services import auth
    except ImportError as e:
        raise MissingJupyterHub(
            "jupyter_torchlab.hub runs as a JupyterHub service and needs jupyterhub in its "
            f"environment ({e}). Run it in the hub's environment, where jupyterhub is installed, "
            "or `pip install jupyterhub` there; the single-user servers need only "
            "jupyter-torchlab."
        ) from None
    return auth
