"""A running TD torn down under each strategy: nothing leaks, and the SEAMCALL count per leaf
is the closed form of `tdxedu.cost.counts` (the flows of [K616])."""

import pytest

from tdxedu.scenarios import RunningTd
from tdxedu.tdx.pamt import PageType
from tdxedu.units import format_size, parse_size


def expected_counts(td: RunningTd, strategy: str) -> dict[str, int]:
    """[K616]: per private page BLOCK, TRACK, REMOVE, WBINVD(HKID) on the runtime path,
    RECLAIM on the terminate path; once per TD VP.FLUSH x vCPUs, VPFLUSHDONE, CACHE.WB x
    packages, FREEID, RECLAIM x (TDCX+TDVPR) x vCPUs, x S-EPT pages, x TDCS pages, TDR,
    WBINVD(TDR)."""
    m = td.host.module
    private = len(td.kt.mirror)
    vcpus = len(td.kvm.vcpus)
    sept = len(td.kt.sept_pages)
    control = vcpus * (m.tdcx_per_vcpu + 1) + sept + m.tdcs_pages + 1
    c = {
        "tdh_vp_flush": vcpus,
        "tdh_mng_vpflushdone": 1,
        "tdh_phymem_cache_wb": m.num_packages * m.cache_wb_rounds,
        "tdh_mng_key_freeid": 1,
    }
    if strategy in ("terminate-vm", "v19-notifier"):
        c["tdh_phymem_page_reclaim"] = control + private
        c["tdh_phymem_page_wbinvd"] = 1
    else:
        c.update(tdh_mem_range_block=private, tdh_mem_track=private,
                 tdh_mem_page_remove=private)
        c["tdh_phymem_page_reclaim"] = control
        c["tdh_phymem_page_wbinvd"] = private + 1
    return c


@pytest.mark.parametrize("strategy", ["v6.16", "terminate-vm", "v19-notifier",
                                      "flush-at-vcpu-free"])
@pytest.mark.parametrize("memory,vcpus,packages", [("64K", 1, 1), ("1M", 3, 2), ("2M", 4, 1)])
def test_teardown_counts_match_formula_and_nothing_leaks(strategy, memory, vcpus, packages):
    td = RunningTd(memory=memory, vcpus=vcpus, packages=packages)
    expected = expected_counts(td, strategy)
    report = td.teardown(strategy=strategy)
    assert report.counts == expected
    assert report.ok, report.summary()
    assert report.hkid_state == "free"
    m = td.host.module
    assert m.pamt.in_use() == [] and not m.tds  # every page PT_NDA again
    assert all(e.pt in (PageType.PT_NDA,) for e in m.pamt.entries.values())
    assert td.host.allocator.in_use == 0
    assert 33 in td.host.free_hkids  # the HKID went back to the kernel's allocator


def test_runtime_path_has_no_block_on_terminate_vm():
    """KVM_TDX_TERMINATE_VM ([SC-Mar25]): private pages come back with RECLAIM only."""
    td = RunningTd(memory="256K", vcpus=2)
    r = td.teardown("terminate-vm")
    for leaf in ("tdh_mem_range_block", "tdh_mem_track", "tdh_mem_page_remove"):
        assert leaf not in r.counts
    ops = [e.op for e in r.trace if e.op.startswith("tdh_")]
    # The HKID is released before any private page is reclaimed.
    assert ops.index("tdh_mng_key_freeid") < ops.index("tdh_phymem_page_reclaim")


def test_upstream_order_hkid_release_after_private_memory_removal():
    """[K616], [AH-RFC]: all private memory is removed (guest_memfd close) before kvm_destroy_vm's
    tdx_mmu_release_hkid (D1); the TDR is reclaimed last and WBINVDed with the global KeyID."""
    td = RunningTd(memory="128K", vcpus=2)
    r = td.teardown("v6.16")
    ops = [e.op for e in r.trace if e.op.startswith("tdh_")]
    last_remove = max(i for i, o in enumerate(ops) if o == "tdh_mem_page_remove")
    assert last_remove < ops.index("tdh_vp_flush") < ops.index("tdh_mng_vpflushdone")
    assert ops.index("tdh_mng_vpflushdone") < ops.index("tdh_phymem_cache_wb")
    assert ops.index("tdh_phymem_cache_wb") < ops.index("tdh_mng_key_freeid")
    assert ops[-2:] == ["tdh_phymem_page_reclaim", "tdh_phymem_page_wbinvd"]


def test_clear_pages_skipped_since_6_18():
    """6.18 skips the MOVDIR64B clear unless X86_BUG_TDX_PW_MCE ([AH-clear], [PULL618])."""
    a = RunningTd(memory="64K", vcpus=1).teardown()
    b = RunningTd(memory="64K", vcpus=1, clear_pages=False).teardown()
    assert a.cleared_pages > 0 and b.cleared_pages == 0
    assert a.counts == b.counts


def test_teardown_twice_is_refused():
    td = RunningTd(memory="16K", vcpus=1)
    td.teardown()
    with pytest.raises(ValueError, match="already been torn down"):
        td.teardown()


@pytest.mark.parametrize("kwargs,match", [
    ({"vcpus": 0}, "at least one vCPU"),
    ({"memory": 4095}, "multiple of 4096"),
    ({"memory": "12Q"}, "size like"),
    ({"busy_policy": "spin"}, "allowed: kick-retry-once, retry-loop, no-retry"),
])
def test_running_td_rejects_impossible_configurations(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RunningTd(**{"memory": "16K", **kwargs})


def test_unknown_strategy_lists_allowed():
    td = RunningTd(memory="16K", vcpus=1)
    with pytest.raises(ValueError, match="v6.16, terminate-vm, v19-notifier, flush-at-vcpu-free"):
        td.teardown("fast")


def test_parse_size():
    assert parse_size("1G") == 1 << 30 and parse_size("64K") == 65536 and parse_size(8192) == 8192
    with pytest.raises(TypeError):
        parse_size(1.5)


@pytest.mark.parametrize("text,size", [
    ("1.5T", 3 << 39), ("64GiB", 64 << 30), ("64gb", 64 << 30), ("64g", 64 << 30),
    ("2M", 2 << 20), (" 4096 ", 4096), ("0.5G", 512 << 20), ("2P", 2 << 50)])
def test_parse_size_accepts_what_people_type(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text,match", [
    ("-5G", "positive"), ("0", "positive"), ("1.5K", "4 KiB pages"), ("banana", "size like"),
    ("3P", "at most 2P"), ("64iB", "size like"), ("1.0000001K", "whole number of bytes")])
def test_parse_size_says_what_is_wrong(text, match):
    with pytest.raises(ValueError, match=match):
        parse_size(text)


@pytest.mark.parametrize("size,text", [
    (64 << 10, "64 KiB"), (3 << 39, "1.5 TiB"), (1000 << 40, "1000 TiB"), (4096, "4 KiB"),
    (100, "100 B"), (2 << 50, "2 PiB")])
def test_format_size_never_uses_exponents(size, text):
    assert format_size(size) == text
