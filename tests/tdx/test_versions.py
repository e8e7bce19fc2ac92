"""The module-version table (`tdxedu.tdx.versions`): every difference it lists is in
docs/conformance.md section 4 and printed by `tdxedu versions`; the one the model implements
is selectable (module 1.5 `tdh_mem_range_unblock.c`, TDX_1.5.01 `f9acbbf` vs 1.5.05 `f99767b`)."""

from pathlib import Path

from tdxedu import cli
from tdxedu.tdx.versions import DEFAULT_MODULE_VERSION, MODULE_VERSIONS, VERSION_DIFFERENCES

DOC = Path(__file__).resolve().parents[2] / "docs" / "conformance.md"


def _section4() -> str:
    """The subsection of section 4 that `VERSION_DIFFERENCES` backs (memory leaves)."""
    text = DOC.read_text()
    sec = text[text.index("## 4."):text.index("## 5.")]
    start = sec.index("### Memory leaves")
    return sec[start:sec.index("\n### ", start + 1)]


def test_every_difference_is_in_section_4():
    sec = _section4()
    rows = [ln for ln in sec.splitlines() if ln.startswith("| TD")]
    assert len(rows) == len(VERSION_DIFFERENCES)
    for d, row in zip(VERSION_DIFFERENCES, rows, strict=True):
        assert row.startswith(f"| {d.leaf} | `{d.file}` | {d.check} |"), row
        assert row.split("|")[-2].strip().split(":")[0] == d.modelled.split(":")[0]


def test_cli_prints_the_table(capsys):
    assert cli.main(["versions"]) == 0
    out = capsys.readouterr().out
    assert f"follows {DEFAULT_MODULE_VERSION}" in out
    for v in MODULE_VERSIONS:
        assert v in out
    for d in VERSION_DIFFERENCES:
        assert d.leaf in out and d.check in out
