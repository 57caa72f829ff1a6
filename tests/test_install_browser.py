"""``scripts/install.sh`` installs what the tests need beyond Python: Debian's Chromium for the browser tests,
through apt-get where that is usable (root), otherwise the exact commands to run. Run here with stand-in ``id``,
``apt-get`` and ``chromium`` on an otherwise empty PATH, so nothing is installed."""

import os
import stat
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "install_browser.sh"
BASH = "/bin/bash"


def tool(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text(f"#!{BASH}\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def run(folder: Path) -> subprocess.CompletedProcess:
    env = {"PATH": str(folder), "HOME": str(folder)}
    return subprocess.run([BASH, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)


def test_install_sh_runs_the_browser_step_and_ci_calls_the_readme_command():
    install = (REPO / "scripts" / "install.sh").read_text(encoding="utf-8")
    assert "bash scripts/install_browser.sh" in install
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    command = "bash scripts/install.sh && .venv/bin/python -m pytest -q"
    assert command in readme and ci.rstrip().endswith(command)


def test_as_root_with_apt_get_it_installs_chromium(tmp_path):
    calls = tmp_path / "calls"
    tool(tmp_path, "id", "echo 0")
    # the stand-in apt-get records its arguments and "installs" a chromium on PATH
    tool(tmp_path, "apt-get", f'echo "$*" >> {calls}\n'
                              f'if [ "$1" = install ]; then echo exit 0 > {tmp_path}/chromium; '
                              f'/bin/chmod +x {tmp_path}/chromium; fi')
    done = run(tmp_path)
    assert calls.read_text().splitlines() == ["update -qq", "install -y -qq chromium"]
    assert done.returncode == 0 and "chromium installed" in done.stdout


def test_with_chromium_present_it_installs_nothing(tmp_path):
    tool(tmp_path, "chromium", "exit 0")
    tool(tmp_path, "apt-get", f"echo called > {tmp_path}/calls")
    done = run(tmp_path)
    assert done.returncode == 0 and "chromium found" in done.stdout
    assert not (tmp_path / "calls").exists()


def test_without_root_it_says_exactly_what_to_run(tmp_path):
    tool(tmp_path, "id", "echo 1000")
    tool(tmp_path, "apt-get", f"echo called > {tmp_path}/calls")
    done = run(tmp_path)
    assert done.returncode == 0  # the install goes on: the quickstart needs no browser
    assert not (tmp_path / "calls").exists()
    assert "sudo apt-get update && sudo apt-get install -y chromium" in done.stderr
    assert "MUNG_CHROMIUM=/path/to/chromium" in done.stderr and "MUNG_ALLOW_NO_BROWSER=1" in done.stderr
