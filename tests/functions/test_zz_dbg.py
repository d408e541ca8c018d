from pathlib import Path
from pipeline import services
from tests.functions.test_committer import change_records, invoke, committed, failures
from tests.harness import remote_commits

def test_dbg(pipeline, capsys):
    first = change_records(pipeline, [("issue_created.json", "v-0")])
    assert invoke(first) == {"batchItemFailures": []}
    remote = Path(pipeline.settings.git_remote)
    away = remote.with_name("remote-away.git")
    second = change_records(pipeline, [("issue_updated.json", "v-1"), ("issue_updated_assignee.json", "v-2")])
    g = services.git_store()
    print("tip before", g.tip)
    remote.rename(away)
    r = invoke(second)
    print("resp1", r)
    print("tip after fail", g.tip, g.head)
    print("away commits", [c.trailers["Jira-Event-Id"] for c in remote_commits(str(away), "main")])
    away.rename(remote)
    print("exists", remote.exists(), list(remote.iterdir()))
    r = invoke(second)
    print("resp2", r)
    print("tip after retry", g.tip)
    print("remote refs", open(remote/"refs/heads/main").read() if (remote/"refs/heads/main").exists() else None)
    print(committed(pipeline))
    assert 0
