"""Lessons 05/06: each exercise checker rejects a wrong answer and accepts the hidden
solution; the golden-cell summaries hold the facts the lessons state."""

from tdxedu.kvm.pamt_memory import MiB
from tdxedu.lessons import exercises_pamt_roots as X


def test_dpamt_bytes():
    assert X.check_dpamt_bytes(round(X.dpamt_bytes() / MiB, 1))
    assert not X.check_dpamt_bytes(40)  # the static part only
    assert not X.check_dpamt_bytes(4104)  # static PAMT
    assert not X.check_dpamt_bytes("300")
    assert "298.5 MiB" in X.show_solution("dpamt_bytes_1tib_64g").body


def test_pamt_refcounting():
    assert X.check_pamt_refcounting(X.SOLUTIONS["pamt_get"], X.SOLUTIONS["pamt_put"])
    add_always = X.check_pamt_refcounting(lambda lab, pfn: lab.pamt_add(pfn),
                                          lambda lab, pfn: None)
    assert not add_always and "HPA_RANGE_NOT_FREE" in add_always.message

    def get(lab, pfn):
        X.SOLUTIONS["pamt_get"](lab, pfn)

    def put_never_removes(lab, pfn):
        lab.refcount[pfn >> 9] -= 1

    leak = X.check_pamt_refcounting(get, put_never_removes)
    assert not leak and "leaked" in leak.message

    def put_eager(lab, pfn):
        lab.refcount[pfn >> 9] -= 1
        if lab.has_pair(pfn):
            lab.pamt_remove(pfn)

    assert not X.check_pamt_refcounting(get, put_eager)
    assert not X.check_pamt_refcounting(lambda lab, pfn: 1 / 0, put_eager)
    assert not X.check_pamt_refcounting("get", None)
    assert "def _solution_get" in X.show_solution("pamt_get").body


def test_lossy_scenarios():
    assert X.check_lossy_scenarios(X.SOLUTIONS["lossy_scenarios"])
    assert not X.check_lossy_scenarios({"pamt-get-put"})
    assert not X.check_lossy_scenarios({"pamt-get-put-no-pamt-lock"})
    assert not X.check_lossy_scenarios({"nope"})
    assert not X.check_lossy_scenarios(3)


def test_storm_allocations():
    assert X.check_storm_allocations(X.SOLUTIONS["storm_v63_1000"])
    assert not X.check_storm_allocations(1000)
    assert not X.check_storm_allocations(2)
    assert X.check_storm_allocations(2, policy="v6.4")
    assert not X.check_storm_allocations("2001")


def test_resurrection_schedule():
    sol = X._resurrection_witness()
    assert X.check_resurrection_schedule(sol)
    assert X.check_resurrection_schedule(", ".join(sol))
    assert not X.check_resurrection_schedule(["vcpu0", "reader0"])
    assert not X.check_resurrection_schedule(["nobody"])
    assert not X.check_resurrection_schedule(5)
    assert str(sol) in X.show_solution("resurrection_schedule").body


def test_inv2():
    assert X.check_inv2(X.SOLUTIONS["inv2"])
    assert not X.check_inv2(lambda kvm: [])
    # too eager: flags every root with a single reference
    eager = X.check_inv2(lambda kvm: [str(r) for r in kvm.arch.tdp_mmu_live.values()
                                      if r.tdp_mmu_root_count <= 1])
    assert not eager
    # ignores validity: flags invalid roots at count 0 too (fine) but also must not crash
    assert not X.check_inv2(lambda kvm: 1 / 0)
    assert not X.check_inv2("inv2")
    assert "def _solution_inv2" in X.show_solution("inv2").body


def test_summaries_state_the_lesson_facts():
    per_tib = X.pamt_per_tib_text()
    assert "4.008 GiB" in per_tib and "42.016 MiB" in per_tib
    assert "8x larger" in X.cover_letter_text()
    cons = X.policy_consequences()
    assert cons["vcpu-cache"].startswith("clean")
    assert cons["phys-prepare"].startswith("build fails") and "ENOMEM" in cons["phys-prepare"]
    assert "pooled" in cons["kmem-cache-ctor"]
    assert "TDX_MISSING_PAMT_PAGE_PAIR" in cons["gmem-prepare"]
    race = X.pamt_race()
    assert race["pamt-get-put"].verdict("pair_lost") == "never"
    storm = X.storm_table((0, 10))
    assert storm.splitlines()[-1].split()[:5] == ["10", "21", "2", "2", "2"]
    assert "inv2  step  3 (vcpu0)" in X.broken_variants_text()
