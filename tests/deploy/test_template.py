"""The CloudFormation that `make package` builds: least privilege, queue settings, alarms, small artifacts.

`make test` runs `make package` first; run it yourself before running this file alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / ".serverless"
TEMPLATE = BUILD / "cloudformation-template-update-stack.json"
CREATE_TEMPLATE = BUILD / "cloudformation-template-create-stack.json"  # the first deploy's: the deployment bucket
TIMEOUTS = {"Ingest": 10, "Writer": 30, "Committer": 120, "Api": 29, "Reconcile": 900, "Attachments": 300}
ROLES = ["IngestRole", "WriterRole", "CommitterRole", "ApiRole", "ReconcileRole", "AttachmentsRole"]
SOURCE_QUEUES = ("EventsQueue", "CommitsQueue", "SyncQueue", "BellQueue", "AttachmentsQueue")
QUEUES = (
    *SOURCE_QUEUES,
    "EventsDeadLetterQueue",
    "CommitsDeadLetterQueue",
    "SyncDeadLetterQueue",
    "BellDeadLetterQueue",
    "AttachmentsDeadLetterQueue",
)

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
    for name in (*QUEUES, "CaptureBucket"):
        if f'"{name}"' in text or f"${{{name}" in text:
            found.add(name)
    return found


def s3_grants(resources: dict[str, Any], role: str) -> dict[str, set[str]]:
    """Each S3 action the role holds -> the bucket paths it holds it on ("" for the bucket itself)."""
    grants: dict[str, set[str]] = {}
    for statement in statements(resources, role):
        for action in as_list(statement["Action"]):
            if not action.startswith("s3:"):
                continue
            for resource in as_list(statement["Resource"]):
                _, _, path = json.dumps(resource).partition("${CaptureBucket.Arn}/")
                grants.setdefault(action, set()).add(path.split('"')[0])
    return grants


@pytest.mark.parametrize("role", ROLES)
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
    assert touched("WriterRole") == ({"EventsQueue", "CommitsQueue", "BellQueue", "AttachmentsQueue"}, set())
    assert touched("CommitterRole") == ({"CommitsQueue", "BellQueue"}, {"git-token"})
    api_queues, api_secrets = touched("ApiRole")
    assert api_queues == {*QUEUES}  # health reads every queue's depth, dead letters included
    # The API only checks that a Jira secret is named; reading Jira is the reconcile's alone.
    assert api_secrets == {"api-keys"}
    # Reconcile feeds the writer and asks the copier for attachments JSync has no copy of (the backfill)
    assert touched("ReconcileRole") == ({"SyncQueue", "EventsQueue", "AttachmentsQueue"}, {"jira"})
    assert touched("AttachmentsRole") == ({"AttachmentsQueue"}, {"jira"})
    # Attachment contents and their index only; nothing the capture or git depends on.
    assert s3_grants(resources, "AttachmentsRole") == {
        "s3:ListBucket": {""},
        "s3:PutObject": {"attachments/*", "index/attachments/*"},
        "s3:AbortMultipartUpload": {"attachments/*"},
        "s3:GetObject": {"index/attachments/*"},
    }
    assert s3_grants(resources, "IngestRole") == {"s3:PutObject": {"raw/*", "sync/pending/*", "ops/webhook/refused/*"}}
    # An event the writer sets aside is recorded under index/ and its issue noted for reconcile; health lists them.
    assert {"index/*", "sync/pending/*"} <= s3_grants(resources, "WriterRole")["s3:PutObject"]
    assert "index/*" in s3_grants(resources, "ApiRole")["s3:GetObject"]


def test_only_the_committer_can_read_the_git_token(resources: dict[str, Any]) -> None:
    # The token may push: health judges git from the committer's push record and an anonymous look instead.
    readers = [
        role
        for role in ROLES
        for s in statements(resources, role)
        if any(a.startswith("secretsmanager:") for a in as_list(s["Action"])) and "git-token" in json.dumps(s)
    ]
    assert readers == ["CommitterRole"]
    for name in TIMEOUTS:
        env = resources[f"{name}LambdaFunction"]["Properties"]["Environment"]["Variables"]
        assert ("JSYNC_GIT_TOKEN_SECRET_NAME" in env) == (name == "Committer"), name
    # What health reads instead, and who writes it
    assert {"ops/webhook/*", "gitstate/_push.json"} <= s3_grants(resources, "ApiRole")["s3:GetObject"]
    assert "gitstate/*" in s3_grants(resources, "CommitterRole")["s3:PutObject"]
    assert "ops/webhook/last_accepted.json" in s3_grants(resources, "WriterRole")["s3:PutObject"]


def test_sync_queue_grants_are_the_smallest_that_work(resources: dict[str, Any]) -> None:
    def sqs_actions(role: str, queue: str) -> set[str]:
        return {
            a
            for s in statements(resources, role)
            if queue in refs_in(s["Resource"])
            for a in as_list(s["Action"])
            if a.startswith("sqs:")
        }

    assert sqs_actions("ApiRole", "SyncQueue") == {"sqs:SendMessage", "sqs:GetQueueUrl", "sqs:GetQueueAttributes"}
    assert sqs_actions("ReconcileRole", "SyncQueue") == {
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:GetQueueAttributes",
        "sqs:SendMessage",
        "sqs:GetQueueUrl",
    }
    assert sqs_actions("ReconcileRole", "EventsQueue") == {"sqs:SendMessage", "sqs:GetQueueUrl"}
    assert s3_grants(resources, "ApiRole") == {
        "s3:ListBucket": {""},
        "s3:GetObject": {
            "latest/*",
            "snapshots/*",
            "index/*",
            "sync/jobs/*",
            "ops/webhook/*",
            "gitstate/_push.json",
            "attachments/*",  # presigned attachment URLs carry the role's permission
        },
        "s3:PutObject": {"sync/jobs/*"},
    }
    # Reconcile feeds the writer: it reads what JSync holds and writes only its jobs and raw copies of big feeds.
    assert s3_grants(resources, "ReconcileRole") == {
        "s3:ListBucket": {""},
        "s3:GetObject": {"latest/*", "index/*", "sync/*"},
        "s3:PutObject": {"sync/*", "raw/*"},
        "s3:DeleteObject": {"sync/*"},
    }
    jira_readers = [
        role
        for role in ROLES
        for s in statements(resources, role)
        if "secretsmanager:GetSecretValue" in as_list(s["Action"]) and "/jira" in json.dumps(s["Resource"])
    ]
    assert jira_readers == ["ReconcileRole", "AttachmentsRole"]  # the writer only knows whether one is named


def test_functions_use_their_own_roles_and_timeouts(resources: dict[str, Any]) -> None:
    for name, timeout in TIMEOUTS.items():
        function = resources[f"{name}LambdaFunction"]["Properties"]
        assert function["Role"] == {"Fn::GetAtt": [f"{name}Role", "Arn"]}
        assert function["Timeout"] == timeout
    assert resources["CommitterLambdaFunction"]["Properties"]["ReservedConcurrentExecutions"] == 1
    assert "Layers" not in resources["IngestLambdaFunction"]["Properties"]
    reconcile = resources["ReconcileLambdaFunction"]["Properties"]
    assert reconcile["Handler"] == "functions/reconcile.lambda_handler"
    assert reconcile["ReservedConcurrentExecutions"] == 1 and reconcile["MemorySize"] == 1024


def test_every_function_knows_the_sync_queue_and_which_know_the_jira_secret(resources: dict[str, Any]) -> None:
    sync_queue = resources["SyncQueue"]["Properties"]["QueueName"]
    for name in TIMEOUTS:
        env = resources[f"{name}LambdaFunction"]["Properties"]["Environment"]["Variables"]
        assert env["JSYNC_SYNC_QUEUE"] == sync_queue, name
        # Undeployed Jira is the default: empty, so the API answers 503, reconcile stays off and the writer asks for
        # no attachment copies. Only reconcile and attachments read the secret (their roles, above).
        knows = ("Api", "Reconcile", "Writer", "Attachments")
        assert env.get("JSYNC_JIRA_SECRET_NAME") == ("" if name in knows else None), name
    env = resources["ReconcileLambdaFunction"]["Properties"]["Environment"]["Variables"]
    assert env["JSYNC_SYNC_LOOKBACK_MINUTES"] == "30"


def test_queues_are_fifo_with_fifo_dead_letters_and_console_redrive(resources: dict[str, Any]) -> None:
    for source, dlq, consumer in (
        ("EventsQueue", "EventsDeadLetterQueue", "Writer"),
        ("CommitsQueue", "CommitsDeadLetterQueue", "Committer"),
        ("SyncQueue", "SyncDeadLetterQueue", "Reconcile"),
        ("BellQueue", "BellDeadLetterQueue", "Committer"),
        ("AttachmentsQueue", "AttachmentsDeadLetterQueue", "Attachments"),
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
        assert dead["QueueName"] == queue["QueueName"].removesuffix(".fifo") + "-dlq.fifo"
        assert dead["MessageRetentionPeriod"] == queue["MessageRetentionPeriod"] == 14 * 24 * 3600
    # The schedule and the API send no deduplication id: the sync queue dedups on the body; the others never do.
    assert resources["SyncQueue"]["Properties"]["ContentBasedDeduplication"] is True
    assert resources["EventsQueue"]["Properties"]["ContentBasedDeduplication"] is False
    assert resources["CommitsQueue"]["Properties"]["ContentBasedDeduplication"] is False
    assert resources["BellQueue"]["Properties"]["ContentBasedDeduplication"] is True  # the schedule rings it too


def test_event_sources_report_partial_batch_failures(resources: dict[str, Any]) -> None:
    mappings = of_type(resources, "AWS::Lambda::EventSourceMapping")
    by_function = {json.dumps(m["Properties"]["FunctionName"]): m["Properties"] for m in mappings.values()}
    assert len(by_function) == 4
    for props in by_function.values():
        assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        assert props["BatchSize"] <= 10
        assert "MaximumBatchingWindowInSeconds" not in props
    reconcile = by_function[json.dumps({"Fn::GetAtt": ["ReconcileLambdaFunction", "Arn"]})]
    assert reconcile["EventSourceArn"] == {"Fn::GetAtt": ["SyncQueue", "Arn"]}
    assert reconcile["BatchSize"] == 1
    copies = by_function[json.dumps({"Fn::GetAtt": ["AttachmentsLambdaFunction", "Arn"]})]
    assert copies["EventSourceArn"] == {"Fn::GetAtt": ["AttachmentsQueue", "Arn"]} and copies["BatchSize"] == 1
    # The committer is woken by its bell and receives the changes itself: the commits queue has no event source.
    committer = by_function[json.dumps({"Fn::GetAtt": ["CommitterLambdaFunction", "Arn"]})]
    assert committer["EventSourceArn"] == {"Fn::GetAtt": ["BellQueue", "Arn"]}
    assert {"Fn::GetAtt": ["CommitsQueue", "Arn"]} not in [p["EventSourceArn"] for p in by_function.values()]


def test_the_bell_rings_every_minute_from_eventbridge_and_only_from_its_rule(resources: dict[str, Any]) -> None:
    rule = resources["BellSchedule"]["Properties"]
    assert rule["ScheduleExpression"] == "rate(1 minute)" and rule["State"] == "ENABLED"
    (target,) = rule["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": ["BellQueue", "Arn"]}
    assert target["SqsParameters"] == {"MessageGroupId": "committer"}
    (statement,) = resources["BellQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Action"] == "sqs:SendMessage"
    assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": ["BellSchedule", "Arn"]}}}
    for name in TIMEOUTS:
        env = resources[f"{name}LambdaFunction"]["Properties"]["Environment"]["Variables"]
        assert env["JSYNC_BELL_QUEUE"] == resources["BellQueue"]["Properties"]["QueueName"], name


@pytest.mark.parametrize("template", [TEMPLATE, CREATE_TEMPLATE], ids=["update-stack", "create-stack"])
def test_every_bucket_is_encrypted_versioned_and_private(template: Path) -> None:
    buckets = of_type(json.loads(template.read_text())["Resources"], "AWS::S3::Bucket")
    # The data bucket, and the deployment bucket osls makes for the artifacts (the only one on a first deploy)
    assert "ServerlessDeploymentBucket" in buckets
    for name, bucket in buckets.items():
        props = bucket["Properties"]
        assert props.get("VersioningConfiguration") == {"Status": "Enabled"}, name
        rules = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert rules and all(r["ServerSideEncryptionByDefault"]["SSEAlgorithm"] for r in rules), name
        assert props.get("PublicAccessBlockConfiguration") == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }, name


def test_versioned_buckets_forget_old_versions(resources: dict[str, Any]) -> None:
    for name in ("CaptureBucket", "ServerlessDeploymentBucket"):
        rules = resources[name]["Properties"]["LifecycleConfiguration"]["Rules"]
        assert any(r["Status"] == "Enabled" and "NoncurrentVersionExpiration" in r for r in rules), name
    # The refusal counts health sums over an hour do not pile up
    rules = resources["CaptureBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    assert any(r.get("Prefix") == "ops/webhook/refused/" and r.get("ExpirationInDays") for r in rules)


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
    assert metrics.count(("AWS/SQS", "ApproximateNumberOfMessagesVisible")) == 5
    assert metrics.count(("AWS/SQS", "ApproximateAgeOfOldestMessage")) == 2
    assert metrics.count(("AWS/Lambda", "Errors")) == 5
    assert all(a["AlarmActions"] == [{"Ref": "AlarmTopic"}] for a in alarms)
    # A refused signature loses the delivery (Jira never retries a 401): one in 15 minutes is worth an email.
    [refused] = [a for a in alarms if a["Namespace"] == "JSync"]
    assert refused["MetricName"] == "WebhookRefused" and refused["Statistic"] == "Sum"
    assert {d["Name"]: d["Value"] for d in refused["Dimensions"]} == {"stage": "dev", "reason": "signature"}
    assert refused["Period"] * refused["EvaluationPeriods"] == 900
    assert (refused["Threshold"], refused["ComparisonOperator"]) == (0, "GreaterThanThreshold")
    assert refused["TreatMissingData"] == "notBreaching"
    watched = [json.dumps(a["Dimensions"]) for a in alarms if a["MetricName"] == "ApproximateNumberOfMessagesVisible"]
    assert sorted(d.split('"')[-4] for d in watched) == [
        "AttachmentsDeadLetterQueue",
        "BellDeadLetterQueue",
        "CommitsDeadLetterQueue",
        "EventsDeadLetterQueue",
        "SyncDeadLetterQueue",
    ]


def test_log_retention(resources: dict[str, Any]) -> None:
    groups = of_type(resources, "AWS::Logs::LogGroup")
    assert len(groups) == 6 and all(g["Properties"]["RetentionInDays"] == 30 for g in groups.values())


def test_reconcile_schedule_is_off_by_default_and_queues_into_the_reconcile_group(resources: dict[str, Any]) -> None:
    rule = resources["ReconcileSchedule"]["Properties"]
    assert rule["State"] == "DISABLED" and rule["ScheduleExpression"] == "rate(1 day)"
    [target] = rule["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": ["SyncQueue", "Arn"]}
    assert target["SqsParameters"] == {"MessageGroupId": "reconcile"}
    transformer = target["InputTransformer"]
    assert transformer["InputPathsMap"] == {"time": "$.time"}
    filled = transformer["InputTemplate"].replace("<time>", "2026-11-25T03:00:00Z")
    assert json.loads(filled) == {"scheduled": True, "time": "2026-11-25T03:00:00Z"}
    # EventBridge may send to the sync queue, and only on behalf of this rule.
    policies = [r["Properties"] for r in of_type(resources, "AWS::SQS::QueuePolicy").values()]
    assert sorted(json.dumps(p["Queues"]) for p in policies) == ['[{"Ref": "BellQueue"}]', '[{"Ref": "SyncQueue"}]']
    [statement] = resources["SyncQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert as_list(statement["Action"]) == ["sqs:SendMessage"]
    assert statement["Resource"] == {"Fn::GetAtt": ["SyncQueue", "Arn"]}
    assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": ["ReconcileSchedule", "Arn"]}}}


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
    for name in ("Writer", "Committer", "Api", "Reconcile"):
        assert resources[f"{name}LambdaFunction"]["Properties"]["Layers"] == [{"Ref": next(iter(layer))}]


def test_reconcile_artifact_has_no_api_or_git_code(tmp_path: Path) -> None:
    with zipfile.ZipFile(BUILD / "reconcile.zip") as z:
        names = z.namelist()
        z.extractall(tmp_path)
    assert "functions/reconcile.py" in names, "the handler is missing from the artifact"
    assert not [n for n in names if n.split("/")[0] == "api" or n.startswith(("functions/api", "functions/commit"))]
    assert not [n for n in names if n.startswith("pipeline/git/")]
    # Its handler imports from the artifact alone, and never the API's or git's dependencies.
    probe = (
        "import sys, functions.reconcile\n"
        "heavy = ('api', 'dulwich', 'fastapi', 'starlette', 'mangum', 'pydantic')\n"
        "print(sorted({n.split('.')[0] for n in sys.modules} & set(heavy)))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr


@pytest.mark.parametrize(
    ("function", "left_out"),
    [
        ("writer", ("pipeline/git/", "pipeline/reconcile/", "api/", "functions/committer.py", "functions/api.py")),
        ("committer", ("pipeline/reconcile/", "api/", "functions/writer.py", "functions/api.py")),
        ("api", ("pipeline/git/", "functions/writer.py", "functions/committer.py")),
        ("attachments", ("pipeline/git/", "api/", "functions/writer.py", "functions/committer.py", "functions/api.py")),
    ],
)
def test_each_artifact_holds_its_own_packages_and_its_handler_imports_from_it_alone(
    function: str, left_out: tuple[str, ...], tmp_path: Path
) -> None:
    with zipfile.ZipFile(BUILD / f"{function}.zip") as z:
        names = z.namelist()
        z.extractall(tmp_path)
    assert f"functions/{function}.py" in names, "the handler is missing from the artifact"
    if function == "attachments":  # imported only when a copy starts, so the import probe below cannot see it
        assert "pipeline/reconcile/jira.py" in names
    assert not [n for n in names if n.startswith(left_out)]
    assert not [n for n in names if n.endswith("backends/embedded.py")]
    # The layer's packages come from the venv; JSync's own modules only from the unpacked artifact.
    probe = (
        f"import sys, functions.{function}\n"
        "ours = ('functions', 'pipeline', 'api')\n"
        "print(sorted(n for n, m in sys.modules.items() if n.split('.')[0] in ours and getattr(m, '__file__', None)\n"
        "    and not m.__file__.startswith(sys.argv[1])))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, str(tmp_path)], cwd=tmp_path, capture_output=True, text=True, env=_deployed_env()
    )
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr


def _deployed_env() -> dict[str, str]:
    """The environment a deployed function has, as far as importing its handler goes."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("JSYNC_")}
    return {**env, "JSYNC_BACKEND": "aws", "AWS_DEFAULT_REGION": "us-east-1"}


