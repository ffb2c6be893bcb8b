"""The small running statistics the nodes keep (known answers)."""

import pytest

from isar_ros.core.stats import RunningMean, StagePacer


def test_running_mean_starts_at_the_first_sample_and_follows_new_ones():
    mean = RunningMean(weight=0.5)
    assert mean.value == 0.0
    mean.add(0.1)
    assert mean.value == pytest.approx(0.1)
    mean.add(0.3)
    assert mean.value == pytest.approx(0.2)
    mean.add(0.3)
    assert mean.value == pytest.approx(0.25)


def test_the_pacer_starts_the_first_stage_so_that_it_ends_as_the_second_becomes_free():
    """Known answer: the second stage takes 0.1 s, the first 0.03 s; the second took an item over at t = 5.0,
    so the first stage's next item should start at 5.07 and be ready at 5.1."""
    pacer = StagePacer()
    assert pacer.start_at() == 0.0  # nothing measured yet: start at once
    pacer.taken(4.0)
    pacer.done(4.1)
    pacer.first_stage(0.03)
    pacer.taken(5.0)
    assert pacer.start_at() == pytest.approx(5.07)
    pacer.first_stage(0.2)  # a slower frame moves the start earlier (running mean, weight 0.2): 0.064 s
    assert pacer.start_at() == pytest.approx(5.036)
