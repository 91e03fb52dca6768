"""``jupyter torchlab doctor``."""

import json

import jupyter_torchlab.cli.doctor as doctor_module
from jupyter_torchlab.cli import main

from ._helpers import cli, user_env
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
    assert "and loads in jupyter_server" in server
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


def _config_path(tmp_path, settings):
    """A JUPYTER_CONFIG_PATH entry (searched first, as by the server) with these settings."""
    cfg = tmp_path / "config"
    cfg.mkdir()
    (cfg / "jupyter_server_config.json").write_text(json.dumps(settings))
    return cfg


def test_doctor_loads_the_extension_and_fails_with_the_cause_and_the_fix(tmp_path):
    # enabled (by the install) but not loadable: what the server would log at ERROR
    cfg = _config_path(tmp_path, {"TorchlabExtension": {"history_seconds": -5}})
    result = cli("doctor", env=user_env(JUPYTER_CONFIG_PATH=str(cfg)), timeout=180)
    assert result.returncode == 1, result.stdout + result.stderr  # without --strict
    line = _line(result.stdout, "server extension")
    assert line.startswith("[!!] server extension  jupyter_torchlab is enabled (in ")
    assert (
        "but jupyter_torchlab did not load: TorchlabExtension.history_seconds must be between "
        "0 and 604800, got -5.0. Correct c.TorchlabExtension.history_seconds where it is set"
    ) in line
    assert "restart the Jupyter server" in line
    assert "1 problem(s) found." in result.stdout


def test_doctor_loads_with_the_users_config_and_touches_no_real_runtime_files(
    tmp_path, monkeypatch, capsys
):
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(runtime))
    cfg = _config_path(tmp_path, {"TorchlabExtension": {"sample_interval": 0.5}})
    monkeypatch.setenv("JUPYTER_CONFIG_PATH", str(cfg))
    monkeypatch.setattr(
        doctor_module, "doctor_checks", lambda: [doctor_module._check_server_extension()]
    )
    code = main(["doctor"])
    line = _line(capsys.readouterr().out, "server extension")
    assert line.startswith("[ok] server extension  jupyter_torchlab enabled"), line
    assert code == 0
    # a running server's kernels file and cookie secret live there; the doctor's server is not it
    assert list(runtime.iterdir()) == []
