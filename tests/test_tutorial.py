import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from jupyter_torchlab.tutorial import TUTORIAL_NAME, copy_tutorial, fresh_name, tutorial_path


def test_tutorial_path_is_the_bundled_notebook():
    path = tutorial_path()
    assert path.name == TUTORIAL_NAME
    nb = json.loads(path.read_text(encoding="utf-8"))
    assert nb["nbformat"] == 4


@pytest.mark.parametrize(
    ("existing", "name", "expected"),
    [
        (set(), TUTORIAL_NAME, TUTORIAL_NAME),
        ({TUTORIAL_NAME}, TUTORIAL_NAME, "first_pytorch_classifier-1.ipynb"),
        (
            {TUTORIAL_NAME, "first_pytorch_classifier-1.ipynb"},
            TUTORIAL_NAME,
            "first_pytorch_classifier-2.ipynb",
        ),
        # a gap is reused: the first free counter wins
        (
            {TUTORIAL_NAME, "first_pytorch_classifier-2.ipynb"},
            TUTORIAL_NAME,
            "first_pytorch_classifier-1.ipynb",
        ),
        ({"run-3.ipynb"}, "run-3.ipynb", "run-4.ipynb"),
        ({"a.b.ipynb"}, "a.b.ipynb", "a.b-1.ipynb"),
        ({"Makefile"}, "Makefile", "Makefile-1"),
        ({".env"}, ".env", ".env-1"),
    ],
)
def test_fresh_name(existing, name, expected):
    assert fresh_name(existing, name) == expected


def test_fresh_name_defaults_to_the_tutorial_name():
    assert fresh_name(set()) == TUTORIAL_NAME


def test_copy_tutorial_copies_the_bundled_bytes(tmp_path):
    path = copy_tutorial(tmp_path)
    assert path == tmp_path / TUTORIAL_NAME
    assert path.read_bytes() == tutorial_path().read_bytes()


def test_copy_tutorial_defaults_to_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = copy_tutorial()
    assert path.resolve() == (tmp_path / TUTORIAL_NAME).resolve()


def test_copy_tutorial_never_overwrites(tmp_path):
    mine = tmp_path / TUTORIAL_NAME
    mine.write_bytes(b"my own work, do not touch\n")
    before = mine.stat()
    first = copy_tutorial(tmp_path)
    second = copy_tutorial(tmp_path)
    assert first.name == "first_pytorch_classifier-1.ipynb"
    assert second.name == "first_pytorch_classifier-2.ipynb"
    assert mine.read_bytes() == b"my own work, do not touch\n"
    assert mine.stat().st_mtime_ns == before.st_mtime_ns


def test_copy_tutorial_skips_a_name_taken_after_listing(tmp_path, monkeypatch):
    # another process creates the file between our listdir and our open: O_EXCL must catch it
    real_listdir = os.listdir

    def listdir_then_race(path):
        names = real_listdir(path)
        (tmp_path / TUTORIAL_NAME).write_bytes(b"raced in\n")
        return names

    monkeypatch.setattr(os, "listdir", listdir_then_race)
    path = copy_tutorial(tmp_path)
    assert path.name == "first_pytorch_classifier-1.ipynb"
    assert (tmp_path / TUTORIAL_NAME).read_bytes() == b"raced in\n"


def test_concurrent_copies_get_distinct_names(tmp_path):
    with ThreadPoolExecutor(max_workers=8) as pool:
        paths = list(pool.map(lambda _: copy_tutorial(tmp_path), range(16)))
    assert len({p.name for p in paths}) == 16
    expected = tutorial_path().read_bytes()
    assert all(p.read_bytes() == expected for p in paths)


def test_concurrent_processes_get_distinct_names(tmp_path):
    code = (
        "import sys; from jupyter_torchlab.tutorial import copy_tutorial; "
        "print(copy_tutorial(sys.argv[1]))"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    outs = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert len(set(outs)) == 4
    assert sorted(os.listdir(tmp_path)) == sorted(Path(o).name for o in outs)


def test_missing_directory_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such directory; create it first"):
        copy_tutorial(tmp_path / "nope")


def test_file_instead_of_directory_says_what_to_do(tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("x")
    with pytest.raises(NotADirectoryError, match="it is a file, not a directory"):
        copy_tutorial(f)


def test_read_only_directory_says_what_to_do(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        if os.geteuid() != 0:
            with pytest.raises(PermissionError, match="permission denied; pick a directory"):
                copy_tutorial(ro)
        else:
            # root ignores mode bits: retry in a child without the capability that lets it
            setpriv = shutil.which("setpriv")
            if setpriv is None:
                pytest.skip("running as root without setpriv: cannot make a directory read-only")
            code = (
                "import sys\n"
                "from jupyter_torchlab.tutorial import copy_tutorial\n"
                "try:\n"
                "    copy_tutorial(sys.argv[1])\n"
                "except PermissionError as e:\n"
                "    print(e)\n"
            )
            caps = "-dac_override,-dac_read_search"
            out = subprocess.run(
                [
                    setpriv,
                    f"--inh-caps={caps}",
                    f"--bounding-set={caps}",
                    "--",
                    sys.executable,
                    "-c",
                    code,
                    str(ro),
                ],
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            )
            assert "permission denied; pick a directory you can write to" in out.stdout
        assert os.listdir(ro) == []
    finally:
        ro.chmod(0o755)


def test_tutorial_path_in_an_installed_wheel_layout(tmp_path):
    # a wheel puts the notebook inside the package (pyproject force-include), with no repo around
    import jupyter_torchlab

    package = Path(jupyter_torchlab.__file__).parent
    site = tmp_path / "site"
    installed = site / "jupyter_torchlab"
    # the package as a wheel installs it, without this checkout's notebooks/ beside it
    shutil.copytree(
        package, installed, ignore=shutil.ignore_patterns("labextension", "__pycache__")
    )
    (installed / "notebooks").mkdir(parents=True)
    shutil.copy(tutorial_path(), installed / "notebooks" / TUTORIAL_NAME)
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); "
        "from jupyter_torchlab.tutorial import tutorial_path; print(tutorial_path())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(site)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=tmp_path,
    )
    assert Path(out.stdout.strip()) == installed / "notebooks" / TUTORIAL_NAME


def test_missing_bundled_notebook_says_how_to_fix_it(tmp_path, monkeypatch):
    import jupyter_torchlab.tutorial as tutorial

    monkeypatch.setattr(tutorial, "_CANDIDATES", (tmp_path / "a.ipynb", tmp_path / "b.ipynb"))
    with pytest.raises(FileNotFoundError, match="pip install --force-reinstall jupyter-torchlab"):
        tutorial.tutorial_path()
