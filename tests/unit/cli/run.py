"""Run the real `wandb-kfp-webhook` command line in a subprocess, from the repository root."""

from __future__ import annotations

import subprocess
import sys

from tests.support.servers import REPO_ROOT


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "webhook.cli", *args], input=stdin, capture_output=True, text=True, cwd=REPO_ROOT
    )
