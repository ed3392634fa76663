"""rkit's build backend: setuptools' own, except that an editable install
(``pip install -e .``) is a *strict* one. lua/, workers/ and api/ live at the top of
the repo and ship as rkit._lua, rkit.workers and rkit.api; setuptools' default
editable install maps them with an import hook, which type checkers cannot follow
(mypy would not see the package). The strict mode builds a tree of links under
build/ and puts it on the path instead, so ``mypy`` sees ``rkit`` as installed.
(Files added later need ``pip install -e .`` again; edits do not.)"""

from __future__ import annotations

from typing import Any

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F403  (the PEP 517 hooks)


def build_editable(
    wheel_directory: str,
    config_settings: dict[str, Any] | None = None,
    metadata_directory: str | None = None,
) -> str:
    settings = dict(config_settings or {})
    settings.setdefault("editable_mode", "strict")
    return _setuptools.build_editable(wheel_directory, settings, metadata_directory)
