"""A kernel that executes counts as the server's activity; an idle one, and reading, do not."""

from __future__ import annotations

from datetime import datetime, timezone
from types import SimpleNamespace

from jupyter_torchlab.server.hub_activity import SETTING, BusyActivity

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def test_a_busy_kernel_moves_the_setting_jupyter_server_counts() -> None:
    kernels = {"a": SimpleNamespace(execution_state="idle")}
    settings: dict = {}
    now = [T0]
    activity = BusyActivity(lambda: kernels, settings, clock=lambda: now[0])
    assert not activity.check()
    assert SETTING not in settings
    kernels["b"] = SimpleNamespace(execution_state="busy")
    assert activity.check()
    assert settings[SETTING] == T0
    now[0] = T0.replace(hour=5)
    kernels["b"].execution_state = "idle"
    assert not activity.check()
    assert settings[SETTING] == T0  # the last moment a kernel was busy stays
    # jupyter_server's ServerWebApplication.last_activity() reads every *_last_activity setting
    assert SETTING.endswith("_last_activity")
