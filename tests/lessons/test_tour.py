"""Lesson 00 (a tour): the exercise checker rejects a wrong answer and accepts the hidden
solution."""

from tdxedu.lessons.tour_exercises import SOLUTIONS, check_teardown_count


def test_teardown_count():
    assert check_teardown_count(SOLUTIONS["teardown_count_64K"])
    assert not check_teardown_count(3)
    assert not check_teardown_count("16")


def test_tour_text_counts_come_from_the_model():
    """Lesson 00's answers: the counts add up, the extra WBINVD is explained, and the
    terminate-vm gain is the measured one (no "10x")."""
    import re

    from tdxedu.lessons import tour
    from tdxedu.lessons.td_teardown import MEASURED

    life = str(tour.life_answer())
    total, build, down = map(int, re.search(
        r"\*\*(\d+) SEAMCALLs\*\*.*?(\d+) to build the TD and (\d+) to tear", life).groups())
    assert total == build + down
    wbinvd = int(re.search(r"tdh_phymem_page_wbinvd +(\d+)", life).group(1))
    assert "(16 pages)" in life and wbinvd == 16 + 1
    assert "the 1 WBINVD more is the TDR page's" in life
    gains = sorted(before / after for _v, _s, before, after in MEASURED)
    text = str(tour.strategies_answer())
    assert f"{gains[0]:.1f}–{gains[-1]:.1f}× faster" in text and "10x" not in text
    assert "Step 1: `tdh_mng_create`" in str(tour.first_steps_answer())
