"""Shared bits of the deploy tests: repo paths and importing the image/ scripts (not a package)."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
IMAGE = REPO / "image"
SYSTEMD = REPO / "systemd"


def load_script(name: str) -> ModuleType:
    mod = sys.modules.get(f"_og_image_{name}")
    if mod is not None:
        return mod
    spec = importlib.util.spec_from_file_location(f"_og_image_{name}", IMAGE / f"{name}.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def need(tool: str) -> str:
    path = shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin:/lib/nut")
    if path is None:
        pytest.skip(f"{tool} not installed (make deps)")
    return path
