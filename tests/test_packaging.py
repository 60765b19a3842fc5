"""Packaging: the three packages install and import as ``dlbasics.kernels``, ``dlbasics.models``
and ``dlbasics.studies``, never as top-level ``kernels``, ``models`` or ``studies``.

The fresh-environment tests build a virtual environment without pip (the dependencies come from
this test environment's site-packages through a ``.pth`` line, which does not run that
directory's own ``.pth`` files, so this environment's editable dlbasics is not seen), install
dlbasics into it from this repository (as a wheel, as an editable install, or not at all, using
``scripts/checkout_env.sh``), and then run, in that environment:

* the package from a directory that holds its own ``models.py`` and ``kernels/`` (a research
  repository), training a small network;
* the PyPI package ``kernels`` installed into the same site-packages, beside dlbasics;
* ``python -m dlbasics.studies list`` and the ``dlbasics`` command;
* a compiled kernel twice, in two processes: the second loads it from Numba's cache.
"""

import importlib.metadata as md
import json
import os
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("kernels", "models", "studies")


def _pyproject():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


def _package_dirs():
    """``dlbasics.<dotted path>`` of every directory with an ``__init__.py`` in the three."""
    found = set()
    for top in PACKAGES:
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT).parts
            if "__pycache__" not in rel:
                found.add(".".join(("dlbasics",) + rel))
    return found


def _sources():
    """Paths, as in the wheel, of every Python source file of the three packages."""
    return {"dlbasics/" + p.relative_to(ROOT).as_posix()
            for top in PACKAGES for p in (ROOT / top).rglob("*.py")
            if "__pycache__" not in p.parts}


def test_every_package_directory_is_declared():
    tool = _pyproject()["tool"]["setuptools"]
    assert set(tool["packages"]) == _package_dirs()
    assert tool["package-dir"] == {f"dlbasics.{p}": p for p in PACKAGES}
    assert _pyproject()["project"]["scripts"] == {"dlbasics": "dlbasics.studies.cli:main"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                          "--no-build-isolation", "-q", "-w", str(out), str(ROOT)],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    (path,) = out.glob("dlbasics-*.whl")
    return path


@pytest.mark.slow
def test_wheel_holds_only_the_dlbasics_namespace(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    version = md.version("dlbasics")
    assert {n.split("/")[0] for n in names} == {"dlbasics", f"dlbasics-{version}.dist-info"}
    assert "dlbasics/__init__.py" not in names  # a namespace package: nothing to shadow
    assert {n for n in names if n.endswith(".py")} == _sources()
    entry = zipfile.ZipFile(wheel).read(f"dlbasics-{version}.dist-info/entry_points.txt")
    assert "dlbasics = dlbasics.studies.cli:main" in entry.decode()


# --- a fresh virtual environment ------------------------------------------------------------

def _venv_python(venv):
    return venv / "bin" / "python"


def _run(cmd, cwd, env=None, timeout=600):
    res = subprocess.run(cmd, cwd=str(cwd), env=env, capture_output=True, text=True,
                         timeout=timeout)
    assert res.returncode == 0, (cmd, res.stdout[-2000:], res.stderr[-3000:])
    return res.stdout


def _clean_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "NUMBA_CACHE_DIR", "VIRTUAL_ENV")}
    env.update(extra)
    return env


def _make_venv(venv):
    """A venv without pip whose dependencies are this environment's (see the module docstring)."""
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=venv.parent)
    py = _venv_python(venv)
    purelib = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()"
                         "['purelib'])"], cwd=venv.parent).strip())
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (purelib / "_outer_dependencies.pth").write_text("\n".join(sorted(ours)) + "\n")
    return py, purelib


def _pip_install(py, *args):
    _run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps",
          "--no-build-isolation", *args], cwd=ROOT)


RESEARCH_REPO = {
    "models.py": "MINE = 'research models.py'\n",
    "kernels/__init__.py": "MINE = 'research kernels/'\n",
    "studies/__init__.py": "MINE = 'research studies/'\n",
}

IN_RESEARCH_REPO = textwrap.dedent("""
    import json, sys
    import kernels, models, studies                   # the research repository's own
    import numpy as np
    from dlbasics.models import MLP, SGD, train
    from dlbasics.kernels import dense
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 2))
    y = (X[:, 0] * X[:, 1] > 0).astype(np.float64)
    m = MLP([2, 4, 1], activation="tanh", output="sigmoid", loss="binary_cross_entropy",
            dtype=np.float64, seed=0, backend="numpy")
    h = train(m, X, y, SGD(0.5), batch_size=16, epochs=5, seed=0)
    print(json.dumps({"mine": [kernels.MINE, models.MINE, studies.MINE],
                      "dense": dense.__file__, "loss0": h.loss[0], "loss5": h.loss[-1]}))
""")

BESIDE_PYPI_KERNELS = textwrap.dedent("""
    import json
    import importlib.metadata as md
    import kernels                                    # the PyPI package (hub kernel loader)
    import numpy as np
    from dlbasics.kernels.perceptron import perceptron_predict
    # top-level names in site-packages (".." holds the console scripts in bin/)
    files = {}
    for d in ("kernels", "dlbasics"):
        try:
            files[d] = {str(f).split("/")[0] for f in md.files(d)}
        except md.PackageNotFoundError:  # dlbasics from a checkout (not installed)
            pass
    out = perceptron_predict(np.array([[1.0, 2.0], [-3.0, 0.5]]), np.array([1.0, 1.0]),
                             np.zeros(1))
    print(json.dumps({"pypi_kernels": kernels.__file__,
                      "has_get_kernel": hasattr(kernels, "get_kernel"),
                      "tops": {d: sorted(t for t in v if not t.endswith(".dist-info") and t != "..")
                               for d, v in files.items()},
                      "predict": out.tolist()}))
""")

