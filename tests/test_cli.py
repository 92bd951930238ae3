"""Smoke tests of the CLI commands at tiny budgets, and their error messages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def run(args: list[str], cwd: Path = REPO, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "SDL_VIDEODRIVER": "dummy", "PYTHONPATH": str(REPO)}
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=check, env=env)


def genie(*args: str, cwd: Path = REPO, check: bool = True) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "genie_env.cli.cli", *args], cwd=cwd, check=check)


def test_module_help_works_from_the_repo_root():
    out = run([sys.executable, "-m", "genie_env.cli.collect", "--help"]).stdout
    for flag in ("--out", "--frames", "--num-envs", "--policy", "--resume", "--export-npy"):
        assert flag in out
    assert "sticky" in out


def test_genie_lists_its_commands_and_rejects_unknown_ones():
    from genie_env.cli.cli import COMMANDS

    out = genie("--help").stdout
    rows = {line.split()[0] for line in out.splitlines() if line.startswith("  ")}
    assert rows == set(COMMANDS)  # one row per command, each with its summary
    assert all(len(line.split()) > 1 for line in out.splitlines() if line.startswith("  "))
    bad = genie("colect", check=False)
    assert bad.returncode == 2 and "unknown command 'colect'" in bad.stderr


def test_collect_info_verify_round_trip(tmp_path):
    out = tmp_path / "ds"
    genie("collect", "--out", str(out), "--frames", "600", "--num-envs", "4", "--no-progress")
    info = json.loads(genie("data", "info", str(out), "--json").stdout)
    assert info["all"]["frames"] >= 600 and info["complete"]
    assert sum(info["all"]["action_histogram"].values()) == info["all"]["frames"]
    table = genie("data", "info", str(out)).stdout
    assert "success" in table and "train" in table and "val" in table
    assert "OK" in genie("data", "verify", str(out)).stdout
    # a corrupted shard: verify fails with exit 1 and names it
    shard = sorted(p for p in out.iterdir() if p.name.startswith("shard_"))[0]
    with open(shard / "actions.npy", "r+b") as f:
        f.seek(-1, 2)
        f.write(b"\x07")
    bad = genie("data", "verify", str(out), check=False)
    assert bad.returncode == 1 and f"shard {shard.name}: checksum mismatch" in bad.stderr


def test_collect_refuses_to_overwrite_and_names_the_fix(tmp_path):
    out = tmp_path / "ds"
    genie("collect", "--out", str(out), "--frames", "100", "--num-envs", "2", "--no-progress")
    again = genie("collect", "--out", str(out), "--frames", "100", "--num-envs", "2", check=False)
    assert again.returncode == 1 and "pass --resume" in again.stderr
    bad_mode = genie("collect", "--out", str(tmp_path / "x"), "--distribution-mode", "medium", check=False)
    # a Literal field: tyro refuses the choice at parse time, naming the flag and the choices
    assert bad_mode.returncode == 2 and "invalid choice 'medium' for argument '--distribution-mode'" in bad_mode.stderr
    assert "('easy', 'hard')" in bad_mode.stderr


def test_collect_with_no_flags_runs_the_original_default_job(tmp_path):
    genie("collect", cwd=tmp_path)
    arr = np.load(tmp_path / "coinrun_data" / "training_data.npy")
    assert arr.shape == (5000, 64, 64, 3) and arr.dtype == np.uint8
    assert (tmp_path / "coinrun_data" / "manifest.json").exists()


def test_sigterm_stops_a_command_as_ctrl_c_does_locks_released_and_finally_run(tmp_path):
    # what stops a command run in the background (`nohup genie study ... &`, which ignores SIGINT)
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from genie_env._io import DirLock\n"
        "from genie_env.cli.common import cli_errors\n"
        f"out = Path({str(tmp_path)!r})\n"
        "with cli_errors(), DirLock(out / 'run'):\n"
        "    try:\n"
        "        print('ready', flush=True)\n"
        "        time.sleep(60)\n"
        "    finally:\n"
        "        (out / 'finally_ran').write_text('yes')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)  # fmt: skip
    assert proc.stdout.readline().strip() == "ready"
    assert (tmp_path / "run" / ".genie.lock").exists()
    proc.terminate()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "stopped (SIGTERM): run the same command again to go on" in err
    assert (tmp_path / "finally_ran").read_text() == "yes" and not (tmp_path / "run" / ".genie.lock").exists()
