"""The Findings report (`twinlens report`) opens in Chromium with no request leaving the file —
every request the page makes is intercepted and recorded — and its numbers are the JSON's."""

from __future__ import annotations

import json

import pytest
from cli_run import run_cli

from scripts.browser import CHROMIUM, fresh_context

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM}")

A, B = "The capital of France is", "The capital of Italy is"


def test_report_opens_offline_and_its_numbers_are_the_jsons(chromium, tmp_path, real_model):
    out = tmp_path / "report.html"
    result = run_cli("report", A, B, "-o", str(out))
    assert result.returncode == 0, result.stderr
    data = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    assert json.loads(result.stdout) == data
    requests: list[str] = []

    def intercept(route):
        requests.append(route.request.url)
        if route.request.url == out.as_uri():
            route.continue_()
        else:
            route.abort()

    with fresh_context(chromium) as context:
        context.route("**/*", intercept)
        page = context.new_page()
        page.goto(out.as_uri())
        page.wait_for_load_state("networkidle")
        assert requests == [out.as_uri()]  # the file itself, nothing else: no script, font, style, image
        sections = page.locator("section[data-step]")
        assert sections.count() == len(data["findings"]) == 6
        for i, finding in enumerate(data["findings"]):
            section = sections.nth(i)
            assert section.get_attribute("data-step") == finding["step"]
            assert section.locator("p.sentence").inner_text() == finding["sentence"]
            cells = section.locator("td[data-number]")
            shown = {cells.nth(j).get_attribute("data-number"): cells.nth(j).inner_text()
                     for j in range(cells.count())}
            expected = {k: v for k, v in finding["numbers"].items() if v is not None}
            assert set(shown) == set(expected)
            for name, value in expected.items():
                if isinstance(value, float):
                    assert float(shown[name]) == pytest.approx(value, rel=1e-5, abs=1e-9)
                else:
                    assert shown[name] == str(value)
            if finding["chart"]:
                assert section.locator("svg").count() == 1
        page.screenshot(path=tmp_path / "report.png", full_page=True)
        page.close()
