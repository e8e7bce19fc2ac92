"""PAMT memory accounting reproduces the published numbers ([RFC-CL], [LINUX-DOC], [V6-CL]) and
our own arithmetic from the entry sizes."""

import pytest

from tdxedu.kvm.pamt_memory import (
    GiB,
    KiB,
    MiB,
    TdSpec,
    TiB,
    dpamt_static,
    dpamt_td_bytes,
    host_pamt_bytes,
    module_pamt_pair_bytes,
    refcount_bytes,
    static_pamt,
    v6_cover_letter_table,
)


def test_static_pamt_per_tib_table():
    """Static PAMT per TiB, 16-byte entries ([M15-PAMT]): 4 GiB + 8 MiB + 16 KiB per TiB = 0.391 %
    (~1/256)."""
    s = static_pamt(TiB)
    assert (s.pamt_4k, s.pamt_2m, s.pamt_1g) == (4 * GiB, 8 * MiB, 16 * KiB)
    assert round(s.total / GiB, 3) == 4.008
    assert round(100 * s.total / TiB, 3) == 0.391


def test_docs_dmesg_example_64g():
    """[LINUX-DOC]: "262668 KBs allocated for PAMT" is ~64 GiB (64 GiB -> 262,657 KB)."""
    assert static_pamt(64 * GiB).total // KiB == 262_657


def test_dpamt_static_per_tib_and_refcounts():
    """[V6-CL]: bitmap 32 MiB + PAMT_2M 8 MiB + PAMT_1G 16 KiB ~ 40 MiB, refcounts
    2 MiB per TiB of address space, 8 GiB for a 52-bit address space; 0.4 % -> 0.004 %."""
    d = dpamt_static(TiB)
    assert (d.bitmap, d.pamt_2m, d.pamt_1g, d.refcounts) == (32 * MiB, 8 * MiB, 16 * KiB,
                                                             2 * MiB)
    assert round((d.total - d.refcounts) / MiB) == 40
    assert refcount_bytes(1 << 52) == 8 * GiB
    ratio = static_pamt(TiB).total / (d.total - d.refcounts)
    assert 95 < ratio < 105  # "100x reduction"


def test_v6_cover_letter_table():
    """[V6-CL]: 1.02/0.01, 1.02/8.01, 8.19/0.08, 8.19/8.08 GB."""
    rows = {(r["machine_gb"], r["max_pfn_at_max_pa"]): r for r in v6_cover_letter_table()}
    assert (rows[256, False]["pamt_gb"], rows[256, False]["dpamt_gb"]) == (1.02, 0.01)
    assert (rows[256, True]["pamt_gb"], rows[256, True]["dpamt_gb"]) == (1.02, 8.01)
    assert (rows[2048, False]["pamt_gb"], rows[2048, False]["dpamt_gb"]) == (8.19, 0.08)
    assert (rows[2048, True]["pamt_gb"], rows[2048, True]["dpamt_gb"]) == (8.19, 8.08)
    assert rows[256, False]["ratio"] > 90  # "100x smaller"
    assert round(1 / rows[256, True]["ratio"]) == 8  # "8x larger (loss)"
    assert round(rows[2048, True]["ratio"]) == 1  # "~1x"


def test_worked_example_1tib_host_64g_td():
    """A worked example (our arithmetic on [V6-CL]'s rules): static ~4.008 GiB regardless of TDs;
    DPAMT 42 MiB with no
    TD; a 64 GiB TD at 4K: 256 MiB for guest memory, S-EPT 32,768 + 64 + 1 pages costing
    ~0.5 MiB (packed) to ~256 MiB (spread): 0.29-0.54 GiB in total; mapped at 2M: 42-45 MiB."""
    td_packed = TdSpec(64 * GiB, vcpus=1, sept_placement="packed")
    td_spread = TdSpec(64 * GiB, vcpus=1, sept_placement="spread")
    assert td_packed.sept_pages() == 32_768 + 64 + 1
    assert round(static_pamt(TiB).total / GiB, 3) == 4.008
    assert host_pamt_bytes(TiB, [td_packed], dynamic=False) == static_pamt(TiB)
    assert round(host_pamt_bytes(TiB, [], dynamic=True).total / MiB) == 42
    assert dpamt_td_bytes(td_packed)["guest"] == 256 * MiB == 32_768 * 8 * KiB
    assert round(dpamt_td_bytes(td_packed)["sept"] / MiB, 1) == 0.5
    assert round(dpamt_td_bytes(td_spread)["sept"] / MiB) == 257  # ~256 MiB
    assert round(host_pamt_bytes(TiB, [td_packed], dynamic=True).total / GiB, 2) == 0.29
    assert round(host_pamt_bytes(TiB, [td_spread], dynamic=True).total / GiB, 2) == 0.54
    for placement in ("packed", "spread"):
        huge = TdSpec(64 * GiB, mapping="2m", vcpus=4, sept_placement=placement)
        assert dpamt_td_bytes(huge)["guest"] == 0
        assert 42 <= host_pamt_bytes(TiB, [huge], dynamic=True).total / MiB <= 45


def test_rule_of_thumb_matches_the_simulator():
    """A 2 MB range costs 8 KiB as soon as one 4K page in it is given to the module
    ([V6-03]): the simulated module's pairs after building a TD."""
    from tdxedu.scenarios import RunningTd

    td = RunningTd(memory="4M", vcpus=1, dynamic_pamt=True)
    used = {e.pfn >> 9 for e in td.host.module.pamt.in_use()}
    assert module_pamt_pair_bytes(td.host.module) == len(used) * 8 * KiB


@pytest.mark.parametrize("bad, exc", [(-4096, ValueError), (4097, ValueError),
                                      ("1G", TypeError), (True, TypeError)])
def test_bad_input(bad, exc):
    with pytest.raises(exc):
        static_pamt(bad)


def test_bad_td_spec():
    with pytest.raises(ValueError, match="mapping"):
        TdSpec(GiB, mapping="1g")
    with pytest.raises(ValueError, match="sept_placement"):
        TdSpec(GiB, sept_placement="random")
    with pytest.raises(TypeError):
        host_pamt_bytes(TiB, [GiB], dynamic=True)
