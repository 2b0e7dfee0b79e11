"""The config file as a user meets it: `lanchat config` shows the file and the values in
force; the command line beats the environment, which beats the file, which beats defaults;
a broken file is one clear error naming the line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lanchat.cli import main
from lanchat.plugins import Plugins

ALICE = "a" * 52


@pytest.fixture
def user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user with a fresh HOME and no lanchat variables; return HOME."""
    home = tmp_path / "user"
    home.mkdir()
    for var in ("LANCHAT_HOME", "LANCHAT_CONFIG", "LANCHAT_NICK", "LANCHAT_HEARTBEAT_S",
                "LANCHAT_DEAD_AFTER_S", "LANCHAT_LINK_TIMEOUT_S", "XDG_CONFIG_HOME",
                "XDG_DATA_HOME", "XDG_DOWNLOAD_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("USER", "carol")
    return home


def shown(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, object]:
    assert main(["config", "--json", *argv]) == 0
    report: dict[str, object] = json.loads(capsys.readouterr().out)
    return report


def test_defaults_use_the_platform_folders(user: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """No file: the config path is in ~/.config, files go to ~/Downloads, nick is the login."""
    report = shown(capsys)
    assert report["config_file"] == str(user / ".config" / "lanchat" / "config.toml")
    assert report["exists"] is False
    values = report["values"]
    assert isinstance(values, dict)
    assert values["downloads"] == str(user / "Downloads")
    assert values["nick"] == "carol" and values["port"] == 47800
    assert report["sources"] == {**report["sources"], "nick": "default", "downloads": "default"}


def test_the_file_sets_values_and_the_command_line_overrides_it(
        user: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    path = user / ".config" / "lanchat" / "config.toml"
    path.parent.mkdir(parents=True)
    path.write_text(f'nick = "dave"\ndownloads = "~/inbox"\ninterfaces = ["10.0.0.5"]\n'
                    f'auto_accept = ["{ALICE}"]\ndisabled_plugins = ["lanchat-notify"]\n'
                    f'port = 47900\n\n[limits]\ndead_after_s = 6\n')
    report = shown(capsys)
    values, sources = report["values"], report["sources"]
    assert isinstance(values, dict) and isinstance(sources, dict)
    assert (values["nick"], values["downloads"], values["interfaces"], values["port"]) == (
        "dave", str(user / "inbox"), ["10.0.0.5"], 47900)
    assert values["auto_accept"] == [ALICE]
    assert values["disabled_plugins"] == ["lanchat-notify"]
    assert values["limits"] == {"heartbeat_s": 5.0, "dead_after_s": 6.0,
                                "link_timeout_s": 2.5}
    assert sources["nick"] == "file" and sources["limits.dead_after_s"] == "file"
    monkeypatch.setenv("LANCHAT_NICK", "erin")
    assert shown(capsys)["values"]["nick"] == "erin"  # type: ignore[index]
    report = shown(capsys, "--nick", "frank", "--port", "0", "--interface", "127.0.0.1")
    values = report["values"]
    assert isinstance(values, dict)
    assert (values["nick"], values["port"], values["interfaces"]) == ("frank", 0, ["127.0.0.1"])
    assert report["sources"]["nick"] == "cli"  # type: ignore[index]


def test_a_named_home_is_self_contained(user: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """--home keeps its own config file and downloads folder; --config names another file."""
    home = tmp_path / "h"
    report = shown(capsys, "--home", str(home))
    assert report["config_file"] == str(home / "config.toml")
    assert report["values"]["downloads"] == str(home / "downloads")  # type: ignore[index]
    other = tmp_path / "other.toml"
    other.write_text('nick = "gina"\n')
    assert shown(capsys, "--home", str(home), "--config", str(other))["values"][  # type: ignore[index]
        "nick"] == "gina"


@pytest.mark.parametrize(("text", "says"), [
    ('nick = "x"\nport = 70000\n', "line 2: port takes a whole number from 0 to 65535"),
    ('nick = "x"\n\nnikc = "y"\n', "line 3: unknown key 'nikc'"),
    ('[limits]\nheartbeat_s = "fast"\n', "line 2: limits.heartbeat_s takes a positive"),
    ('auto_accept = ["bob"]\n', "line 1: auto_accept takes node ids"),
    ('\nnick = "a\\u202eb"\n', "line 2: nick takes a valid nick"),
    ('nick = "x"\ninterfaces = [1.2.3.4]\n', "at line 2"),
])
def test_a_bad_file_is_one_error_naming_the_line(
        user: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str,
        says: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    assert main(["--config", str(path), "config"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"lanchat: config file {path}: ") and says in err
    assert len(err.splitlines()) == 1


def test_a_missing_named_file_is_an_error(user: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(tmp_path / "nope.toml"), "id"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_disabled_plugins_are_not_loaded(tmp_path: Path) -> None:
    """A plugin named in disabled_plugins is listed as disabled and its hooks never run."""
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "loud.py").write_text(
        "from lanchat.hookspecs import hookimpl\n"
        "@hookimpl\ndef lanchat_register_commands(registry):\n"
        "    registry.add('loud', lambda ctx, args: None)\n")
    assert "loud" in {p["name"] for p in Plugins(tmp_path, entry_points=False).listing()}
    plugins = Plugins(tmp_path, entry_points=False, disabled=["loud"])
    [entry] = [p for p in plugins.listing() if p["name"] == "loud"]
    assert entry["enabled"] is False and "config" in entry["error"]
    assert plugins.pm.get_plugin("loud") is None
