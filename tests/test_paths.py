"""Only keys Jira can produce become git paths, and every path a clone checks out fits the file system."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from pipeline.ids import MAX_PROJECT_KEY
from tests.builders import fixture_json
from tests.harness import Pipeline, remote_paths

_LONGEST_PROJECT = "P" + "Z" * (MAX_PROJECT_KEY - 1)
_LONGEST_KEY = f"{_LONGEST_PROJECT}-{'9' * 18}"


def _created(issue_id: str, key: str) -> bytes:
    payload = fixture_json("issue_created.json")
    payload["issue"].update(id=issue_id, key=key)
    payload["issue"]["fields"]["project"]["key"] = key.rsplit("-", 1)[0]
    return json.dumps(payload).encode()


def test_keys_jira_cannot_produce_are_filed_by_id_and_the_branch_checks_out(pipeline: Pipeline, tmp_path: Path) -> None:
    # Given issues whose keys Jira could not have produced, beside one at the longest key JSync files by key
    odd = {
        "20001": "A" * 300 + "-" + "9" * 40,  # a path component far over 255 bytes
        "20002": "ops-1",  # lowercase
        "20003": "../../etc-1",  # a path out of issues/
        "20004": "OPS-" + "1" * 19,  # an issue number past 18 digits
        "20005": "O-1",  # a one-letter project
        "20006": "ÖPS-1",  # not ASCII
    }
    for issue_id, key in [*odd.items(), ("20007", _LONGEST_KEY)]:
        assert pipeline.deliver(_created(issue_id, key), identifier=f"p-{issue_id}")["statusCode"] == 202
    pipeline.drain()

    # Then each odd one is stored under its id, and the longest real key under its project
    paths = set(remote_paths(pipeline.settings.git_remote, pipeline.settings.git_branch))
    assert {f"issues/_unkeyed/{i}.json" for i in odd} <= paths
    assert f"issues/{_LONGEST_PROJECT}/{_LONGEST_KEY}.json" in paths
    assert all(len(part.encode()) <= 255 for path in paths for part in path.split("/"))
    # And a real git clone checks the branch out, every file in place
    clone = tmp_path / "clone"
    subprocess.run(
        ["git", "clone", "-q", "--branch", pipeline.settings.git_branch, pipeline.settings.git_remote, str(clone)],
        check=True,
        capture_output=True,
    )
    checked_out = {str(p.relative_to(clone)) for p in clone.rglob("*") if p.is_file() and ".git" not in p.parts}
    assert checked_out == paths
    status = subprocess.run(["git", "-C", str(clone), "status", "--porcelain"], capture_output=True, text=True)
    assert status.stdout == ""
