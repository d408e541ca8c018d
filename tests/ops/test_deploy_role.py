"""ops/deploy-role.yml: the role CI deploys with grants what the stack `make package` builds needs, scoped to it.

What CloudFormation calls for each resource type comes from the resource schemas cfn-lint ships (their handlers'
permissions); which resource an IAM action can be scoped to comes from the Service Authorization Reference data
cfn-lint ships too. Both are offline, so a resource type added to serverless.yml without a permission here fails.
The packaged-template tests need `make package` first (make test runs it).
"""

from __future__ import annotations

import fnmatch
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import cfnlint
import pytest
from cfnlint.api import ManualArgs, lint_file
from cfnlint.decode import cfn_yaml

from tests.deploy.test_template import TEMPLATE

ROOT = Path(__file__).resolve().parents[2]
ROLE_TEMPLATE = ROOT / "ops" / "deploy-role.yml"
CFNLINT_DATA = Path(cfnlint.__file__).parent / "data"
STAGE = "dev"  # what `make package` builds
PARAMETERS = {
    "AWS::Partition": "aws",
    "AWS::Region": "eu-west-1",
    "AWS::AccountId": "123456789012",
    "GitHubRepository": "acme/jsync",
    "Stage": STAGE,
    "GitHubSubject": "",
    "OidcProviderArn": "",
    "HostedZoneId": "Z0123456789EXAMPLE",
}
# How a resource type's service is spelled in IAM, where it is not the type's middle part in lower case.
IAM_PREFIX = {"CertificateManager": "acm", "ApiGatewayV2": "apigateway", "KinesisFirehose": "firehose"}
# What the resource schemas list but this stack never uses, so CloudFormation never calls it for JSync: whole
# services, then single actions (action@type where only that type's use is ruled out).
UNUSED_SERVICES = {
    "ec2": "functions are not in a VPC",
    "elasticfilesystem": "no EFS",
    "s3files": "no S3 file system mounts",
    "kms": "no customer-managed KMS key (SSE-S3; Lambda, SQS and logs encrypt with AWS keys)",
    "s3tables": "no S3 metadata tables",
    "firehose": "no log delivery to Firehose",
    "payments": "payments:GetConnectedAccount is not an IAM action the Service Authorization Reference lists",
    "billing": "billing:GetBillingViewData is only for a budget with a BillingViewArn",
}
UNUSED = {
    "lambda:AssociateRuntimeAlias": "no runtime alias; not an action IAM knows yet (cfn-lint W3037)",
    "lambda:PassCapacityProvider": "no Lambda capacity provider",
    "lambda:GetCodeSigningConfig": "no code signing",
    "lambda:PutFunctionCodeSigningConfig": "no code signing",
    "lambda:DeleteFunctionCodeSigningConfig": "no code signing",
    "lambda:PutProvisionedConcurrencyConfig": "no provisioned concurrency",
    "iam:PassRole@AWS::S3::Bucket": "no replication role",
    "iam:PassRole@AWS::SNS::Topic": "no delivery status logging role",
    "iam:GetRole@AWS::SNS::Topic": "no delivery status logging role",
    "iam:GetRole@AWS::SNS::Subscription": "no Firehose subscription role",
    "iam:PassRole@AWS::SNS::Subscription": "no Firehose subscription role",
    "iam:PassRole@AWS::Events::Rule": "the rules target SQS, which takes no role",
    "s3:PutObjectAcl": "no object ACLs (the capture bucket enforces bucket-owner ownership)",
    "s3:DeleteObject@AWS::S3::Bucket": "CloudFormation deletes no objects (osls empties its own bucket)",
    "s3:DeleteBucketEncryption": "not an IAM action: S3 authorizes it as s3:PutEncryptionConfiguration",
    "s3:DeleteBucketLifecycle": "not an IAM action: S3 authorizes it as s3:PutLifecycleConfiguration",
    "s3:DeleteBucketCors": "not an IAM action: S3 authorizes it as s3:PutBucketCORS",
    "s3:DeleteBucketAnalyticsConfiguration": "not an IAM action: S3 authorizes it as s3:PutAnalyticsConfiguration",
    "s3:DeleteBucketMetricsConfiguration": "not an IAM action: S3 authorizes it as s3:PutMetricsConfiguration",
    "s3:PutReplicationConfiguration": "no replication",
    "s3:PutBucketReplication": "no replication",
    "s3:DeleteBucketReplication": "no replication",
    "s3:PutBucketObjectLockConfiguration": "no object lock",
    "s3:PutObjectLockConfiguration": "no object lock",
    "s3:CreateBucketMetadataTableConfiguration": "no S3 metadata tables",
    "s3:DeleteBucketMetadataTableConfiguration": "no S3 metadata tables",
    "s3:UpdateBucketMetadataJournalTableConfiguration": "no S3 metadata tables",
    "s3:UpdateBucketMetadataInventoryTableConfiguration": "no S3 metadata tables",
    "s3:UpdateBucketMetadataAnnotationTableConfiguration": "no S3 metadata tables",
    "s3:REST.PUT.OBJECT": "log delivery to S3, not used",
    "logs:AssociateKmsKey": "no customer-managed KMS key",
    "logs:DisassociateKmsKey": "no customer-managed KMS key",
    "logs:CreateLogDelivery": "no log delivery",
    "logs:PutDataProtectionPolicy": "no data protection policy",
    "logs:DeleteDataProtectionPolicy": "no data protection policy",
    "logs:PutIndexPolicy": "no field index policy",
    "logs:DeleteIndexPolicy": "no field index policy",
    "logs:PutResourcePolicy": "account-wide logs resource policy: not the stack's",
    "logs:DeleteResourcePolicy": "account-wide logs resource policy: not the stack's",
    "logs:PutBearerTokenAuthentication": "no bearer token log ingestion",
    "sns:PutDataProtectionPolicy": "no message data protection",
    "cloudfront:CreateConnectionGroup": "no multi-tenant distribution",
    "cloudfront:GetConnectionGroup": "no multi-tenant distribution",
    "cloudfront:GetVpcOrigin": "no VPC origin",
    "cloudfront:CreateDistributionWithTags": "authorized as cloudfront:CreateDistribution + TagResource",
    "cloudfront:UpdateDistributionWithStagingConfig": "no continuous deployment",
    "events:PutPermission": "no event bus of the stack's own",
    "events:RemovePermission": "no event bus of the stack's own",
    "iam:AttachRolePolicy": "roles have inline policies only (attaching a managed policy would widen them)",
    "iam:DetachRolePolicy": "roles have inline policies only",
    "iam:PutRolePermissionsBoundary": "no permissions boundary",
    "iam:DeleteRolePermissionsBoundary": "no permissions boundary",
    "iam:PutUserPolicy": "AWS::IAM::Policy on roles only",
    "iam:GetUserPolicy": "AWS::IAM::Policy on roles only",
    "iam:DeleteUserPolicy": "AWS::IAM::Policy on roles only",
    "iam:PutGroupPolicy": "AWS::IAM::Policy on roles only",
    "iam:GetGroupPolicy": "AWS::IAM::Policy on roles only",
    "iam:DeleteGroupPolicy": "AWS::IAM::Policy on roles only",
}
# Types the stack is about to get (custom domain, WAF, dashboard, budget, EventBridge publishing): the role is ready.
COMING = (
    "AWS::Route53::RecordSet",
    "AWS::WAFv2::WebACL",
    "AWS::CloudWatch::Dashboard",
    "AWS::Budgets::Budget",
    "AWS::IAM::Policy",
    "AWS::SNS::TopicPolicy",
    "AWS::CloudFront::Function",
    "AWS::CloudFront::OriginRequestPolicy",
    "AWS::CloudFront::ResponseHeadersPolicy",
    "AWS::Scheduler::Schedule",
    "AWS::Lambda::EventInvokeConfig",
)
# Resources a statement may name without the stage, because the service names them by random ids.
UNNAMED = (
    "arn:aws:cloudfront::123456789012:distribution/*",
    "arn:aws:cloudfront::123456789012:origin-access-control/*",
    "arn:aws:cloudfront::123456789012:cache-policy/*",
    "arn:aws:cloudfront::123456789012:origin-request-policy/*",
    "arn:aws:cloudfront::123456789012:response-headers-policy/*",
    "arn:aws:lambda:eu-west-1:123456789012:event-source-mapping:*",
    "arn:aws:route53:::change/*",
    "arn:aws:route53:::hostedzone/Z0123456789EXAMPLE",
)
MANAGED_POLICY_LIMIT = 6144  # characters, whitespace excluded
NO_VALUE = object()  # what Ref AWS::NoValue resolves to: the key or item is dropped


