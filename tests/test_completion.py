"""Tab completion as a user meets it: the script `lanchat completion SHELL` prints, loaded
into a real bash (and fish and zsh where installed), completes lanchat's words."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from lanchat.cli import main

BASH_COMPLETE = r"""
source "$1"
complete -p lanchat >/dev/null || { echo "no completion registered"; exit 3; }
fn=$(complete -p lanchat | sed -E 's/.*-F ([^ ]+).*/\1/')
shift
COMP_WORDS=("$@")
COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
COMP_LINE="${COMP_WORDS[*]}"
COMP_POINT=${#COMP_LINE}
"$fn" lanchat "${COMP_WORDS[-1]}" "${COMP_WORDS[-2]}"
printf '%s\n' "${COMPREPLY[@]}"
"""


def script_for(shell: str, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Path:
    """Run `lanchat completion SHELL` as the README says; return the file it wrote."""
    assert main(["completion", shell]) == 0
    path = tmp_path / f"lanchat.{shell}"
    path.write_text(capsys.readouterr().out)
    return path


def bash_complete(script: Path, *words: str) -> set[str]:
    done = subprocess.run(["bash", "--norc", "--noprofile", "-c", BASH_COMPLETE, "bash",
                           str(script), "lanchat", *words], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
    return {w.strip() for w in done.stdout.splitlines() if w.strip()}


def test_bash_completes_subcommands_options_and_paths(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """`lanchat s<Tab>`, `lanchat send --<Tab>`, `lanchat completion <Tab>`, and a file."""
    script = script_for("bash", capsys, tmp_path)
    assert {"send", "shell"} <= bash_complete(script, "s")
    assert {"--to", "--all", "--file", "--json", "--wait"} <= bash_complete(script, "send",
                                                                             "--")
    assert bash_complete(script, "completion", "") == {"bash", "zsh", "fish"}
    assert "--log-level" in bash_complete(script, "--log")
    (tmp_path / "report.pdf").write_text("x")
    files = bash_complete(script, "send", "--file", str(tmp_path / "rep"))
    assert str(tmp_path / "report.pdf") in files


@pytest.mark.skipif(shutil.which("fish") is None, reason="fish is not installed (.ci/run "
                    "installs it)")
def test_fish_completes_subcommands_and_options(capsys: pytest.CaptureFixture[str],
                                                tmp_path: Path) -> None:
    script = script_for("fish", capsys, tmp_path)
    def complete(line: str) -> set[str]:
        done = subprocess.run(["fish", "--no-config", "-c",
                               f"source {script}; complete -C '{line}'"],
                              capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        return {w.split("\t")[0] for w in done.stdout.splitlines()}
    assert {"send", "shell"} <= complete("lanchat s")
    assert {"--to", "--file", "--json"} <= complete("lanchat send --")


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed (.ci/run "
                    "installs it)")
def test_zsh_loads_the_completion_function(capsys: pytest.CaptureFixture[str],
                                           tmp_path: Path) -> None:
    """The script is valid zsh and defines the `_lanchat` completion function."""
    script = script_for("zsh", capsys, tmp_path)
    done = subprocess.run(["zsh", "-f", "-c", f"autoload -Uz compinit && compinit -u && "
                           f"source {script} && whence -w _shtab_lanchat"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and "function" in done.stdout, done.stdout + done.stderr
