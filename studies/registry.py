"""Study names -> factories. Studies register themselves from the modules of
``studies/definitions/`` (every module there is one study).

A factory takes the profile (``"quick"`` or ``"full"``) and returns a :class:`Study`::

    @register("gd_demo")
    def make(profile): ...

Modules named in the environment variable ``DLBASICS_STUDIES`` (comma-separated import paths)
are imported too: studies kept outside this package (the tests use it).
"""

from __future__ import annotations

import importlib
import os
import pkgutil

from .spec import PROFILES

_FACTORIES = {}
_loaded = False


class UnknownStudy(KeyError):
    def __str__(self):
        return str(self.args[0])


def register(name):
    """Decorator registering a study factory ``make(profile) -> Study`` under ``name``."""
    def deco(factory):
        if name in _FACTORIES and _FACTORIES[name] is not factory:
            raise ValueError(f"study {name!r} is registered twice")
        _FACTORIES[name] = factory
        return factory

    return deco


def _discover():
    global _loaded
    if _loaded:
        return
    _loaded = True
    from . import definitions

    for info in sorted(pkgutil.iter_modules(definitions.__path__), key=lambda i: i.name):
        importlib.import_module(f"{definitions.__name__}.{info.name}")
    for mod in _env_modules():
        importlib.import_module(mod)


def _env_modules():
    return [m.strip() for m in os.environ.get("DLBASICS_STUDIES", "").split(",") if m.strip()]


def discoverable(name):
    """Whether a new process (a pool worker) registers study ``name`` too: its factory lives in
    ``studies/definitions/`` or in a module named in ``DLBASICS_STUDIES``, not only in code
    this process ran (a script's ``__main__``, a test's import)."""
    _discover()
    factory = _FACTORIES.get(name)
    if factory is None:
        return False
    from . import definitions

    module = factory.__module__
    return module.startswith(definitions.__name__ + ".") or module in _env_modules()


def names():
    """Registered study names, sorted."""
    _discover()
    return sorted(_FACTORIES)


def get(name, profile="quick"):
    """The study ``name`` for ``profile`` (its ``profile`` attribute set)."""
    _discover()
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose from {', '.join(PROFILES)}")
    if name not in _FACTORIES:
        raise UnknownStudy(f"unknown study {name!r}; known: {', '.join(names()) or 'none'}")
    study = _FACTORIES[name](profile)
    study.profile = profile
    study.check_protocol()
    if study.name != name:
        raise ValueError(f"factory of {name!r} returned a study named {study.name!r}")
    return study


def resolve(requested):
    """Expand ``["all"]`` and check names; raise :class:`UnknownStudy` for an unknown one."""
    known = names()
    out = []
    for n in requested or ():
        if n != "all" and n not in known:
            raise UnknownStudy(f"unknown study {n!r}; known: {', '.join(known) or 'none'}")
        if n not in out:
            out.append(n)
    if not out or "all" in out:
        return known
    return out
