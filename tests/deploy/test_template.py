"""The CloudFormation that `make package` builds: least privilege, queue settings, alarms, a small ingest artifact.

`make test` runs `make package` first; run it yourself before running this file alone.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / ".serverless"
TEMPLATE = BUILD / "cloudformation-template-update-stack.json"
TIMEOUTS = {"Ingest": 10, "Writer": 30, "Committer": 120, "Api": 29}

pytestmark = pytest.mark.skipif(not TEMPLATE.exists(), reason="run `make package` first (make test does)")


@pytest.fixture(scope="module")
def resources() -> dict[str, Any]:
    return json.loads(TEMPLATE.read_text())["Resources"]


def of_type(resources: dict[str, Any], kind: str) -> dict[str, Any]:
    return {name: r for name, r in resources.items() if r["Type"] == kind}


def statements(resources: dict[str, Any], role: str) -> list[dict[str, Any]]:
    return [s for p in resources[role]["Properties"]["Policies"] for s in p["PolicyDocument"]["Statement"]]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def refs_in(value: Any) -> set[str]:
    """Logical ids a policy resource points at (GetAtt / Ref / ${X.Arn} in Sub)."""
    text = json.dumps(value)
    found = set()
    for name in ("EventsQueue", "CommitsQueue", "EventsDeadLetterQueue", "CommitsDeadLetterQueue", "CaptureBucket"):
        if f'"{name}"' in text or f"${{{name}" in text:
            found.add(name)
    return found


@pytest.mark.parametrize("role", ["IngestRole", "WriterRole", "CommitterRole", "ApiRole"])
def test_no_wildcard_actions_or_resources(resources: dict[str, Any], role: str) -> None:
    for statement in statements(resources, role):
        assert statement["Effect"] == "Allow"
        for action in as_list(statement["Action"]):
            assert "*" not in action, (role, action)
        for resource in as_list(statement["Resource"]):
            assert resource != "*", role
            text = json.dumps(resource)
            # A trailing /* on a bucket prefix or -* on a secret name is scoping, not a wildcard resource.
            assert '":*"' not in text and "::*" not in text, (role, text)


def test_each_role_names_only_its_own_queues_and_secrets(resources: dict[str, Any]) -> None:
    def touched(role: str) -> tuple[set[str], set[str]]:
        queues, secrets = set(), set()
        for statement in statements(resources, role):
            actions = as_list(statement["Action"])
            if any(a.startswith("sqs:") for a in actions):
                queues |= refs_in(statement["Resource"])
            if any(a.startswith("secretsmanager:") for a in actions):
                secrets |= {
                    json.dumps(r).split("/")[-1].rstrip('"}').removesuffix("-*") for r in as_list(statement["Resource"])
                }
        return queues, secrets

    assert touched("IngestRole") == ({"EventsQueue"}, {"webhook-secret"})
    assert touched("WriterRole") == ({"EventsQueue", "CommitsQueue"}, set())
    assert touched("CommitterRole") == ({"CommitsQueue"}, {"git-token"})
    api_queues, api_secrets = touched("ApiRole")
    assert api_queues == {"EventsQueue", "CommitsQueue", "EventsDeadLetterQueue", "CommitsDeadLetterQueue"}
    assert api_secrets == {"api-keys", "git-token"}
    ingest_s3 = [
        s for s in statements(resources, "IngestRole") if any(a.startswith("s3:") for a in as_list(s["Action"]))
    ]
    assert [as_list(s["Action"]) for s in ingest_s3] == [["s3:PutObject"]]
    assert "/raw/*" in json.dumps(ingest_s3[0]["Resource"])
    api_actions = {a for s in statements(resources, "ApiRole") for a in as_list(s["Action"])}
    assert not {a for a in api_actions if a.startswith("s3:") and a not in ("s3:GetObject", "s3:ListBucket")}


def test_functions_use_their_own_roles_and_timeouts(resources: dict[str, Any]) -> None:
    for name, timeout in TIMEOUTS.items():
        function = resources[f"{name}LambdaFunction"]["Properties"]
        assert function["Role"] == {"Fn::GetAtt": [f"{name}Role", "Arn"]}
        assert function["Timeout"] == timeout
    assert resources["CommitterLambdaFunction"]["Properties"]["ReservedConcurrentExecutions"] == 1
    assert "Layers" not in resources["IngestLambdaFunction"]["Properties"]


def test_queues_are_fifo_with_fifo_dead_letters_and_console_redrive(resources: dict[str, Any]) -> None:
    for source, dlq, consumer in (
        ("EventsQueue", "EventsDeadLetterQueue", "Writer"),
        ("CommitsQueue", "CommitsDeadLetterQueue", "Committer"),
    ):
        queue = resources[source]["Properties"]
        dead = resources[dlq]["Properties"]
        assert queue["FifoQueue"] is True and dead["FifoQueue"] is True
        assert queue["RedrivePolicy"] == {"deadLetterTargetArn": {"Fn::GetAtt": [dlq, "Arn"]}, "maxReceiveCount": 5}
        assert queue["VisibilityTimeout"] >= 6 * TIMEOUTS[consumer]
        assert queue["MaximumMessageSize"] == 1048576
        allow = dead["RedriveAllowPolicy"]
        assert allow["redrivePermission"] == "byQueue"
        assert queue["QueueName"] in json.dumps(allow["sourceQueueArns"])


def test_event_sources_report_partial_batch_failures(resources: dict[str, Any]) -> None:
    mappings = of_type(resources, "AWS::Lambda::EventSourceMapping")
    by_function = {json.dumps(m["Properties"]["FunctionName"]): m["Properties"] for m in mappings.values()}
    assert len(by_function) == 2
    for props in by_function.values():
        assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        assert props["BatchSize"] <= 10
        assert "MaximumBatchingWindowInSeconds" not in props


def test_bucket_is_encrypted_versioned_and_private(resources: dict[str, Any]) -> None:
    bucket = resources["CaptureBucket"]["Properties"]
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert all(bucket["PublicAccessBlockConfiguration"].values()) and len(bucket["PublicAccessBlockConfiguration"]) == 4


def test_front_doors(resources: dict[str, Any]) -> None:
    urls = {name: r["Properties"]["AuthType"] for name, r in of_type(resources, "AWS::Lambda::Url").items()}
    assert urls == {"IngestLambdaFunctionUrl": "NONE", "ApiLambdaFunctionUrl": "AWS_IAM"}
    distribution = resources["ApiDistribution"]["Properties"]["DistributionConfig"]
    assert distribution["Origins"][0]["OriginAccessControlId"] == {"Fn::GetAtt": ["ApiOriginAccessControl", "Id"]}
    permissions = [r["Properties"] for r in of_type(resources, "AWS::Lambda::Permission").values()]
    cloudfront = [p for p in permissions if p["Principal"] == "cloudfront.amazonaws.com"]
    assert {p["Action"] for p in cloudfront} == {"lambda:InvokeFunctionUrl", "lambda:InvokeFunction"}
    cache = resources["ApiCachePolicy"]["Properties"]["CachePolicyConfig"]
    assert "X-API-Key" in cache["ParametersInCacheKeyAndForwardedToOrigin"]["HeadersConfig"]["Headers"]


def test_alarms_cover_dead_letters_age_and_errors(resources: dict[str, Any]) -> None:
    alarms = [r["Properties"] for r in of_type(resources, "AWS::CloudWatch::Alarm").values()]
    metrics = sorted((a["Namespace"], a["MetricName"]) for a in alarms)
    assert metrics.count(("AWS/SQS", "ApproximateNumberOfMessagesVisible")) == 2
    assert metrics.count(("AWS/SQS", "ApproximateAgeOfOldestMessage")) == 2
    assert metrics.count(("AWS/Lambda", "Errors")) == 4
    assert all(a["AlarmActions"] == [{"Ref": "AlarmTopic"}] for a in alarms)


def test_log_retention_and_reconcile_slot(resources: dict[str, Any]) -> None:
    groups = of_type(resources, "AWS::Logs::LogGroup")
    assert len(groups) == 4 and all(g["Properties"]["RetentionInDays"] == 30 for g in groups.values())
    assert resources["ReconcileSchedule"]["Properties"]["State"] == "DISABLED"


def test_ingest_artifact_is_small_and_imports_only_stdlib_and_boto3(tmp_path: Path) -> None:
    artifact = BUILD / "ingest.zip"
    assert artifact.stat().st_size < 64 * 1024
    with zipfile.ZipFile(artifact) as z:
        names = z.namelist()
        z.extractall(tmp_path)
    assert not [n for n in names if n.split("/")[0] in ("fastapi", "pydantic", "dulwich", "mangum", "api")]
    # Import the handler from the unpacked artifact and list every module it loaded from outside it.
    probe = (
        "import sys, sysconfig, functions.ingest\n"
        "std = sysconfig.get_paths()['stdlib']\n"
        "allowed = ('boto3', 'botocore', 's3transfer', 'jmespath', 'dateutil', 'urllib3', 'six', 'certifi',\n"
        "    '_distutils_hack')\n"
        "bad = sorted(n for n, m in sys.modules.items() if getattr(m, '__file__', None)\n"
        "    and not m.__file__.startswith((std, sys.argv[1])) and n.split('.')[0] not in allowed)\n"
        "print(bad)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, str(tmp_path)], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_heavy_functions_get_the_dependency_layer(resources: dict[str, Any]) -> None:
    layer = of_type(resources, "AWS::Lambda::LayerVersion")
    assert len(layer) == 1
    for name in ("Writer", "Committer", "Api"):
        assert resources[f"{name}LambdaFunction"]["Properties"]["Layers"] == [{"Ref": next(iter(layer))}]
