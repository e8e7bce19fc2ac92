"""Lesson 05 (Dynamic PAMT): each exercise checker rejects a wrong answer and accepts the
hidden solution; the golden-cell summaries hold the facts the lesson states."""

from tdxedu.kvm.pamt_memory import MiB
from tdxedu.lessons import dynamic_pamt as D
from tdxedu.lessons import dynamic_pamt_exercises as DX


def test_dpamt_bytes():
    assert DX.check_dpamt_bytes(round(DX.dpamt_bytes() / MiB, 1))
    assert not DX.check_dpamt_bytes(40)  # the static part only
    assert not DX.check_dpamt_bytes(4104)  # static PAMT
    assert not DX.check_dpamt_bytes("300")
    assert "298.5 MiB" in DX.show_solution("dpamt_bytes_1tib_64g").body


def test_pamt_refcounting():
    assert DX.check_pamt_refcounting(DX.SOLUTIONS["pamt_get"], DX.SOLUTIONS["pamt_put"])
    add_always = DX.check_pamt_refcounting(lambda lab, pfn: lab.pamt_add(pfn),
                                          lambda lab, pfn: None)
    assert not add_always and "HPA_RANGE_NOT_FREE" in add_always.message

    def get(lab, pfn):
        DX.SOLUTIONS["pamt_get"](lab, pfn)

    def put_never_removes(lab, pfn):
        lab.refcount[pfn >> 9] -= 1

    leak = DX.check_pamt_refcounting(get, put_never_removes)
    assert not leak and "leaked" in leak.message

    def put_eager(lab, pfn):
        lab.refcount[pfn >> 9] -= 1
        if lab.has_pair(pfn):
            lab.pamt_remove(pfn)

    assert not DX.check_pamt_refcounting(get, put_eager)
    assert not DX.check_pamt_refcounting(lambda lab, pfn: 1 / 0, put_eager)
    assert not DX.check_pamt_refcounting("get", None)
    assert "def _solution_get" in DX.show_solution("pamt_get").body


def test_lossy_scenarios():
    assert DX.check_lossy_scenarios(DX.SOLUTIONS["lossy_scenarios"])
    assert not DX.check_lossy_scenarios({"pamt-get-put"})
    assert not DX.check_lossy_scenarios({"pamt-get-put-no-pamt-lock"})
    assert not DX.check_lossy_scenarios({"nope"})
    assert not DX.check_lossy_scenarios(3)


def test_summaries_state_the_lesson_facts():
    per_tib = D.pamt_per_tib_text()
    assert "4.008 GiB" in per_tib and "42.016 MiB" in per_tib
    assert "8x larger" in D.cover_letter_text()
    cons = D.policy_consequences()
    assert cons["vcpu-cache"].startswith("clean")
    assert cons["phys-prepare"].startswith("build fails") and "ENOMEM" in cons["phys-prepare"]
    assert "pooled" in cons["kmem-cache-ctor"]
    assert "TDX_MISSING_PAMT_PAGE_PAIR" in cons["gmem-prepare"]
    race = D.pamt_race()
    assert race["pamt-get-put"].verdict("pair_lost") == "never"


def test_lesson_text_agrees_with_the_model():
    """Lesson 05: the policy table does not call the series merged (the intro says mainline is
    not confirmed, [TIP-X86-TDX]); the pamt_cache size the text states is the model's
    (TDX_PAMT_CACHE_TARGET, [V6-07]); the Steps and counts of section 2 come from the run."""
    from pathlib import Path

    from tdxedu.kvm.pamt import TDX_PAMT_CACHE_TARGET
    from tdxedu.lessons.dynamic_pamt import pamt_life_answer
    from tdxedu.widgets.lesson_pamt import DpamtLifeSource, refcount_table

    text = (Path(__file__).resolve().parents[2] / "notebooks" / "05_dynamic_pamt.py").read_text()
    assert "(merged)" not in text and "is not confirmed" in text
    assert f"to {TDX_PAMT_CACHE_TARGET} pages beforehand" in " ".join(
        ln.lstrip("# ") for ln in text.splitlines())
    answer = str(pamt_life_answer(DpamtLifeSource("2M", vcpus=2, policy="vcpu-cache"),
                                  refcount_table))
    assert "(Step 1) is `tdh_phymem_pamt_add` for range `0x0`" in answer
    assert "2 PAMT.ADDs and 2 PAMT.REMOVEs" in answer
