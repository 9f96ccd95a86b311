#!/usr/bin/python
"""The archive bucket's lifecycle rules, set in one read-modify-write (roles/sc2s3_aws)."""

from __future__ import annotations

from contextlib import suppress
from copy import deepcopy

from ansible_collections.amazon.aws.plugins.module_utils.botocore import (
    is_boto3_error_code,
    normalize_boto3_result,
)
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry

with suppress(ImportError):  # AnsibleAWSModule reports a missing botocore
    import botocore

DOCUMENTATION = r"""
---
module: sc2s3_s3_lifecycle
short_description: Set lifecycle rules of an S3 bucket by rule ID, filters of any kind
description:
  - Makes each rule of I(rules) present in the bucket's lifecycle configuration exactly as
    given, matched by its C(ID); rules with other IDs are kept as they are.
  - All rules are written in one PutBucketLifecycleConfiguration, read-modify-write: no second
    task reads a configuration that the first one wrote a moment ago (S3 may answer a read
    right after a write with the previous configuration).
  - Written for roles/sc2s3_aws because C(community.aws.s3_lifecycle) builds only prefix
    and object-size filters, never a tag filter.
  - Supports check mode and diff mode. In check mode a missing bucket reports a change.
options:
  name:
    description: Name of the bucket.
    required: true
    type: str
  rules:
    description:
      - Lifecycle rules as PutBucketLifecycleConfiguration takes them (C(ID), C(Status),
        C(Filter), and the actions), each with a distinct C(ID).
      - A rule equal to the bucket's rule of the same ID changes nothing; a C(Filter) of
        C({}) and C({Prefix: ""}) are equal (both are the whole bucket).
    required: true
    type: list
    elements: dict
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Expire noncurrent versions of bookkeeping objects after 30 days
  sc2s3_s3_lifecycle:
    name: my-archive
    rules:
      - ID: bookkeeping-state
        Status: Enabled
        Filter: {Prefix: "soundcloud/state/"}
        NoncurrentVersionExpiration: {NoncurrentDays: 30}
      - ID: bookkeeping-tagged
        Status: Enabled
        Filter: {Tag: {Key: kind, Value: bookkeeping}}
        NoncurrentVersionExpiration: {NoncurrentDays: 30}
"""

RETURN = r"""
rules:
  description: The bucket's lifecycle rules after the task (as written; in check mode, as they
    would be written).
  returned: always
  type: list
  elements: dict
"""

MAX_ID_LENGTH = 255


def canonical(rule: dict) -> dict:
    """``rule`` for comparison: JSON types, the whole-bucket filter in one spelling."""
    rule = normalize_boto3_result(deepcopy(rule))
    if rule.get("Filter") == {}:
        rule["Filter"] = {"Prefix": ""}
    return rule


def check_rules(module, rules: list[dict]) -> None:
    ids = [rule.get("ID") for rule in rules]
    for rule_id in ids:
        if not isinstance(rule_id, str) or not 0 < len(rule_id) <= MAX_ID_LENGTH:
            module.fail_json(msg=f"every rule needs an ID of 1-{MAX_ID_LENGTH} characters, got {rule_id!r}")
    if len(set(ids)) != len(ids):
        module.fail_json(msg=f"rule IDs must be distinct, got {ids}")
    for rule in rules:
        if rule.get("Status") not in ("Enabled", "Disabled"):
            module.fail_json(msg=f"rule {rule['ID']}: Status must be Enabled or Disabled")
        if not isinstance(rule.get("Filter"), dict):
            module.fail_json(msg=f"rule {rule['ID']}: a Filter is required")


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(
            name=dict(required=True, type="str"),
            rules=dict(required=True, type="list", elements="dict"),
        ),
        supports_check_mode=True,
    )
    bucket, wanted = module.params["name"], module.params["rules"]
    check_rules(module, wanted)
    s3 = module.client("s3", retry_decorator=AWSRetry.jittered_backoff())

    extra = {}
    try:
        answer = s3.get_bucket_lifecycle_configuration(aws_retry=True, Bucket=bucket)
        current = answer["Rules"]
        # Keep the bucket's choice (PutBucketLifecycleConfiguration resets it when left out).
        if answer.get("TransitionDefaultMinimumObjectSize"):
            extra["TransitionDefaultMinimumObjectSize"] = answer["TransitionDefaultMinimumObjectSize"]
    except is_boto3_error_code("NoSuchLifecycleConfiguration"):
        current = []
    except is_boto3_error_code("NoSuchBucket") as e:  # pylint: disable=duplicate-except
        if not module.check_mode:
            module.fail_json_aws(e, msg=f"bucket {bucket} does not exist")
        current = []
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:  # pylint: disable=duplicate-except
        module.fail_json_aws(e, msg=f"cannot read the lifecycle configuration of {bucket}")

    by_id = {rule["ID"]: rule for rule in wanted}
    rules = [by_id.pop(rule.get("ID"), rule) for rule in current] + list(by_id.values())
    before, after = normalize_boto3_result(current), normalize_boto3_result(rules)
    changed = [canonical(rule) for rule in current] != [canonical(rule) for rule in rules]

    if changed and not module.check_mode:
        try:
            s3.put_bucket_lifecycle_configuration(
                aws_retry=True, Bucket=bucket, LifecycleConfiguration={"Rules": rules}, **extra)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
            module.fail_json_aws(e, msg=f"cannot write the lifecycle configuration of {bucket}",
                                 rules=after)

    result = dict(changed=changed, rules=after)
    if module._diff:
        result["diff"] = dict(before=dict(Rules=before), after=dict(Rules=after))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
