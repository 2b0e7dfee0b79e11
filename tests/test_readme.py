"""The README's set-up commands, run as a new user would type them."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
INSTALL_TIMEOUT_S = 300
SKIP_COPY = shutil.ignore_patterns(".venv", ".git", "__pycache__", "build", "*.egg-info",
                                   ".tox", ".*_cache", ".hypothesis")


def readme_command(section: str) -> str:
    """The first `sh` code block under the README heading `section`: one line."""
    markdown_it = pytest.importorskip("markdown_it")
    tokens = markdown_it.MarkdownIt("commonmark").parse((REPO / "README.md").read_text())
    heading = None
    for i, tok in enumerate(tokens):
        if tok.type == "heading_open":
            heading = tokens[i + 1].content
        elif tok.type == "fence" and tok.info == "sh" and heading == section:
            [line] = [line for line in tok.content.splitlines() if line.strip()]
            return line
    raise AssertionError(f"no sh block under {section!r} in README.md")


def test_readme_test_command_is_what_ci_runs() -> None:
    """CI runs the README's test command exactly as written, in a venv it makes itself."""
    command = readme_command("Test")
    assert command.startswith("python3 -m venv "), command
    ci_lines = (REPO / ".ci" / "run").read_text().splitlines()
    assert command in ci_lines


@pytest.mark.pypi
def test_readme_install_command_works_in_a_fresh_venv(tmp_path: Path) -> None:
    """A distribution-managed Python: the README's install command, then `lanchat` runs."""
    command = readme_command("Install and run")
    install, _, run = command.rpartition(" && ")
    assert install.startswith("python3 -m venv "), command
    program = shlex.split(run)
    assert Path(program[0]).name == "lanchat" and len(program) == 1, command
    src = tmp_path / "lanchat"
    shutil.copytree(REPO, src, ignore=SKIP_COPY)
    # No site-packages but the new venv's: drop this test run's venv from the environment.
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "LANCHAT_HOME")}
    venv_bin = str(Path(sys.prefix) / "bin")
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if p != venv_bin)
    done = subprocess.run(["bash", "-c", install], cwd=src, env=env, capture_output=True,
                          text=True, timeout=INSTALL_TIMEOUT_S)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    lanchat = src / program[0]
    version = subprocess.run([str(lanchat), "--version"], cwd=src, env=env,
                             capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and version.stdout.startswith("lanchat "), version
    home = tmp_path / "home"
    ident = subprocess.run([str(lanchat), "id", "--home", str(home), "--json"], cwd=src,
                           env=env, capture_output=True, text=True, timeout=60)
    assert ident.returncode == 0, ident.stderr
    assert '"id"' in ident.stdout and (home / "node_key.pem").exists()
    # The venv is the README's own, not the one running this test.
    site = subprocess.run([str(src / ".venv" / "bin" / "python"), "-c",
                           "import lanchat, sys; print(lanchat.__file__, sys.prefix)"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert str(src / ".venv") in site.stdout, site
