"""Lesson 06 (TDP MMU roots): each exercise checker rejects a wrong answer and accepts the
hidden solution; the golden-cell summaries hold the facts the lesson states."""

from tdxedu.lessons import tdp_mmu_roots as R
from tdxedu.lessons import tdp_mmu_roots_exercises as RX


def test_storm_allocations():
    assert RX.check_storm_allocations(RX.SOLUTIONS["storm_v63_1000"])
    assert not RX.check_storm_allocations(1000)
    assert not RX.check_storm_allocations(2)
    assert RX.check_storm_allocations(2, policy="v6.4")
    assert not RX.check_storm_allocations("2001")


def test_resurrection_schedule():
    sol = RX._resurrection_witness()
    assert RX.check_resurrection_schedule(sol)
    assert RX.check_resurrection_schedule(", ".join(sol))
    assert not RX.check_resurrection_schedule(["vcpu0", "reader0"])
    assert not RX.check_resurrection_schedule(["nobody"])
    assert not RX.check_resurrection_schedule(5)
    assert str(sol) in RX.show_solution("resurrection_schedule").body


def test_inv2():
    assert RX.check_inv2(RX.SOLUTIONS["inv2"])
    assert not RX.check_inv2(lambda kvm: [])
    # too eager: flags every root with a single reference
    eager = RX.check_inv2(lambda kvm: [str(r) for r in kvm.arch.tdp_mmu_live.values()
                                      if r.tdp_mmu_root_count <= 1])
    assert not eager
    # ignores validity: flags invalid roots at count 0 too (fine) but also must not crash
    assert not RX.check_inv2(lambda kvm: 1 / 0)
    assert not RX.check_inv2("inv2")
    assert "def _solution_inv2" in RX.show_solution("inv2").body


def test_summaries_state_the_lesson_facts():
    storm = R.storm_table((0, 10))
    assert storm.splitlines()[-1].split()[:5] == ["10", "21", "2", "2", "2"]
    assert "inv2  step  3 (vcpu0)" in R.broken_variants_text()
