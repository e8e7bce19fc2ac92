"""`tdxedu teardown`: text, --json schema, --compare, --plot, and clear errors (exit 2)."""

import json

import pytest

from tdxedu.cli import main
from tdxedu.kvm.tdx import TEARDOWN_POLICIES


def test_text_report(capsys):
    assert main(["teardown", "--memory", "400G", "--vcpus", "64", "--strategy", "v6.16"]) == 0
    out = capsys.readouterr().out
    assert "400 GiB (104,857,600 pages), 64 vCPUs" in out
    assert "tdh_mem_range_block" in out and "104,857,600" in out
    assert "predicted" in out and "band" in out and "mmu_lock (write)" in out


def test_json_schema(capsys):
    assert main(["teardown", "--memory", "1G", "--vcpus", "4", "--strategy", "terminate-vm",
                 "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["counts"]["tdh_phymem_page_reclaim"] == 262144 + 4 * 6 + 512 + 1 + 1 + 6 + 1
    assert "tdh_mem_range_block" not in d["counts"]
    lo, hi = d["band_seconds"]
    assert lo <= d["predicted_seconds"] <= hi
    assert sum(d["breakdown_seconds"].values()) == pytest.approx(d["predicted_seconds"])
    assert all(isinstance(v, float) for v in d["breakdown_seconds"].values())


def test_no_clear_and_packages(capsys):
    main(["teardown", "--memory", "64G", "--vcpus", "16", "--json"])
    base = json.loads(capsys.readouterr().out)
    assert base["cleared_pages"] > 0 and base["counts"]["tdh_phymem_cache_wb"] == 1
    main(["teardown", "--memory", "64G", "--vcpus", "16", "--json", "--no-clear",
          "--packages", "2"])
    d = json.loads(capsys.readouterr().out)
    assert d["cleared_pages"] == 0 and d["packages"] == 2
    assert d["counts"]["tdh_phymem_cache_wb"] == 2
    assert d["breakdown_seconds"]["page clear (MOVDIR64B)"] == 0
    assert d["predicted_seconds"] < base["predicted_seconds"]


def test_compare(capsys):
    assert main(["teardown", "--memory", "1T", "--vcpus", "64", "--compare"]) == 0
    out = capsys.readouterr().out
    for s in TEARDOWN_POLICIES:
        assert s in out
    assert main(["teardown", "--memory", "1T", "--compare", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert set(d["strategies"]) == set(TEARDOWN_POLICIES)


def test_plot_writes_a_png(tmp_path, capsys):
    f = tmp_path / "t.png"
    assert main(["teardown", "--memory", "2T", "--plot", str(f)]) == 0
    assert f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "plot written" in capsys.readouterr().out


@pytest.mark.parametrize("argv,msg", [
    (["--memory", "lots"], "size like"),
    (["--memory=-4G"], "positive"),
    (["--memory", "-5G"], "positive"),
    (["--memory", "1.5K"], "4 KiB pages"),
    (["--memory", "3P"], "at most 2P"),
    (["--vcpus", "100000"], "at most 4096"),
    (["--vcpus", "-2"], "at least 1"),
    (["--memory", "0"], "positive"),
    (["--vcpus", "0"], "at least 1"),
    (["--vcpus", "four"], "whole number"),
    (["--packages", "0"], "at least 1"),
    (["--strategy", "fast"], "allowed: v6.16, terminate-vm"),
])
def test_bad_input_exits_2_with_a_message(argv, msg, capsys):
    assert main(["teardown", *argv]) == 2
    err = capsys.readouterr().err
    assert msg in err and "Traceback" not in err


def test_unwritable_plot_path(capsys, tmp_path):
    assert main(["teardown", "--plot", str(tmp_path / "no" / "such" / "dir.png")]) == 2
    assert "cannot write" in capsys.readouterr().err


def test_plot_honours_memory_and_vcpus():
    """--plot draws the query's vCPUs/packages/clear setting over sizes that reach the query."""
    import argparse

    from tdxedu.teardown_cmd import plot_data
    d = plot_data(argparse.Namespace(), 4 << 40, 96, 2, False)
    assert d["vcpus"] == 96 and d["packages"] == 2 and d["clear_pages"] is False
    assert d["query_bytes"] == 4 << 40 and (4 << 40) in d["sizes_bytes"]
    assert max(d["sizes_bytes"]) >= 4 << 40 and min(d["sizes_bytes"]) <= 1 << 30
    small = plot_data(argparse.Namespace(), 256 << 20, 2, 1, True)
    assert min(small["sizes_bytes"]) == 256 << 20


def test_coinciding_curves_are_marked_and_both_drawn():
    """v19-notifier reclaims like terminate-vm, flush-at-vcpu-free removes like v6.16: their
    curves are identical, so the second is drawn dashed and labelled '(= ...)'."""
    from tdxedu.cost import sweep
    from tdxedu.viz import sweep_figure
    d = sweep(["1G", "64G"], TEARDOWN_POLICIES, vcpus=8)
    assert d["same_as"] == {"v19-notifier": "terminate-vm", "flush-at-vcpu-free": "v6.16"}
    ax = sweep_figure(d).axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "v19-notifier (= terminate-vm: same curve)" in labels
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    twin = lines["flush-at-vcpu-free (= v6.16: same curve)"]
    assert twin.get_linestyle() != lines["v6.16"].get_linestyle()
    assert list(twin.get_xdata()) != list(lines["v6.16"].get_xdata())  # nudged, not hidden


def test_big_sizes_print_in_words(capsys):
    assert main(["teardown", "--memory", "1000T"]) == 0
    out = capsys.readouterr().out
    assert "1000 TiB" in out and "e+" not in out
    assert main(["teardown", "--memory", "1.5T", "--compare"]) == 0
    assert capsys.readouterr().out.startswith("1.5 TiB,")


def test_dpamt_host_counts_and_prices_pamt_remove(capsys):
    """--dpamt: one PAMT.REMOVE per 2 MB range the build opened (and as many PAMT.ADDs at
    build), a refcount put per page, both priced as priors, flagged as extrapolation."""
    assert main(["teardown", "--memory", "1G", "--vcpus", "4", "--dpamt", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["dynamic_pamt"] is True
    opened = d["build_counts"]["tdh_phymem_pamt_add"]
    from tdxedu.cost.bulk import BulkTd
    br = BulkTd(1 << 18, 4, dynamic_pamt=True).teardown("v6.16")
    # 262,144 guest + 514 S-EPT + 31 control pages, with their pairs and the PAMT cache,
    # span 516 ranges of 2 MB
    assert d["counts"]["tdh_phymem_pamt_remove"] == opened == 516 == br.counts[
        "tdh_phymem_pamt_remove"]
    assert d["breakdown_seconds"]["tdh_phymem_pamt_remove"] > 0
    assert d["extrapolation"]["dynamic_pamt"] == [True, False]
    assert main(["teardown", "--memory", "1G", "--vcpus", "4", "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert "tdh_phymem_pamt_remove" not in s["counts"] and s["build_counts"] == {}
    assert d["predicted_seconds"] > s["predicted_seconds"]
    assert main(["teardown", "--memory", "1G", "--dpamt"]) == 0
    assert "Dynamic PAMT" in capsys.readouterr().out
