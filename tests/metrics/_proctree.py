"""Run as a subprocess by the tests: one process of a small tree, e.g. ``_proctree.py sleep burn``.

argv[1] is this process' role ("sleep": idle, "burn": spin on a CPU); each further argument is a
child spec whose parts are separated by "/" ("sleep/sleep" is a sleeping child with a sleeping
child of its own). Every process prints "<pid> <role>" on the inherited stdout once it runs.
"""

import os
import subprocess
import sys
import time


def main() -> None:
    role, *children = sys.argv[1:]
    for spec in children:
        subprocess.Popen([sys.executable, __file__, *spec.split("/")])
    # one write(2) of a short line is atomic on a pipe: siblings never interleave
    os.write(1, f"{os.getpid()} {role}\n".encode())
    if role == "burn":
        while True:
            pass
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
