""".github/workflows: actionlint finds nothing, and the CI workflow tests before it deploys, one deploy per stage."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from ops.deploy import STAGE_PARAMS

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
CI = WORKFLOWS / "ci.yml"


def actionlint() -> str:
    """The actionlint requirements-dev.txt installs in the venv (make lint runs the same one)."""
    found = Path(sys.executable).parent / "actionlint"
    if found.exists():
        return str(found)
    on_path = shutil.which("actionlint")
    if on_path is None:
        pytest.fail("actionlint is not installed: `make lint` installs requirements-dev.txt")
    return on_path


def workflow() -> dict[str, Any]:
    loaded = yaml.safe_load(CI.read_text())
    loaded["on"] = loaded.pop(True, loaded.get("on"))  # YAML 1.1 reads the key `on` as true
    return dict(loaded)


def steps_using(job: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [s for s in job["steps"] if s.get("uses", "").split("@")[0] == action]


def test_actionlint_finds_nothing() -> None:
    files = sorted(WORKFLOWS.glob("*.y*ml"))
    assert files
    done = subprocess.run(
        [actionlint(), "-no-color", *map(str, files)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_tests_run_on_pull_requests_and_pushes_and_gate_every_deploy() -> None:
    flow = workflow()
    assert {"pull_request", "push", "workflow_dispatch"} <= set(flow["on"])
    assert flow["on"]["push"] == {"branches": ["main"], "tags": ["v*"]}
    assert flow["permissions"] == {"contents": "read"}
    jobs = flow["jobs"]
    assert "bash .ci/run" in [s.get("run") for s in jobs["test"]["steps"]]  # make test, with Chromium
    assert {name for name, job in jobs.items() if job.get("needs") == "test"} == {"deploy-dev", "deploy-prod"}


@pytest.mark.parametrize(
    ("stage", "trigger"),
    [("dev", "github.ref == 'refs/heads/main'"), ("prod", "startsWith(github.ref, 'refs/tags/v')")],
)
def test_each_stage_deploys_from_its_environment_with_oidc_one_at_a_time(stage: str, trigger: str) -> None:
    job = workflow()["jobs"][f"deploy-{stage}"]
    # prod's environment is where its required reviewers approve; each environment holds its stage's role
    assert job["environment"] == stage
    assert trigger in job["if"] and f"inputs.stage == '{stage}'" in job["if"]
    assert job["permissions"] == {"id-token": "write", "contents": "read"}
    assert job["concurrency"] == {"group": f"deploy-{stage}", "cancel-in-progress": False}
    [credentials] = steps_using(job, "aws-actions/configure-aws-credentials")
    assert credentials["with"]["role-to-assume"] == "${{ vars.AWS_ROLE_ARN }}"
    assert not {"aws-access-key-id", "aws-secret-access-key"} & set(credentials["with"])
    [deploy] = [s for s in job["steps"] if "run" in s]
    assert deploy["run"] == f"make deploy STAGE={stage}"
    assert deploy["env"]["JSYNC_GIT_REMOTE"] == "${{ vars.JSYNC_GIT_REMOTE }}"  # ops/deploy.py's --git-remote
    # Every stage option ops/deploy.py reads, from the environment's variable of the same name (unset: left out)
    for variable in STAGE_PARAMS.values():
        assert deploy["env"][variable] == f"${{{{ vars.{variable} }}}}", variable
    [python] = steps_using(job, "actions/setup-python")
    [node] = steps_using(job, "actions/setup-node")
    assert python["with"]["python-version"] == "3.11" and node["with"]["node-version"] == "20"


def test_every_action_is_pinned_to_at_least_a_major_version() -> None:
    for path in WORKFLOWS.glob("*.y*ml"):
        for line in path.read_text().splitlines():
            match = re.search(r"uses:\s*(\S+)", line)
            if match:
                assert re.fullmatch(r"[\w.-]+/[\w./-]+@(v\d+(\.\d+){0,2}|[0-9a-f]{40})", match[1]), (path.name, line)