CACHE_PROBE = textwrap.dedent("""
    import json
    import numpy as np
    from dlbasics.kernels import perceptron
    X = np.array([[1.0, 2.0], [-1.0, -1.5], [2.0, 0.5]])
    w, b = np.zeros(2), np.zeros(1)
    mistakes = perceptron.perceptron_epoch(X, np.array([1, -1, 1]), w, b)
    st = perceptron.epoch_kernel.stats
    print(json.dumps({"hits": sum(st.cache_hits.values()),
                      "misses": sum(st.cache_misses.values()),
                      "mistakes": mistakes, "w": w.tolist()}))
""")


@pytest.fixture(scope="module", params=["wheel", "editable", "checkout"])
def installed(request, tmp_path_factory):
    """``(python, env, kind, where)`` of a fresh venv with dlbasics installed as ``kind``."""
    kind = request.param
    base = tmp_path_factory.mktemp(f"venv-{kind}")
    py, purelib = _make_venv(base / "venv")
    env = _clean_env()
    if kind == "wheel":
        _pip_install(py, str(request.getfixturevalue("wheel")))
        where = purelib / "dlbasics"
    elif kind == "editable":
        _pip_install(py, "-e", str(ROOT))
        where = ROOT
        env["NUMBA_CACHE_DIR"] = str(base / "numba-cache")  # not the developer's own cache
    else:  # a checkout, not installed: what scripts/gpu_check.sh does
        line = _run(["bash", "-c", "source scripts/checkout_env.sh && echo $PYTHONPATH"],
                    cwd=ROOT, env=env).strip()
        env["PYTHONPATH"] = line
        where = Path(line.split(os.pathsep)[0]) / "dlbasics"
        env["NUMBA_CACHE_DIR"] = str(base / "numba-cache")
    return py, env, kind, where


def _json_run(py, code, cwd, env):
    return json.loads(_run([str(py), "-c", code], cwd=cwd, env=env).strip().splitlines()[-1])


@pytest.mark.slow
def test_nothing_named_kernels_models_or_studies_is_installed(installed):
    py, env, kind, _ = installed
    found = _json_run(py, "import importlib.util as u, json, site\n"
                          "print(json.dumps({n: (s.origin if (s := u.find_spec(n)) else None)"
                          " for n in ('kernels', 'models', 'studies')}))", "/", env)
    # at most what the test environment itself has (e.g. the PyPI kernels), never ours
    ours = {(ROOT / p).resolve() for p in PACKAGES}
    for name, origin in found.items():
        if origin is not None:
            assert Path(origin).resolve().parent not in ours, (name, origin)
            assert "dlbasics" not in Path(origin).parts, (name, origin)


@pytest.mark.slow
def test_imports_from_a_research_repository(installed, tmp_path):
    py, env, kind, where = installed
    for rel, text in RESEARCH_REPO.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    out = _json_run(py, IN_RESEARCH_REPO, tmp_path, env)
    assert out["mine"] == ["research kernels/", "research models.py", "research studies/"]
    assert Path(out["dense"]).resolve() == (where / "kernels" / "dense.py").resolve()
    assert out["loss5"] < out["loss0"]  # it trained


@pytest.mark.slow
def test_beside_the_pypi_kernels_package(installed, tmp_path):
    py, env, kind, _ = installed
    try:
        version = md.version("kernels")
    except md.PackageNotFoundError:
        pytest.fail("the test extra installs the PyPI package kernels")
    _pip_install(py, f"kernels=={version}")
    out = _json_run(py, BESIDE_PYPI_KERNELS, tmp_path, env)
    assert out["has_get_kernel"]
    assert Path(out["pypi_kernels"]).parent.name == "kernels"
    tops = out["tops"]
    assert tops["kernels"] == ["kernels"]
    if kind == "wheel":
        assert tops["dlbasics"] == ["dlbasics"]
    else:  # editable: a .pth line and the finder module it runs (from a checkout: this test
        # environment's own editable dlbasics, seen through the dependencies' .pth line)
        assert not set(tops["dlbasics"]) & set(PACKAGES), tops
    assert out["predict"] == [1.0, -1.0]


@pytest.mark.slow
def test_command_and_module_entry_points(installed, tmp_path):
    py, env, kind, _ = installed
    via_module = _run([str(py), "-m", "dlbasics.studies", "list"], cwd=tmp_path, env=env)
    assert "gd_demo" in via_module and "optimizers" in via_module
    if kind != "checkout":  # the console script exists only when installed
        via_command = _run([str(py.parent / "dlbasics"), "list"], cwd=tmp_path, env=env)
        assert via_command == via_module


@pytest.mark.slow
def test_numba_cache_written_by_one_process_is_used_by_the_next(installed, tmp_path):
    py, env, kind, where = installed
    first = _json_run(py, CACHE_PROBE, tmp_path, env)
    second = _json_run(py, CACHE_PROBE, tmp_path, env)
    assert first["misses"] == 1 and first["hits"] == 0
    assert second["hits"] == 1 and second["misses"] == 0
    # one mistake (the first sample, scored 0), then w = x_1 = (1, 2), b = 1 separates the rest
    assert second["mistakes"] == first["mistakes"] == 1
    assert second["w"] == first["w"] == [1.0, 2.0]
    if kind == "wheel":  # the default cache: beside the installed package, not the sources
        assert list((where / "kernels" / "__pycache__").glob("perceptron.epoch_kernel*.nbi"))