def resolve(node: Any, conditions: dict[str, bool], params: dict[str, str]) -> Any:
    """The template as CloudFormation would see it for these parameters (just the intrinsics this one uses)."""
    if isinstance(node, list):
        items = [resolve(item, conditions, params) for item in node]
        return [item for item in items if item is not NO_VALUE]
    if not isinstance(node, dict):
        return node
    if len(node) == 1:
        ((key, value),) = node.items()
        if key == "Ref":
            return NO_VALUE if value == "AWS::NoValue" else params.get(value, value)
        if key == "Fn::Sub":
            text, local = (value, {}) if isinstance(value, str) else (value[0], value[1])
            names = {**params, **{k: resolve(v, conditions, params) for k, v in local.items()}}
            return re.sub(r"\$\{([^}]+)\}", lambda m: names.get(m[1], f"<{m[1]}>"), text)
        if key == "Fn::If":
            name, yes, no = value
            return resolve(yes if conditions[name] else no, conditions, params)
        if key == "Fn::GetAtt":
            return f"<{'.'.join(value)}>"
    resolved = {k: resolve(v, conditions, params) for k, v in node.items()}
    return {k: v for k, v in resolved.items() if v is not NO_VALUE}


def evaluate(condition: Any, conditions: dict[str, Any], params: dict[str, str]) -> bool:
    ((key, value),) = condition.items()
    if key == "Fn::Equals":
        left, right = (resolve(v, {}, params) for v in value)
        return bool(left == right)
    if key == "Fn::Not":
        return not evaluate(value[0], conditions, params)
    if key == "Condition":
        return evaluate(conditions[value], conditions, params)
    raise AssertionError(f"condition {key} not understood by this test")


