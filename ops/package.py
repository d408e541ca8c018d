"""`make package`: build the Lambda artifacts and CloudFormation with osls, offline and without AWS credentials.

osls asks CloudFormation, while packaging, whether the dependency layer changed since the last deploy
(`compareWithLastLayer`). Offline there is nobody to ask, so a throwaway moto server answers "no such stack"
and osls packages everything afresh. A real deploy asks the real CloudFormation.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from moto.server import ThreadedMotoServer

from local.stack import free_port

ROOT = Path(__file__).resolve().parent.parent
PLACEHOLDER_REMOTE = "https://git.example.invalid/jsync/jira-history.git"


def package(stage: str, git_remote: str) -> int:
    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "JSYNC_"))}
    env.update(
        AWS_ACCESS_KEY_ID="offline",
        AWS_SECRET_ACCESS_KEY="offline",
        AWS_REGION="us-east-1",
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}",
        SLS_TELEMETRY_DISABLED="1",
        # serverless-python-requirements runs `python3 -m pip`: use this venv's, not whatever is on PATH.
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
    )
    try:
        return subprocess.call(
            ["npx", "--no-install", "serverless", "package", "--stage", stage, f"--param=gitRemote={git_remote}"],
            cwd=ROOT,
            env=env,
        )
    finally:
        moto.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", default="dev")
    parser.add_argument("--git-remote", default=PLACEHOLDER_REMOTE, help="baked into the functions' environment")
    args = parser.parse_args(argv)
    return package(args.stage, args.git_remote)


if __name__ == "__main__":
    sys.exit(main())
