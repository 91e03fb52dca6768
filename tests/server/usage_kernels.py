"""Test-only kernels that are not local processes as far as the server can tell.

``HiddenProvisioner`` launches a real ipykernel on this machine, through a LocalProvisioner it
keeps to itself: the kernel manager sees a provisioner that is not a LocalProvisioner and has no
``process``, exactly like a remote (container, Kubernetes, SSH) provisioner whose kernel still
listens on reachable ZMQ ports. ``NoUsageKernel`` is an ipykernel that ignores usage_request, as
ipykernel before 6.7 and some other kernels do.
"""

from __future__ import annotations

import json
import pathlib
import sys
from importlib.metadata import EntryPoint
from typing import Any, ClassVar

from ipykernel.ipkernel import IPythonKernel
from jupyter_client.connect import KernelConnectionInfo
from jupyter_client.provisioning import KernelProvisionerBase, LocalProvisioner

PROVISIONER = "torchlab-test-hidden"
HIDDEN = "hidden-python"  # kernelspec: an ipykernel behind HiddenProvisioner
NO_USAGE = "hidden-no-usage"  # kernelspec: the same, with a kernel that ignores usage_request
# the folder this module is imported from (its name depends on pytest's rootdir handling)
IMPORT_ROOT = pathlib.Path(__file__).resolve().parents[len(__name__.split(".")) - 1]


class HiddenProvisioner(KernelProvisionerBase):  # type: ignore[misc]
    """Run a local kernel but show the server no process, as a remote provisioner does."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._inner = LocalProvisioner(
            kernel_id=self.kernel_id, kernel_spec=self.kernel_spec, parent=self.parent
        )

    @property
    def hidden_pid(self) -> int | None:
        """Return the kernel's pid, for tests only (the server never looks here)."""
        process = self._inner.process
        return None if process is None else int(process.pid)

    @property
    def has_process(self) -> bool:
        return bool(self._inner.has_process)

    async def poll(self) -> int | None:
        return await self._inner.poll()

    async def wait(self) -> int | None:
        return await self._inner.wait()

    async def send_signal(self, signum: int) -> None:
        await self._inner.send_signal(signum)

    async def kill(self, restart: bool = False) -> None:
        await self._inner.kill(restart)

    async def terminate(self, restart: bool = False) -> None:
        await self._inner.terminate(restart)

    async def cleanup(self, restart: bool = False) -> None:
        await self._inner.cleanup(restart)

    async def pre_launch(self, **kwargs: Any) -> dict[str, Any]:
        return await self._inner.pre_launch(**kwargs)

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> KernelConnectionInfo:
        self.connection_info = await self._inner.launch_kernel(cmd, **kwargs)
        return self.connection_info

    async def get_provisioner_info(self) -> dict[str, Any]:
        info = await super().get_provisioner_info()
        info["inner"] = await self._inner.get_provisioner_info()
        return info


class NoUsageKernel(IPythonKernel):  # type: ignore[misc]
    """An ipykernel that ignores usage_request, like ipykernel before 6.7."""

    control_msg_types: ClassVar[list[str]] = [
        t for t in IPythonKernel.control_msg_types if t != "usage_request"
    ]


def register_provisioner() -> tuple[str, EntryPoint]:
    """Return the factory entry that makes ``PROVISIONER`` resolve to HiddenProvisioner."""
    value = f"{__name__}:{HiddenProvisioner.__name__}"
    return PROVISIONER, EntryPoint(PROVISIONER, value, "jupyter_client.kernel_provisioners")


def write_kernelspecs(kernel_dir: pathlib.Path) -> None:
    """Write the HIDDEN and NO_USAGE kernelspecs into a Jupyter data dir's kernels/."""
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    specs = {
        HIDDEN: argv,
        NO_USAGE: [*argv, f"--IPKernelApp.kernel_class={__name__}.{NoUsageKernel.__name__}"],
    }
    for name, kernel_argv in specs.items():
        folder = kernel_dir / name
        folder.mkdir(parents=True, exist_ok=True)
        spec = {
            "argv": kernel_argv,
            "display_name": name,
            "language": "python",
            # the kernel must import NoUsageKernel from this module, under the same name
            "env": {"PYTHONPATH": str(IMPORT_ROOT)},
            "metadata": {"kernel_provisioner": {"provisioner_name": PROVISIONER}},
        }
        (folder / "kernel.json").write_text(json.dumps(spec))
