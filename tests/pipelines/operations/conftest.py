"""The operations run against both targets: the aws tests here use the aws target's fakes
(no real credentials, a clock that never sleeps)."""

from tests.pipelines.targets.aws.conftest import fake_aws, fake_time

__all__ = ["fake_aws", "fake_time"]
