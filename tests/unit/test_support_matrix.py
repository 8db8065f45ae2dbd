"""`make matrix`: the JUnit report of the family tests becomes docs/support_matrix.md."""

from __future__ import annotations

from support_matrix import read_report, render

REPORT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest">
 <testcase classname="tests.unit.test_families" file="tests/unit/test_families.py"
   name="test_lens_reproduces_model_at_every_position[gpt2]">
  <properties><property name="hf_class" value="GPT2LMHeadModel"/>
   <property name="max_abs_dp" value="3e-07"/></properties>
 </testcase>
 <testcase classname="tests.unit.test_patching" file="tests/unit/test_patching.py"
   name="test_grid[gpt2-last]"/>
 <testcase classname="tests.unit.test_patching" file="tests/unit/test_patching.py"
   name="test_grid[gemma2-last]"><failure message="boom">boom</failure></testcase>
 <testcase classname="tests.unit.test_families" file="tests/unit/test_families.py"
   name="test_unsupported_family_is_refused_at_load_naming_it[lfm2]">
  <properties><property name="refusal" value="cannot read 'lfm2' | at all"/></properties>
 </testcase>
 <testcase classname="tests.unit.test_other" file="tests/unit/test_other.py" name="test_unrelated[x]"/>
</testsuite></testsuites>
"""


def test_report_is_grouped_by_the_family_in_each_test_id(tmp_path):
    path = tmp_path / "report.xml"
    path.write_text(REPORT)
    families, files = read_report(path)
    assert families["gpt2"].passed == ["test_lens_reproduces_model_at_every_position", "test_grid"]
    assert families["gpt2"].properties == {"hf_class": "GPT2LMHeadModel", "max_abs_dp": "3e-07"}
    assert families["gemma2"].failed == ["test_grid"]
    assert families["lfm2"].properties["refusal"].startswith("cannot read")
    assert "x" not in families and "test_unrelated" not in files
    assert "test_unsupported_family_is_refused_at_load_naming_it" not in files  # not a supported-family check
    assert files["test_grid"] == "tests/unit/test_patching.py"


def test_matrix_shows_results_failures_and_refusals(tmp_path):
    path = tmp_path / "report.xml"
    path.write_text(REPORT)
    page = render(*read_report(path), versions="transformers X")
    row = {line.split("|")[2].strip(): line for line in page.splitlines() if line.count("|") > 5}
    assert "GPT2LMHeadModel" in row["`gpt2`"] and "2/2" in row["`gpt2`"] and "3.0e-07" in row["`gpt2`"]
    assert "supported" in row["`gpt2`"]
    assert "0/1" in row["`gemma2`"] and "fails: `test_grid`" in row["`gemma2`"]
    assert "not run" in row["`phi3`"]
    assert "cannot read 'lfm2' \\| at all" in row["`lfm2`"] and "passed" in row["`lfm2`"]


def test_more_families_get_their_own_table_with_the_sites_they_read(tmp_path):
    path = tmp_path / "report.xml"
    path.write_text(REPORT.replace(
        '<testcase classname="tests.unit.test_other"',
        '<testcase classname="tests.unit.test_more_families" file="tests/unit/test_more_families.py" '
        'name="test_more_sites_add_up_or_say_why_not[bloom]"><properties>'
        '<property name="sites" value="residual stream only: adds | inside"/></properties></testcase>'
        '<testcase classname="tests.unit.test_other"',
    ))
    page = render(*read_report(path), versions="transformers X")
    row = next(line for line in page.splitlines() if "`bloom`" in line)
    assert "residual stream only: adds \\| inside" in row and "1/1" in row and "supported" in row
    assert "## More decoder families" in page
