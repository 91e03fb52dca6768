"""``jupyter torchlab doctor``."""

import json

import jupyter_torchlab.cli.doctor as doctor_module
from jupyter_torchlab.cli import main

from ._helpers import cli
from ._helpers import line_of as _line


def test_doctor_reports_torch_accelerators_and_nvml():
    import torch

    result = cli("doctor", timeout=180)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert torch.__version__ in _line(out, "torch")
    assert "torchvision" in out
    accelerators = _line(out, "accelerators")
    nvml = _line(out, "NVML")
    distributed = _line(out, "distributed")
    assert "gloo" in distributed
    if not torch.cuda.is_available():
        assert "tl.launch(fn, nprocs=N)" in distributed
    if torch.cuda.is_available():
        assert "cuda:0" in accelerators
        assert "unavailable" not in nvml
    else:
        assert "none: no GPU" in accelerators
        assert "training runs on the CPU" in accelerators
        # no GPU: NVML is reported with the reason, not as an error
        assert nvml.startswith("[--]") or nvml.startswith("[ok]")
        if nvml.startswith("[--]"):
            assert "unavailable:" in nvml or "not installed" in nvml
    # the editable install enables the server extension, and it loads
    server = _line(out, "server extension")
    assert server.startswith("[ok] server extension  jupyter_torchlab enabled")
    # the install also puts the prebuilt lab extension where JupyterLab looks for it
    lab = _line(out, "lab extension")
    import jupyter_torchlab

    expected = f"[ok] lab extension     jupyter-torchlab {jupyter_torchlab.__version__} installed"
    assert lab.startswith(expected), lab


def test_doctor_sees_a_disabled_server_extension(tmp_path, monkeypatch, capsys):
    # JUPYTER_CONFIG_PATH comes first in the search path, so its setting wins, as in the server
    cfg = tmp_path / "config"
    cfg.mkdir()
    (cfg / "jupyter_server_config.json").write_text(
        json.dumps({"ServerApp": {"jpserver_extensions": {"jupyter_torchlab": False}}})
    )
    monkeypatch.setenv("JUPYTER_CONFIG_PATH", str(cfg))
    monkeypatch.setattr(
        doctor_module, "doctor_checks", lambda: [doctor_module._check_server_extension()]
    )
    code = main(["doctor", "--strict"])
    line = _line(capsys.readouterr().out, "server extension")
    assert line.startswith("[!!]")
    assert f"jupyter_torchlab is disabled (in {cfg})" in line
    assert "jupyter server extension enable jupyter_torchlab" in line
    assert code == 1  # --strict turns problems into a failing exit status
