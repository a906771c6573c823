"""First-boot rendering: seed on the boot partition -> validated gateway.toml and NUT files."""

from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path

import pytest

from tests.deploy._helpers import IMAGE, REPO, load_script

render = load_script("render")
GATEWAY = [str(REPO / ".venv/bin/gateway")]
SEED = (IMAGE / "office-gateway.toml.example").read_text()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "boot/firmware").mkdir(parents=True)
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/group").write_text("root:x:0:\nnut:x:105:\noffice-gateway:x:990:\n")
    return tmp_path


def _firstboot(root: Path, seed: str) -> Path:
    path = root / "boot/firmware/office-gateway.toml"
    path.write_text(seed)
    render.firstboot(root, path, GATEWAY, REPO / "hw/nut")
    return path


def test_toml_writer_round_trips_the_example_config() -> None:
    data = tomllib.loads((REPO / "gateway/example.toml").read_text())
    assert tomllib.loads(render.dumps_toml(data)) == data


def test_firstboot_renders_a_valid_config(root: Path) -> None:
    seed = _firstboot(root, SEED)
    cfg_path = root / "etc/office-gateway/gateway.toml"
    from gateway import config

    cfg = config.load(cfg_path)
    assert cfg.site.name == "Example Office"
    assert stat.S_IMODE(cfg_path.stat().st_mode) == 0o640
    if os.geteuid() == 0:
        assert (cfg_path.stat().st_uid, cfg_path.stat().st_gid) == (0, 990)
        assert (root / "etc/nut/upsd.users").stat().st_gid == 105
    raw = tomllib.loads(cfg_path.read_text())
    assert "admin_password" not in raw["web"]
    from werkzeug.security import check_password_hash

    assert check_password_hash(raw["web"]["admin_password_hash"], "change-me-please")
    assert "nut" not in raw and "system" not in raw
    users = (root / "etc/nut/upsd.users").read_text()
    assert f"password = {raw['ups']['password']}" in users and raw["ups"]["username"] == "gateway"
    # the seed is consumed and its clear password scrubbed
    assert not seed.exists()
    applied = seed.with_name("office-gateway.toml.applied").read_text()
    assert "change-me-please" not in applied and "admin_password: applied" in applied
    assert (root / "etc/hostname").read_text() == "office-gateway\n"


def test_firstboot_refuses_a_bad_seed_and_changes_nothing(root: Path) -> None:
    bad = SEED.replace('gateway = "203.0.113.1"', 'gateway = "not-an-ip"', 1)
    with pytest.raises(render.RenderError, match="not-an-ip"):
        _firstboot(root, bad)
    assert not (root / "etc/office-gateway/gateway.toml").exists()
    assert not (root / "etc/nut").exists()
    assert (root / "boot/firmware/office-gateway.toml").exists(), "the seed stays for the admin to fix"
    assert not list((root / "etc/office-gateway").glob(".gateway.*")), "no candidate left behind"


@pytest.mark.parametrize("change, complaint", [
    (('admin_password = "change-me-please"', 'admin_password = "short"'), "8 characters"),
    (('admin_password = "change-me-please"', "# none"), "set an admin password"),
    (("[site]\n", '[site]\nstate_dir = "/srv/gw"\n'), "StateDirectory"),
    (("[web]\n", '[web]\nlisten = "0.0.0.0:80"\n'), "CAP_NET_BIND_SERVICE"),
])
def test_firstboot_explains_seed_mistakes(root: Path, change: tuple[str, str], complaint: str) -> None:
    with pytest.raises(render.RenderError, match=complaint):
        _firstboot(root, SEED.replace(*change, 1))


def test_cli_leaves_the_reason_on_the_boot_partition(root: Path) -> None:
    (root / "boot/firmware/office-gateway.toml").write_text("[site\n")
    rc = render.main(["firstboot", "--root", str(root), "--gateway", GATEWAY[0], "--templates", str(REPO / "hw/nut")])
    assert rc == 2
    assert "office-gateway.toml" in (root / "boot/firmware/office-gateway.errors.txt").read_text()
