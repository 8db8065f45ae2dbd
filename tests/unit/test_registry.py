"""The registry is the one table the navigation, the CLI and the NDIF gate read."""

from __future__ import annotations

from pathlib import Path

import pytest

from lib.app import registry
from lib.app.cli import build_parser, main
from lib.app.registry import ANALYSES, COMMANDS, PAGES, SECTIONS, Analysis

ROOT = Path(__file__).resolve().parents[2]


def test_every_page_file_has_one_row_and_every_row_a_file():
    files = sorted(f"pages/{p.name}" for p in (ROOT / "pages").glob("*.py"))
    assert sorted(row.page for row in PAGES) == files
    assert len({row.name for row in ANALYSES}) == len(ANALYSES)


def test_every_page_sits_in_a_known_section_and_sections_come_in_order():
    assert {row.section for row in PAGES} <= set(SECTIONS)
    order = [SECTIONS.index(row.section) for row in PAGES]
    assert order == sorted(order), "the navigation lists sections in SECTIONS order"


def test_the_cli_offers_exactly_the_registry_commands():
    parser = build_parser()
    choices = next(a for a in parser._actions if a.dest == "command").choices
    assert set(choices) == set(COMMANDS)


def test_ndif_runs_only_analyses_that_need_nothing_back_whole():
    whole = {fn for other in ANALYSES if other.runs_on_ndif for fn in other.reduced}
    for row in ANALYSES:
        assert row.runs_on_ndif == (not row.needs & {"residuals", "gradients", "attention"})
        if not row.runs_on_ndif:  # in part at most: only what whole rows reduce, or tokens and logits
            assert set(row.reduced) <= whole | registry.READS_TOKENS_AND_LOGITS
    partly = {fn for row in ANALYSES if row.partly_on_ndif for fn in row.reduced}
    assert registry.REDUCED_ON_NDIF == whole | partly


def test_findings_runs_in_part_on_ndif_and_the_gate_refuses_its_other_steps():
    from lib.analyses.compare import compare_captures, compare_prompts
    from lib.analyses.components import attribute_captures
    from lib.analyses.features import attribution_of_captures
    from lib.analyses.steering import steer_captures, steer_to_flip
    from lib.app.findings import patch_named_components
    from lib.core.errors import SettingsError

    row = registry.by_page("pages/findings.py")
    assert row.partly_on_ndif and not row.runs_on_ndif
    registry.check_on_ndif(compare_prompts)
    for fn in (compare_captures, attribute_captures, patch_named_components, attribution_of_captures,
               steer_to_flip, steer_captures):
        with pytest.raises(SettingsError, match="whole residual stream"):
            registry.check_on_ndif(fn)


def test_a_planted_row_cannot_open_ndif_to_a_function_that_fetches_residual_streams():
    """A row needing residual streams may not declare, as its reduced steps, a function no row
    running wholly on NDIF reduces there (here: direct logit attribution)."""
    from lib.analyses.components import attribute_captures

    planted = Analysis("planted", needs=frozenset({"residuals", "gradients"}), reduced=(attribute_captures,))
    with pytest.raises(ValueError, match="attribute_captures"):
        registry.check_rows((*ANALYSES, planted))
    assert registry.check_rows(ANALYSES) == ANALYSES


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_remote_is_refused_before_any_load_exactly_for_rows_that_need_residuals(command, capsys):
    analysis, _ = COMMANDS[command]
    if analysis.runs_on_ndif or analysis.partly_on_ndif:
        assert registry.refuse_remote(command) is None
        return
    argv = {
        "sae": ["sae", "train"], "compare-models": ["compare-models", "p", "--model2", "x"],
        "steer": ["steer", "a", "b", "--layer", "1", "--alpha", "1"],
        "lens": ["lens", "fit", "--kind", "tuned"], "sets": ["sets", "--example", "x"],
    }.get(command, [command, "a", "b"])
    assert main([*argv, "--remote", "--model", "no/such-model"]) == 1
    err = capsys.readouterr().err
    assert "NDIF would have to send back" in err and err.count("\n") == 1


def test_a_row_with_an_unknown_need_is_refused():
    with pytest.raises(ValueError):
        registry._needs("residuals", "telepathy")


def test_a_planted_row_needing_gradients_is_kept_off_ndif():
    row = Analysis("planted", needs=frozenset({"gradients"}))
    assert not row.runs_on_ndif