@cache
def raw_template() -> dict[str, Any]:
    # cfn-lint's loader reads !Ref, !Sub and !If as {"Ref": ...}, {"Fn::Sub": ...}, {"Fn::If": ...}
    return dict(json.loads(json.dumps(cfn_yaml.load(str(ROLE_TEMPLATE)))))


def role_template(**overrides: str) -> dict[str, Any]:
    raw = raw_template()
    params = {**PARAMETERS, **overrides}
    conditions = {name: evaluate(c, raw["Conditions"], params) for name, c in raw["Conditions"].items()}
    resources = {
        name: resource
        for name, resource in raw["Resources"].items()
        if "Condition" not in resource or conditions[resource["Condition"]]
    }
    return dict(resolve({**raw, "Resources": resources}, conditions, params))


def policies(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = {n: r["Properties"] for n, r in template["Resources"].items() if r["Type"] == "AWS::IAM::ManagedPolicy"}
    assert all(p["Roles"] == ["DeployRole"] for p in found.values())
    return found


def statements(template: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for p in policies(template).values() for s in p["PolicyDocument"]["Statement"]]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def allowed(template: dict[str, Any]) -> set[str]:
    return {a for s in statements(template) if s["Effect"] == "Allow" for a in as_list(s["Action"])}


@cache
def iam_reference() -> dict[str, Any]:
    """Service Authorization Reference, as cfn-lint ships it: actions (lower case) -> resource types -> ARN formats."""
    return dict(json.loads((CFNLINT_DATA / "AdditionalSpecs" / "Policies.json").read_text()))


@cache
def handler_permissions(resource_type: str) -> set[str]:
    """What CloudFormation's handlers for this type may call (create, read, update, delete); empty if unknown."""
    schemas = CFNLINT_DATA / "schemas"
    index = json.loads((schemas / "providers" / "us-east-1.json").read_text())
    if resource_type not in index:
        return set()
    schema = json.loads((schemas / "resources" / f"{index[resource_type]}.json").read_text())
    handlers = schema.get("handlers", {})
    return {p for step in ("create", "read", "update", "delete") for p in handlers.get(step, {}).get("permissions", [])}


def iam_prefix(resource_type: str) -> str:
    service = resource_type.split("::")[1]
    return IAM_PREFIX.get(service, service.lower())


def missing_for(resource_type: str, granted: set[str]) -> list[str]:
    return sorted(
        p
        for p in handler_permissions(resource_type)
        if p not in granted
        and p not in UNUSED
        and f"{p}@{resource_type}" not in UNUSED
        and p.split(":")[0] not in UNUSED_SERVICES
    )


@pytest.fixture(scope="module")
def packaged_types() -> set[str]:
    if not TEMPLATE.exists():
        pytest.skip("run `make package` first (make test does)")
    return {r["Type"] for r in json.loads(TEMPLATE.read_text())["Resources"].values()}


# ---------------------------------------------------------------------------------------------- (a) it is valid


def test_the_role_template_parses_with_its_intrinsics_and_passes_cfn_lint() -> None:
    raw = raw_template()
    assert raw["Resources"]["DeployRole"]["Type"] == "AWS::IAM::Role"
    assert raw["Resources"]["DeployRole"]["Properties"]["RoleName"] == {"Fn::Sub": "github-deploy-jsync-${Stage}"}
    matches = lint_file(ROLE_TEMPLATE, config=ManualArgs(regions=["us-east-1", "eu-west-1"]))
    assert not matches, "\n".join(str(m) for m in matches)


def test_each_managed_policy_fits_iams_size_limit() -> None:
    for name, policy in policies(role_template()).items():
        size = len(json.dumps(policy["PolicyDocument"], separators=(",", ":")))
        assert size < MANAGED_POLICY_LIMIT, (name, size)


# ---------------------------------------------------------------------------------------------- (b) it is enough


def test_every_resource_type_of_the_packaged_stack_has_its_service_granted(packaged_types: set[str]) -> None:
    granted = allowed(role_template())
    services = {a.split(":")[0] for a in granted}
    assert {t for t in packaged_types if iam_prefix(t) not in services} == set()


def test_every_permission_cloudformation_needs_for_the_packaged_stack_is_granted(packaged_types: set[str]) -> None:
    granted = allowed(role_template())
    assert {t: missing_for(t, granted) for t in packaged_types if missing_for(t, granted)} == {}


@pytest.mark.parametrize("resource_type", COMING)
def test_the_role_is_ready_for_the_resource_types_being_added(resource_type: str) -> None:
    granted = allowed(role_template())
    assert iam_prefix(resource_type) in {a.split(":")[0] for a in granted}
    assert missing_for(resource_type, granted) == []


def test_what_osls_calls_itself_is_granted() -> None:
    # deploy: the bucket and artifacts, change detection, template validation, the stack and its events;
    # rollback: an older template; remove: every object version, then the stack. `make deploy` checks the secrets.
    osls = {
        "s3:ListBucket",
        "s3:ListBucketVersions",
        "s3:GetObject",
        "s3:PutObject",
        "s3:DeleteObject",
        "s3:DeleteObjectVersion",
        "lambda:GetFunction",
        "cloudformation:ValidateTemplate",
        "cloudformation:CreateStack",
        "cloudformation:UpdateStack",
        "cloudformation:DeleteStack",
        "cloudformation:DescribeStacks",
        "cloudformation:DescribeStackEvents",
        "cloudformation:DescribeStackResource",
        "cloudformation:ListStackResources",
        "cloudformation:GetTemplate",
        "secretsmanager:DescribeSecret",
        "secretsmanager:GetSecretValue",
    }
    assert osls - allowed(role_template()) == set()


def test_named_resources_of_the_packaged_stack_fall_under_the_roles_patterns() -> None:
    if not TEMPLATE.exists():
        pytest.skip("run `make package` first (make test does)")
    # Types whose generated names do not start with the stack name must be named, and named jsync-<stage>...
    must_be_named = {
        "AWS::CloudWatch::Dashboard": ("DashboardName",),
        "AWS::Budgets::Budget": ("Budget", "BudgetName"),
        "AWS::WAFv2::WebACL": ("Name",),
        "AWS::CloudFront::Function": ("Name",),
        "AWS::Scheduler::Schedule": ("Name",),
    }
    # ...and where a name is given, it must be one the role's patterns cover.
    may_be_named = {
        "AWS::Lambda::Function": ("FunctionName",),
        "AWS::Lambda::LayerVersion": ("LayerName",),
        "AWS::SQS::Queue": ("QueueName",),
        "AWS::SNS::Topic": ("TopicName",),
        "AWS::IAM::Role": ("RoleName",),
        "AWS::S3::Bucket": ("BucketName",),
        "AWS::CloudWatch::Alarm": ("AlarmName",),
        "AWS::Events::Rule": ("Name",),
        "AWS::Logs::LogGroup": ("LogGroupName",),
    }
    for name, resource in json.loads(TEMPLATE.read_text())["Resources"].items():
        kind = resource["Type"]
        path = must_be_named.get(kind) or may_be_named.get(kind)
        if path is None:
            continue
        value: Any = resource.get("Properties", {})
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if value is None:
            assert kind not in must_be_named, f"{name}: name it jsync-{STAGE}-..., the deploy role's pattern"
            continue
        text = value if isinstance(value, str) else json.dumps(value)
        prefix = f"/aws/lambda/jsync-{STAGE}-" if kind == "AWS::Logs::LogGroup" else f"jsync-{STAGE}"
        assert text.startswith(prefix) or f'"{prefix}' in text, (name, text)


# ---------------------------------------------------------------------------------------------- (c) it is scoped


def test_no_wildcard_actions_and_no_not_action_or_not_resource() -> None:
    for statement in statements(role_template()):
        assert not {"NotAction", "NotResource", "NotPrincipal"} & set(statement), statement
        for action in as_list(statement["Action"]):
            assert "*" not in action and "?" not in action, action


def test_pass_role_only_for_the_stage_roles_and_only_to_lambda_and_the_scheduler() -> None:
    passing = [s for s in statements(role_template()) if "iam:PassRole" in as_list(s["Action"])]
    assert passing
    for statement in passing:
        assert as_list(statement["Action"]) == ["iam:PassRole"]
        assert as_list(statement["Resource"]) == [f"arn:aws:iam::123456789012:role/jsync-{STAGE}-*"]
        services = statement["Condition"]["StringEquals"]["iam:PassedToService"]
        assert set(as_list(services)) <= {"lambda.amazonaws.com", "scheduler.amazonaws.com"}


@pytest.mark.parametrize("hosted_zone", ["", "Z0123456789EXAMPLE"], ids=["no-domain", "custom-domain"])
def test_every_statement_is_scoped_as_narrowly_as_its_service_allows(hosted_zone: str) -> None:
    reference = iam_reference()
    for statement in statements(role_template(HostedZoneId=hosted_zone)):
        resources = as_list(statement["Resource"])
        for action in as_list(statement["Action"]):
            service, name = action.split(":")
            types = reference[service]["Actions"][name.lower()].get("Resources", [])
            if resources == ["*"]:
                # "*" only where IAM can authorize the action on nothing narrower
                assert not types, f"{statement['Sid']}: {action} can be scoped to {types}"
                continue
            # a narrower resource must be one the action is authorized on, or the grant does nothing
            formats = [f for t in types for f in reference[service]["Resources"][t.lower()]["ARNFormats"]]
            assert any(arn_fits(r, f) for r in resources for f in formats), (statement["Sid"], action, resources)
        if resources != ["*"]:
            for resource in resources:
                # jsync-dev-..., the stack jsync-dev/..., the secrets jsync/dev/..., the dashboard and budget jsync-dev*
                marks = (f"jsync-{STAGE}-", f"jsync-{STAGE}/", f"jsync/{STAGE}/")
                named = any(m in resource for m in marks) or resource.endswith(f"jsync-{STAGE}*")
                assert named or resource in UNNAMED, (statement["Sid"], resource)


def arn_fits(pattern: str, arn_format: str) -> bool:
    """Whether some ARN matched by the IAM pattern (its * and ?) has the format of the reference (a regex)."""
    regex = arn_format.replace("${Partition}", "aws").replace("${Region}", "[a-z0-9-]+")
    regex = regex.replace("${Account}", "[0-9]{12}")
    wildcards = pattern.count("*")
    samples = ["x", "x:1", "x/y"]
    for fill in _combinations(samples, wildcards):
        concrete = pattern.replace("?", "x")
        for value in fill:
            concrete = concrete.replace("*", value, 1)
        if re.fullmatch(regex, concrete) and fnmatch.fnmatchcase(concrete, pattern):
            return True
    return False


def _combinations(samples: list[str], count: int) -> list[tuple[str, ...]]:
    combos: list[tuple[str, ...]] = [()]
    for _ in range(count):
        combos = [c + (s,) for c in combos for s in samples]
    return combos


def test_secrets_deploy_only_checks_exist_and_reads_only_the_jira_one() -> None:
    grants = [
        s for s in statements(role_template()) if any(a.startswith("secretsmanager:") for a in as_list(s["Action"]))
    ]
    by_action = {a: as_list(s["Resource"]) for s in grants for a in as_list(s["Action"])}
    prefix = f"arn:aws:secretsmanager:eu-west-1:123456789012:secret:jsync/{STAGE}/"
    assert by_action == {
        "secretsmanager:DescribeSecret": [prefix + "*"],
        "secretsmanager:GetSecretValue": [prefix + "jira*"],
    }


def test_the_capture_bucket_cannot_be_deleted_and_its_objects_are_never_granted() -> None:
    template = role_template()
    denied = [s for s in statements(template) if s["Effect"] == "Deny"]
    assert denied == [
        {
            "Sid": "TheCaptureBucketOutlivesTheStack",
            "Effect": "Deny",
            "Action": "s3:DeleteBucket",
            "Resource": f"arn:aws:s3:::jsync-{STAGE}-capturebucket-*",
        }
    ]
    for statement in statements(template):
        for resource in as_list(statement["Resource"]):
            if resource.startswith("arn:aws:s3:::") and "/" in resource:
                assert resource == f"arn:aws:s3:::jsync-{STAGE}-serverlessdeploymentbucket-*/*", resource


@pytest.mark.parametrize(
    ("overrides", "subject"),
    [
        ({}, f"repo:acme/jsync:environment:{STAGE}"),
        ({"GitHubSubject": "ref:refs/tags/v*"}, "repo:acme/jsync:ref:refs/tags/v*"),
    ],
)
def test_only_github_oidc_for_the_repository_may_assume_it(overrides: dict[str, str], subject: str) -> None:
    template = role_template(**overrides)
    (trust,) = template["Resources"]["DeployRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert trust["Principal"] == {"Federated": "GitHubOidcProvider"}
    assert trust["Condition"] == {
        "StringEquals": {"token.actions.githubusercontent.com:aud": "sts.amazonaws.com"},
        "StringLike": {"token.actions.githubusercontent.com:sub": subject},
    }
    provider = template["Resources"]["GitHubOidcProvider"]["Properties"]
    assert provider == {"Url": "https://token.actions.githubusercontent.com", "ClientIdList": ["sts.amazonaws.com"]}


def test_an_existing_oidc_provider_is_reused_not_created() -> None:
    arn = "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"
    template = role_template(OidcProviderArn=arn)
    assert "GitHubOidcProvider" not in template["Resources"]
    (trust,) = template["Resources"]["DeployRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Federated": arn}
    assert template["Outputs"]["OidcProviderArn"]["Value"] == arn


def test_the_role_cannot_change_itself() -> None:
    # Its own name and its policies' are off every pattern it is granted on.
    template = role_template()
    names = [template["Resources"]["DeployRole"]["Properties"]["RoleName"]]
    names += [p["ManagedPolicyName"] for p in policies(template).values()]
    for name in names:
        assert not name.startswith(f"jsync-{STAGE}"), name
    iam_resources = [r for s in statements(template) if s["Effect"] == "Allow" for r in as_list(s["Resource"])]
    assert not [r for r in iam_resources if ":policy/" in r or "github-deploy" in r]
