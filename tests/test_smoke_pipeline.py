from tests.builders import fixture_bytes
from tests.harness import Pipeline


def test_created_issue_reaches_s3_and_git(any_pipeline: Pipeline) -> None:
    pipeline = any_pipeline
    r = pipeline.deliver(fixture_bytes("issue_created.json"), identifier="d-1")
    assert r["statusCode"] == 202, r
    pipeline.drain()
    assert pipeline.latest("10042")["issue"]["key"] == "OPS-17"
    commits = pipeline.commits()
    assert len(commits) == 1
    assert commits[0].subject.startswith("OPS-17: created")
