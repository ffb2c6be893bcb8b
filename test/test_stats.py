"""The small running statistics the nodes keep (known answers)."""

import pytest

from isar_ros.core.stats import RunningMean


def test_running_mean_starts_at_the_first_sample_and_follows_new_ones():
    mean = RunningMean(weight=0.5)
    assert mean.value == 0.0
    mean.add(0.1)
    assert mean.value == pytest.approx(0.1)
    mean.add(0.3)
    assert mean.value == pytest.approx(0.2)
    mean.add(0.3)
    assert mean.value == pytest.approx(0.25)
