"""``python -m jupyter_torchlab.hub``: run the hub-wide service (as a JupyterHub service)."""

from .app import main

if __name__ == "__main__":
    main()
