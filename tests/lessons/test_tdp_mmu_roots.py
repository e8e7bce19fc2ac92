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


def test_lesson_text_agrees_with_the_model_and_the_widgets():
    """Lesson 06: the number of direct roles is the model's ([SC-preserve],
    MAX_DIRECT_ROLES); the storm's slope is read from smm_storm; the Step at which the
    broken-roots widget reports the violation is the one the text names."""
    from tdxedu.kvm.mmu_role import MAX_DIRECT_ROLES
    from tdxedu.lessons import tdp_mmu_roots as tr
    from tdxedu.widgets.lesson_roots import broken_roots_stepper, broken_source

    assert len(tr.direct_roles()) == MAX_DIRECT_ROLES
    assert f"At most **{MAX_DIRECT_ROLES} direct roles**" in str(tr.direct_roles_prose())
    assert "**2 root allocations per round trip**" in str(tr.storm_answer())

    st = broken_roots_stepper("broken-free-valid-root")
    n = 0
    while "invariant violated" not in st.status.value:
        st.step_button.click()
        n += 1
        assert n < 50
    answer = str(tr.broken_answer(broken_source("broken-free-valid-root")))
    assert f"At Step {n} " in answer and "inv2" in answer
    smm = str(tr.smm_answer())
    assert "**v6.4**" in smm and "none is ever freed" in smm.split("**v6.4**")[1]


def test_smm_answer_steps_are_the_widgets():
    """The Steps at which lesson 06 says roots are allocated and freed are the ones the
    lesson's roots widget (seed 0) shows."""
    from tdxedu.lessons import tdp_mmu_roots as tr
    from tdxedu.widgets import roots_stepper

    text = str(tr.smm_answer())
    for policy in ("v6.3", "v6.4"):
        st = roots_stepper("smm-storm", policy=policy)
        alloc, freed, last = [], [], (0, 0)
        for n in range(1, 40):
            if st.source.done:
                break
            st.step_button.click()
            stats = st.source.kvm.arch.tdp_mmu_stats
            now = (stats["roots_allocated"], stats["roots_freed"])
            if now[0] > last[0]:
                alloc.append(n)
            if now[1] > last[1]:
                freed.append(n)
            last = now
        part = text.split(f"**{policy}**", 1)[1].split("\n\n")[0]
        assert f"allocated at Steps {', '.join(map(str, alloc))} " in part
        assert (f"freed at Steps {', '.join(map(str, freed))}." in part if freed
                else "none is ever freed" in part)
