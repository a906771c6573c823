"""`make image-check`: image/check.sh stages the recipe into a temp root and verifies it."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from tests.deploy._helpers import IMAGE, REPO


def test_image_check_passes_and_cleans_up() -> None:
    before = set(Path(tempfile.gettempdir()).glob("office-gateway-image-check.*"))
    res = subprocess.run(["bash", str(IMAGE / "check.sh")], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert "FAIL" not in res.stdout and res.stdout.rstrip().endswith("image-check: ok")
    assert set(Path(tempfile.gettempdir()).glob("office-gateway-image-check.*")) == before


def test_makefile_wires_image_check() -> None:
    assert "bash image/check.sh" in (REPO / "Makefile").read_text()


def test_build_script_and_pi_gen_stage_are_well_formed() -> None:
    stage = IMAGE / "pi-gen/stage-office-gateway"
    for script in [IMAGE / "build.sh", IMAGE / "upgrade.sh", IMAGE / "stage.sh", IMAGE / "install-venv.sh",
                   stage / "prerun.sh", *sorted((stage / "00-office-gateway").glob("*.sh"))]:
        res = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert res.returncode == 0, f"{script}: {res.stderr}"
    packages = (stage / "00-office-gateway/00-packages").read_text().split()
    assert {"nut-server", "nut-client", "nftables", "python3-venv"} <= set(packages)
