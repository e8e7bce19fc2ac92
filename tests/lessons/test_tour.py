"""Lesson 00 (a tour): the exercise checker rejects a wrong answer and accepts the hidden
solution."""

from tdxedu.lessons.tour_exercises import SOLUTIONS, check_teardown_count


def test_teardown_count():
    assert check_teardown_count(SOLUTIONS["teardown_count_64K"])
    assert not check_teardown_count(3)
    assert not check_teardown_count("16")
