"""Pulumi type tokens to the Terraform resource types they are bridged from.

pulumi-aws is generated from the Terraform AWS provider, and its tokens follow one rule:
`aws:<module>/<camelName>:<Name>` is `aws_<module>_<snake name>`, except that the `ec2`
module holds the provider's unprefixed resources (`aws:ec2/vpc:Vpc` is `aws_vpc`). The
installed package ships no schema or bridge metadata to read the mapping from, so the rule
is applied here and the few tokens that break it are listed. A test checks that every type
the stacks declare maps to a type checkov has checks for, or is listed in `NO_TERRAFORM_TWIN`.
"""

from __future__ import annotations

import re

# Tokens whose Terraform type the rule does not give. Each one is the provider's own
# mapping (pulumi-aws's resources.go).
EXCEPTIONS = {
    "aws:lb/loadBalancer:LoadBalancer": "aws_lb",
    "aws:alb/loadBalancer:LoadBalancer": "aws_alb",
    # RDS instances, parameter and subnet groups kept Terraform's older `db_` prefix.
    "aws:rds/instance:Instance": "aws_db_instance",
    "aws:rds/parameterGroup:ParameterGroup": "aws_db_parameter_group",
    "aws:rds/subnetGroup:SubnetGroup": "aws_db_subnet_group",
    "aws:rds/optionGroup:OptionGroup": "aws_db_option_group",
    "aws:rds/snapshot:Snapshot": "aws_db_snapshot",
    "aws:iam/openIdConnectProvider:OpenIdConnectProvider": "aws_iam_openid_connect_provider",
    "aws:cloudtrail/trail:Trail": "aws_cloudtrail",
    # pulumi-aws 6 named the current S3 resources with a V2 suffix.
    "aws:s3/bucketV2:BucketV2": "aws_s3_bucket",
    "aws:s3/bucketVersioningV2:BucketVersioningV2": "aws_s3_bucket_versioning",
    "aws:s3/bucketLifecycleConfigurationV2:BucketLifecycleConfigurationV2": (
        "aws_s3_bucket_lifecycle_configuration"
    ),
    "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2": (
        "aws_s3_bucket_server_side_encryption_configuration"
    ),
    "aws:s3/bucketLoggingV2:BucketLoggingV2": "aws_s3_bucket_logging",
    # Pulumi shortened Terraform's `_configuration`.
    "aws:s3/bucketReplicationConfig:BucketReplicationConfig": (
        "aws_s3_bucket_replication_configuration"
    ),
}

# Modules whose Terraform types carry no module prefix.
UNPREFIXED_MODULES = {"ec2", "index"}

# Declared resources that have no Terraform AWS twin, and why they are left out of the plan.
NO_TERRAFORM_TWIN = {
    "random:index/randomPassword:RandomPassword": (
        "a value generated into the state (the random provider, not AWS): there is no AWS "
        "resource to misconfigure; the secret that stores it is checked"
    ),
    "random:index/randomString:RandomString": "a generated value, as for RandomPassword",
    "random:index/randomId:RandomId": "a generated value, as for RandomPassword",
}

_TOKEN = re.compile(r"(?P<pkg>[a-z0-9]+):(?P<module>[A-Za-z0-9]+)/[A-Za-z0-9]+:(?P<name>\w+)")


def snake(name: str) -> str:
    """`BucketPublicAccessBlock` -> `bucket_public_access_block`; `Eip` -> `eip`."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name)
    return spaced.lower()


def terraform_type(token: str) -> str | None:
    """The Terraform type of a Pulumi custom resource, or None when it has no twin (listed
    in `NO_TERRAFORM_TWIN`, or not a bridged provider's token at all)."""
    if token in EXCEPTIONS:
        return EXCEPTIONS[token]
    if token in NO_TERRAFORM_TWIN:
        return None
    match = _TOKEN.fullmatch(token)
    if match is None or match["pkg"] not in {"aws", "random"}:
        return None
    module = match["module"].lower()
    prefix = "" if module in UNPREFIXED_MODULES else f"{module}_"
    return f"{match['pkg']}_{prefix}{snake(match['name'])}"