def test_only_the_committer_may_publish_events_and_only_on_the_named_bus() -> None:
    # Given the template packaged without eventBusName (a deploy passes it as the EventBusName stack parameter)
    template = json.loads(TEMPLATE.read_text())
    resources = template["Resources"]
    # Then the grant exists only when a bus is named, names that bus alone, and is the committer's
    assert template["Conditions"]["HasEventBus"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "EventBusName"}, ""]}]}
    policy = resources["CommitterEventsPolicy"]
    assert policy["Condition"] == "HasEventBus"
    assert policy["Properties"]["Roles"] == [{"Ref": "CommitterRole"}]
    bus = "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:event-bus/${EventBusName}"
    assert policy["Properties"]["PolicyDocument"]["Statement"] == [
        {"Effect": "Allow", "Action": ["events:PutEvents"], "Resource": {"Fn::Sub": bus}}
    ]
    for role in ROLES:
        assert not [s for s in statements(resources, role) if "events:" in json.dumps(s["Action"])], role
    for name in TIMEOUTS:
        env = resources[f"{name}LambdaFunction"]["Properties"]["Environment"]["Variables"]
        assert ("JSYNC_EVENT_BUS" in env) == (name == "Committer"), name
        assert env["POWERTOOLS_METRICS_NAMESPACE"] == "JSync", name
    assert resources["CommitterLambdaFunction"]["Properties"]["Environment"]["Variables"]["JSYNC_EVENT_BUS"] == {
        "Ref": "EventBusName"
    }
