"""The slice viewer in a real browser (Debian's Chromium driven by Playwright) on the API
served by uvicorn (SQLite, verdicts written in-process): the heatmap's fixed colour scale and
its legend. ``AMAQC_SHOTS=<dir>`` also saves screenshots there."""

from __future__ import annotations

from typing import Any

import pytest

from app.config import Settings
from tests.app.conftest import set_threshold
from tests.utils.ui import base_url, page, scored, shot, sign_in

__all__ = ["base_url", "page"]  # fixtures

#: the heat canvas' RGBA at the centre of patch (0, 0), and that patch's probability
PATCH_PIXEL = """() => {
  const c = document.getElementById('heat');
  const data = JSON.parse(document.getElementById('series-data').textContent);
  const s = data.slices[+document.getElementById('stage').dataset.index];
  const map = s.patch_map;
  const x = Math.floor(c.width / map[0].length / 2), y = Math.floor(c.height / map.length / 2);
  return { p: map[0][0], rgba: Array.from(c.getContext('2d').getImageData(x, y, 1, 1).data) };
}"""


def _heat_drawn(page: Any) -> None:
    page.wait_for_function(
        "() => { const c = document.getElementById('heat'); return c.width > 0 &&"
        " document.getElementById('heat-legend').childElementCount > 0; }"
    )


@pytest.mark.slow
def test_the_heatmap_has_a_fixed_scale_a_floor_and_a_legend(
    settings: Settings, base_url: str, page: Any
) -> None:
    from playwright.sync_api import expect

    set_threshold(settings, 0.25)
    series_id = scored(settings, base_url, "1.2.22.60", n=2)
    sign_in(page, settings)
    page.goto(f"/series/{series_id}")
    _heat_drawn(page)

    # the scale: matplotlib's magma at 0, 0.5 and 1, whatever the slice or series
    colours = page.evaluate("() => [0, 0.5, 1].map((p) => window.amaqcHeat.colour(p))")
    assert colours == [[0, 0, 4], [181, 54, 122], [252, 253, 191]]

    # the legend: the bar, the part below the floor, the threshold marked and written
    legend = page.locator("#heat-legend")
    expect(legend.locator("text.thr-text")).to_have_text("threshold 0.25")
    bar_x = float(legend.locator("rect.bar").get_attribute("x") or 0)
    bar_w = float(legend.locator("rect.bar").get_attribute("width") or 0)
    mark = float(legend.locator("line.thr-mark").get_attribute("x1") or 0)
    assert mark == pytest.approx(bar_x + 0.25 * bar_w)
    floor_w = float(legend.locator("rect.floor").get_attribute("width") or 0)
    assert floor_w == pytest.approx(0.3 * bar_w)

    # a patch is drawn in its scale colour (above the floor), or not at all (below it)
    page.eval_on_selector("#floor", "e => { e.value = 0; e.dispatchEvent(new Event('input')); }")
    expect(page.locator("#floor-value")).to_have_text("0.00")
    got = page.evaluate(PATCH_PIXEL)
    want = page.evaluate(f"() => window.amaqcHeat.colour({got['p']})")
    # (the canvas stores premultiplied alpha: a unit or two of rounding)
    assert all(abs(a - b) <= 3 for a, b in zip(got["rgba"][:3], want, strict=True)), (got, want)
    assert got["rgba"][3] > 100
    page.eval_on_selector(
        "#floor",
        f"e => {{ e.value = {int(got['p'] * 100) + 1}; e.dispatchEvent(new Event('input')); }}",
    )
    page.wait_for_function(f"() => ({PATCH_PIXEL})().rgba[3] === 0")
    assert float(legend.locator("rect.floor").get_attribute("width") or 0) > floor_w

    # a slice the model finds clean looks clean: every patch below the floor is transparent
    page.eval_on_selector("#floor", "e => { e.value = 95; e.dispatchEvent(new Event('input')); }")
    page.wait_for_function(
        "() => { const c = document.getElementById('heat');"
        " return !c.getContext('2d').getImageData(0, 0, c.width, c.height).data"
        ".some((v, i) => i % 4 === 3 && v > 0); }"
    )
    shot(page, "viewer-heatmap.png")
