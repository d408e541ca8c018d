"""A stage's options in the template `make package` builds: domain, webhook behind CloudFront, throttles, WAF, budget,
dashboard and duration alarms.

The options are template parameters (`--param=domainName=...` reaches them through `provider.stackParameters`), so
one template serves every stage: these tests resolve its Conditions for given parameter values, as CloudFormation
would, instead of packaging once per combination. `make test` runs `make package` first; run it yourself before
running this file alone.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / ".serverless" / "cloudformation-template-update-stack.json"
TIMEOUTS = {"Ingest": 10, "Writer": 30, "Committer": 120, "Api": 29, "Reconcile": 900, "Attachments": 300}
QUEUES = ("Events", "Commits", "Bell", "Sync", "Attachments")
CACHING_DISABLED = "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"
ALL_VIEWER_EXCEPT_HOST = "b689b0a8-53d0-40ab-baf2-68738e2966ac"
CLOUDFRONT_ZONE = "Z2FDTNDATAQYW2"
DOMAIN = "jsync.acme.example"
CERTIFICATE = "arn:aws:acm:us-east-1:123456789012:certificate/0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b"
EVERYTHING = {
    "DomainName": DOMAIN,
    "CertificateArn": CERTIFICATE,
    "HostedZoneId": "Z0123456789ABCDEFGHIJ",
    "WafRateLimit": "2000",
    "MonthlyBudget": "25",
}

pytestmark = pytest.mark.skipif(not TEMPLATE.exists(), reason="run `make package` first (make test does)")

_NO_VALUE = object()


def deployed(values: Mapping[str, str] | None = None, region: str = "us-east-1") -> dict[str, Any]:
    """The template as CloudFormation would deploy it with these parameter values: resources and outputs whose
    Condition is false dropped, each Fn::If decided, parameters put in (in Fn::Sub strings too)."""
    template = json.loads(TEMPLATE.read_text())
    params = {name: p.get("Default", "") for name, p in template.get("Parameters", {}).items()}
    unknown = set(values or {}) - set(params)
    assert not unknown, f"no such template parameters: {unknown}"
    params.update(values or {})
    refs = {**params, "AWS::Region": region}
    conditions: dict[str, bool] = {}

    def value(node: Any) -> Any:
        if isinstance(node, dict) and set(node) == {"Ref"} and node["Ref"] in refs:
            return refs[node["Ref"]]
        return node

    def holds(node: Any) -> bool:
        [(fn, args)] = node.items()
        if fn == "Condition":
            return condition(args)
        if fn == "Fn::Equals":
            return bool(value(args[0]) == value(args[1]))
        if fn == "Fn::Not":
            return not holds(args[0])
        if fn == "Fn::And":
            return all(holds(a) for a in args)
        if fn == "Fn::Or":
            return any(holds(a) for a in args)
        raise AssertionError(f"unexpected condition function {fn}")

    def condition(name: str) -> bool:
        if name not in conditions:
            conditions[name] = holds(template["Conditions"][name])
        return conditions[name]

    def render(node: Any) -> Any:
        if isinstance(node, list):
            return [r for r in (render(n) for n in node) if r is not _NO_VALUE]
        if not isinstance(node, dict):
            return node
        if set(node) == {"Fn::If"}:
            name, yes, no = node["Fn::If"]
            return render(yes if condition(name) else no)
        if node == {"Ref": "AWS::NoValue"}:
            return _NO_VALUE
        if set(node) == {"Ref"} and node["Ref"] in params:
            return params[node["Ref"]]
        if set(node) == {"Fn::Sub"} and isinstance(node["Fn::Sub"], str):
            text = re.sub(r"\$\{(\w+)\}", lambda m: params.get(m[1], m[0]), node["Fn::Sub"])
            return {"Fn::Sub": text}
        return {k: r for k, r in ((k, render(v)) for k, v in node.items()) if r is not _NO_VALUE}

    def kept(section: dict[str, Any]) -> dict[str, Any]:
        return {name: render(item) for name, item in section.items() if condition(item.get("Condition", ""))}

    conditions[""] = True  # no Condition: always made
    return {"Resources": kept(template["Resources"]), "Outputs": kept(template.get("Outputs", {}))}


def of_type(resources: dict[str, Any], kind: str) -> dict[str, Any]:
    return {name: r for name, r in resources.items() if r["Type"] == kind}


def distribution(stack: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = stack["Resources"]["ApiDistribution"]["Properties"]["DistributionConfig"]
    return config


@pytest.fixture(scope="module")
def plain() -> dict[str, Any]:
    return deployed()


@pytest.fixture(scope="module")
def everything() -> dict[str, Any]:
    return deployed(EVERYTHING)


def test_each_template_parameter_is_a_serverless_param() -> None:
    # Given the template's parameters and what serverless.yml feeds them
    template = json.loads(TEMPLATE.read_text())
    fed = dict(
        re.findall(
            r"ParameterKey: (\w+)\n\s+ParameterValue: \$\{param:(\w+), ''\}", (ROOT / "serverless.yml").read_text()
        )
    )
    # Then each is fed by the `--param` of its name, empty by default
    assert set(fed) == set(template["Parameters"])
    assert all(param == key[0].lower() + key[1:] for key, param in fed.items())
    assert all(p["Default"] == "" for p in template["Parameters"].values())


def test_without_params_the_stage_has_no_domain_waf_or_budget(plain: dict[str, Any]) -> None:
    resources = plain["Resources"]
    for kind in ("AWS::Route53::RecordSetGroup", "AWS::WAFv2::WebACL", "AWS::Budgets::Budget", "AWS::SNS::TopicPolicy"):
        assert not of_type(resources, kind), kind
    config = distribution(plain)
    assert not {"Aliases", "ViewerCertificate", "WebACLId"} & set(config)
    # CloudFront's own name serves the webhook, the API and the docs
    outputs = {name: o["Value"] for name, o in plain["Outputs"].items()}
    assert outputs["WebhookUrl"] == {"Fn::Sub": "https://${ApiDistribution.DomainName}/webhook"}
    assert outputs["ApiUrl"] == {"Fn::Sub": "https://${ApiDistribution.DomainName}/api/v1"}
    assert outputs["IngestFunctionUrl"] == {"Fn::GetAtt": ["IngestLambdaFunctionUrl", "FunctionUrl"]}


def test_a_domain_gets_its_alias_certificate_and_records(everything: dict[str, Any]) -> None:
    config = distribution(everything)
    assert config["Aliases"] == [DOMAIN]
    assert config["ViewerCertificate"] == {
        "AcmCertificateArn": CERTIFICATE,
        "SslSupportMethod": "sni-only",
        "MinimumProtocolVersion": "TLSv1.2_2021",
    }
    assert config["IPV6Enabled"] is True  # the AAAA record answers
    [records] = of_type(everything["Resources"], "AWS::Route53::RecordSetGroup").values()
    assert records["Properties"]["HostedZoneId"] == EVERYTHING["HostedZoneId"]
    sets = records["Properties"]["RecordSets"]
    assert sorted(r["Type"] for r in sets) == ["A", "AAAA"]
    for record in sets:
        assert record["Name"] == DOMAIN
        assert record["AliasTarget"]["DNSName"] == {"Fn::GetAtt": ["ApiDistribution", "DomainName"]}
        assert record["AliasTarget"]["HostedZoneId"] == CLOUDFRONT_ZONE
    outputs = {name: o["Value"] for name, o in everything["Outputs"].items()}
    assert outputs["WebhookUrl"] == {"Fn::Sub": f"https://{DOMAIN}/webhook"}
    assert outputs["ApiUrl"] == {"Fn::Sub": f"https://{DOMAIN}/api/v1"}
    assert outputs["DocsUrl"] == {"Fn::Sub": f"https://{DOMAIN}/docs"}


def test_a_domain_without_a_hosted_zone_leaves_dns_to_you() -> None:
    stack = deployed({"DomainName": DOMAIN, "CertificateArn": CERTIFICATE})
    assert distribution(stack)["Aliases"] == [DOMAIN]
    assert not of_type(stack["Resources"], "AWS::Route53::RecordSetGroup")
    # so the output names the host your own CNAME points at
    assert stack["Outputs"]["CloudFrontDomain"]["Value"] == {"Fn::GetAtt": ["ApiDistribution", "DomainName"]}
    # A hosted zone without a domain names nothing
    assert not of_type(deployed({"HostedZoneId": "Z0123"})["Resources"], "AWS::Route53::RecordSetGroup")


def test_the_certificate_must_be_in_us_east_1() -> None:
    pattern = json.loads(TEMPLATE.read_text())["Parameters"]["CertificateArn"]["AllowedPattern"]
    assert re.fullmatch(pattern, CERTIFICATE) and re.fullmatch(pattern, "")
    assert not re.fullmatch(pattern, CERTIFICATE.replace("us-east-1", "eu-west-1"))


@pytest.mark.parametrize("values", [{}, EVERYTHING], ids=["cloudfront-name", "own-domain"])
def test_the_webhook_has_a_stable_path_on_cloudfront_to_ingest_unsigned(values: dict[str, str]) -> None:
    config = distribution(deployed(values))
    [behaviour] = [b for b in config.get("CacheBehaviors", []) if b["PathPattern"] == "/webhook"]
    [origin] = [o for o in config["Origins"] if o["Id"] == behaviour["TargetOriginId"]]
    url = {"Fn::GetAtt": ["IngestLambdaFunctionUrl", "FunctionUrl"]}
    assert origin["DomainName"] == {"Fn::Select": [2, {"Fn::Split": ["/", url]}]}
    # Origin access control cannot sign Jira's POST body: ingest checks the HMAC itself, as on its own URL.
    assert "OriginAccessControlId" not in origin
    assert origin["CustomOriginConfig"]["OriginProtocolPolicy"] == "https-only"
    assert "POST" in behaviour["AllowedMethods"]
    assert behaviour["CachePolicyId"] == CACHING_DISABLED
    assert behaviour["OriginRequestPolicyId"] == ALL_VIEWER_EXCEPT_HOST  # the signature headers reach ingest
    assert behaviour["ViewerProtocolPolicy"] == "https-only"  # a redirect would lose the POST
    # Everything else still goes to the API, signed
    assert config["DefaultCacheBehavior"]["TargetOriginId"] == "api"
    urls = {n: r["Properties"]["AuthType"] for n, r in of_type(deployed()["Resources"], "AWS::Lambda::Url").items()}
    assert urls["IngestLambdaFunctionUrl"] == "NONE"


def test_ingest_takes_a_delivery_cloudfront_forwards_to_webhook(monkeypatch: pytest.MonkeyPatch) -> None:
    import functions.ingest as ingest

    # Given ingest's checks stubbed out, recording what they are given
    seen: dict[str, Any] = {}

    def accept(body: bytes, headers: dict[str, str], *_: Any) -> Any:
        seen.update(body=body, headers=headers)
        return SimpleNamespace(body=lambda: {"queued": True})

    monkeypatch.setattr(ingest, "accept", accept)
    monkeypatch.setattr(ingest, "get_settings", lambda: None)
    monkeypatch.setattr(ingest.services, "queues", lambda: None)
    monkeypatch.setattr(ingest.services, "store", lambda: None)
    # When CloudFront forwards a POST to /webhook (AllViewerExceptHostHeader: the URL's own Host, Jira's headers)
    event = {
        "version": "2.0",
        "rawPath": "/webhook",
        "headers": {
            "host": "abc.lambda-url.us-east-1.on.aws",
            "x-hub-signature": "sha256=00",
            "x-atlassian-webhook-identifier": "42",
            "via": "2.0 x.cloudfront.net (CloudFront)",
        },
        "requestContext": {"http": {"method": "POST", "path": "/webhook"}},
        "body": '{"webhookEvent": "jira:issue_updated"}',
        "isBase64Encoded": False,
    }
    answer = ingest.lambda_handler(event)
    # Then the path is no obstacle: the body and signature headers reach the checks, and the answer is 202
    assert answer["statusCode"] == 202
    assert seen["body"] == b'{"webhookEvent": "jira:issue_updated"}'
    assert seen["headers"]["x-hub-signature"] == "sha256=00"
    assert seen["headers"]["x-atlassian-webhook-identifier"] == "42"


def test_the_waf_caps_each_ip_at_the_param(everything: dict[str, Any]) -> None:
    [(name, acl)] = of_type(everything["Resources"], "AWS::WAFv2::WebACL").items()
    props = acl["Properties"]
    assert props["Scope"] == "CLOUDFRONT" and props["DefaultAction"] == {"Allow": {}}
    [rule] = props["Rules"]
    statement = rule["Statement"]["RateBasedStatement"]
    assert int(statement["Limit"]) == int(EVERYTHING["WafRateLimit"])
    assert statement["AggregateKeyType"] == "IP" and statement["EvaluationWindowSec"] == 300
    # 429, which Jira retries; a plain block would answer 403, which it does not
    assert rule["Action"]["Block"]["CustomResponse"]["ResponseCode"] == 429
    assert distribution(everything)["WebACLId"] == {"Fn::GetAtt": [name, "Arn"]}


def test_the_waf_is_made_only_in_us_east_1() -> None:
    # A CLOUDFRONT-scope web ACL cannot be created elsewhere: the param is then ignored (README)
    stack = deployed({"WafRateLimit": "2000"}, region="eu-west-1")
    assert not of_type(stack["Resources"], "AWS::WAFv2::WebACL")
    assert "WebACLId" not in distribution(stack)
    pattern = json.loads(TEMPLATE.read_text())["Parameters"]["WafRateLimit"]["AllowedPattern"]
    assert re.fullmatch(pattern, "2000") and re.fullmatch(pattern, "")
    assert not re.fullmatch(pattern, "9") and not re.fullmatch(pattern, "0100")


def test_the_budget_notifies_the_alarm_topic_which_lets_it(everything: dict[str, Any]) -> None:
    resources = everything["Resources"]
    [(name, budget)] = of_type(resources, "AWS::Budgets::Budget").items()
    spec = budget["Properties"]["Budget"]
    assert (spec["BudgetType"], spec["TimeUnit"]) == ("COST", "MONTHLY")
    assert spec["BudgetLimit"] == {"Amount": EVERYTHING["MonthlyBudget"], "Unit": "USD"}
    notices = {
        (n["Notification"]["NotificationType"], n["Notification"]["Threshold"]): n["Subscribers"]
        for n in budget["Properties"]["NotificationsWithSubscribers"]
    }
    topic = [{"SubscriptionType": "SNS", "Address": {"Ref": "AlarmTopic"}}]
    assert notices == {("ACTUAL", 80): topic, ("FORECASTED", 100): topic}
    # The topic's policy lets Budgets publish; it replaces SNS's default policy, so the alarms are let in again
    [(policy_name, policy)] = of_type(resources, "AWS::SNS::TopicPolicy").items()
    assert policy["Properties"]["Topics"] == [{"Ref": "AlarmTopic"}]
    allowed = {
        s["Principal"]["Service"]: s
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
        if s["Effect"] == "Allow" and s["Action"] == "sns:Publish"
    }
    assert set(allowed) == {"budgets.amazonaws.com", "cloudwatch.amazonaws.com"}
    assert all(s["Resource"] == {"Ref": "AlarmTopic"} and s["Condition"] for s in allowed.values())
    assert policy_name in budget["DependsOn"]


def test_ingest_and_api_have_reserved_concurrency_within_the_account_pool(plain: dict[str, Any]) -> None:
    reserved = {
        name: r["Properties"].get("ReservedConcurrentExecutions")
        for name, r in of_type(plain["Resources"], "AWS::Lambda::Function").items()
    }
    assert reserved["IngestLambdaFunction"] == 50 and reserved["ApiLambdaFunction"] == 20
    # Lambda keeps 100 of the account's concurrency unreserved: with the default quota of 1,000 this must fit
    assert sum(n for n in reserved.values() if n) + 100 <= 1000


@pytest.mark.parametrize("function", ["Writer", "Committer"])
def test_a_function_near_its_timeout_alarms(plain: dict[str, Any], function: str) -> None:
    alarms = [
        a["Properties"]
        for a in of_type(plain["Resources"], "AWS::CloudWatch::Alarm").values()
        if a["Properties"]["MetricName"] == "Duration"
        and a["Properties"]["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": f"{function}LambdaFunction"}}]
    ]
    [alarm] = alarms
    assert alarm["Namespace"] == "AWS/Lambda"
    assert alarm.get("Statistic") == "Maximum" or alarm.get("ExtendedStatistic") == "p99"
    assert alarm["Period"] * alarm["EvaluationPeriods"] == 300
    timeout_ms = TIMEOUTS[function] * 1000
    assert alarm["Threshold"] == 0.8 * timeout_ms < timeout_ms
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
    assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}]


def test_the_dashboard_shows_every_function_queue_and_jsync_count(plain: dict[str, Any]) -> None:
    [dashboard] = of_type(plain["Resources"], "AWS::CloudWatch::Dashboard").values()
    source = dashboard["Properties"]["DashboardBody"]["Fn::Sub"]
    # Every ${...} names a resource (or its attribute) or a pseudo parameter
    for ref in re.findall(r"\$\{([^}]+)\}", source):
        assert ref.startswith("AWS::") or ref.split(".")[0] in plain["Resources"], ref
    body = json.loads(re.sub(r"\$\{([^}]+)\}", r"<\1>", source))
    widgets = body["widgets"]
    assert all(w["x"] + w["width"] <= 24 for w in widgets)
    metrics = [m for w in widgets for m in w["properties"].get("metrics", [])]

    def shown(namespace: str, metric: str) -> set[str]:
        return {m[3] for m in metrics if m[:2] == [namespace, metric]}

    functions = {f"<{name}LambdaFunction>" for name in TIMEOUTS}
    for metric in ("Invocations", "Errors", "Duration", "Throttles"):
        assert shown("AWS/Lambda", metric) == functions, metric
    queues = {f"<{q}{kind}.QueueName>" for q in QUEUES for kind in ("Queue", "DeadLetterQueue")}
    for metric in ("ApproximateNumberOfMessagesVisible", "ApproximateAgeOfOldestMessage"):
        assert shown("AWS/SQS", metric) == queues, metric
    # JSync's own counts, by the service each function's Logger names (pipeline/metrics.py)
    services = {m[1]: m[3] for m in metrics if m[0] == "JSync" and m[2] == "service"}
    # ... of this stage only: two stages in one account share the namespace (pipeline/metrics.py adds `stage`)
    assert all(m[4:6] == ["stage", "<sls:stage>"] or m[4:6] == ["stage", "dev"] for m in metrics if m[0] == "JSync")
    assert services == {
        "EventsAccepted": "jsync-ingest",
        "EventsCaptured": "jsync-writer",
        "ChangesCommitted": "jsync-committer",
        "CommitLagMs": "jsync-committer",
        "ReconcileIssues": "jsync-reconcile",
        "AttachmentsStored": "jsync-attachments",
        "AttachmentBytes": "jsync-attachments",
    }
    for function in ("writer", "committer", "reconcile", "attachments"):
        code = (ROOT / "functions" / f"{function}.py").read_text()
        assert f'Logger(service="jsync-{function}")' in code, function
    refused, not_stored = [m[0]["expression"] for m in metrics if isinstance(m[0], dict)]
    assert 'MetricName="AttachmentsNotStored"' in not_stored and "jsync-attachments" in not_stored
    assert all('stage="dev"' in e for e in (refused, not_stored))
    assert 'MetricName="EventsRefused"' in refused and "{JSync,reason,service,stage}" in refused
    assert "jsync-ingest" in refused
