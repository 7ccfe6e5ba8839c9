"""The slice viewer in a real browser (Debian's Chromium driven by Playwright) on the API
served by uvicorn (SQLite, verdicts written in-process): the heatmap's fixed colour scale and
its legend; wheel, drag and double-click as in DICOM viewers, the default window from the DICOM
header else percentiles. ``AMAQC_SHOTS=<dir>`` also saves screenshots there."""

from __future__ import annotations

from typing import Any

import pytest

from app.config import Settings
from tests.app.conftest import set_threshold
from tests.utils.ui import base_url, page, scored, shot, sign_in, tagged_series_files

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


#: the sum of the drawn slice's red channel (changes when window/level does)
IMAGE_SUM = """() => { const c = document.getElementById('image');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let s = 0; for (let i = 0; i < d.length; i += 4) s += d[i]; return s; }"""


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

    # the numbers say what they are; a flagged slice's number opens it
    expect(page.locator("#probability-words")).to_contain_text("series probability = highest slice")
    page.click("#flagged-slices [data-slice-index='1']")
    expect(page.locator("#stage")).to_have_attribute("data-index", "1")
    expect(page.locator("#slice-info")).to_contain_text("Slice 2 / 2 · InstanceNumber 2")
    page.click("#flagged-slices [data-slice-index='0']")
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


def _window(page: Any) -> tuple[float, float]:
    width, level = (page.locator("#stage").get_attribute("data-window") or "0,0").split(",")
    return float(width), float(level)


@pytest.mark.slow
def test_wheel_scrolls_slices_and_drag_sets_window_level(
    settings: Settings, base_url: str, page: Any
) -> None:
    from playwright.sync_api import expect

    files = tagged_series_files(3, "1.2.22.61", WindowCenter=1500, WindowWidth=2000)
    series_id = scored(settings, base_url, "1.2.22.61", files=files)
    sign_in(page, settings)
    page.goto(f"/series/{series_id}")
    stage = page.locator("#stage")
    expect(stage).to_have_attribute("data-index", "0")
    # the default window is the DICOM header's
    expect(page.locator("#wl-info")).to_have_text("W 2000 / L 1500 (DICOM)")
    assert _window(page) == (2000.0, 1500.0)

    # the wheel over the slice steps through the slices (and does not scroll the page)
    box = stage.bounding_box()
    assert box is not None
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx, cy)
    scrolled = page.evaluate("() => window.scrollY")
    page.mouse.wheel(0, 100)
    expect(stage).to_have_attribute("data-index", "1")
    page.mouse.wheel(0, 100)
    expect(stage).to_have_attribute("data-index", "2")
    page.mouse.wheel(0, -100)
    expect(stage).to_have_attribute("data-index", "1")
    assert page.evaluate("() => window.scrollY") == scrolled

    # drag: right widens the window, down raises the level; the image is redrawn
    before = page.evaluate(IMAGE_SUM)
    page.mouse.move(cx, cy)
    page.mouse.down()
    page.mouse.move(cx + box["width"] / 4, cy + box["height"] / 8, steps=5)
    page.mouse.up()
    width, level = _window(page)
    assert width > 2000 and level > 1500
    expect(page.locator("#wl-info")).to_contain_text("(adjusted)")
    page.wait_for_function(f"() => ({IMAGE_SUM})() !== {before}")

    # right-drag the other way narrows it; no context menu gets in the way
    page.mouse.move(cx, cy)
    page.mouse.down(button="right")
    page.mouse.move(cx - box["width"] / 4, cy, steps=5)
    page.mouse.up(button="right")
    assert _window(page)[0] < width

    # double-click: back to the DICOM window
    page.mouse.dblclick(cx, cy)
    expect(page.locator("#wl-info")).to_have_text("W 2000 / L 1500 (DICOM)")
    expect(stage).to_have_attribute("data-index", "1")  # a click is not a slice change
    # the slice is scaled smoothly, the heatmap keeps its patch blocks
    assert page.eval_on_selector("#image", "c => getComputedStyle(c).imageRendering") == "auto"
    assert page.eval_on_selector("#heat", "c => getComputedStyle(c).imageRendering") == "pixelated"
    expect(page.locator("#keys")).to_contain_text("wheel")
    expect(page.locator("#keys")).to_contain_text("double-click")


@pytest.mark.slow
def test_without_a_dicom_window_the_default_comes_from_percentiles(
    settings: Settings, base_url: str, page: Any
) -> None:
    from playwright.sync_api import expect

    series_id = scored(settings, base_url, "1.2.22.62", n=1)  # no WindowCenter / Width
    sign_in(page, settings)
    page.goto(f"/series/{series_id}")
    expect(page.locator("#wl-info")).to_contain_text("(auto)")
    # the 0.5-99.5 percentiles of the slice's own values, recomputed here from the pixels
    lo, hi = page.evaluate(
        """async () => {
          const id = JSON.parse(document.getElementById('series-data').textContent).slices[0].id;
          const r = await fetch(`/api/v1/instances/${id}/pixels`);
          const v = Array.from(new Float32Array(await r.arrayBuffer())).sort((a, b) => a - b);
          return [v[Math.floor(0.005 * (v.length - 1))], v[Math.floor(0.995 * (v.length - 1))]];
        }"""
    )
    width, level = _window(page)
    assert width == pytest.approx(hi - lo, rel=0.02) and level == pytest.approx(
        (hi + lo) / 2, rel=0.02
    )


#: the quality panel rendered for a slice of the whole panel, ``pushed`` metrics pushing towards
#: "artifact" (push 1.0, 0.9, ...) and the rest towards "clean"
RENDER_PANEL = """([names, pushed]) => {
  const rows = names.map((name, i) => ({
    name, label: name, value: "1", better: "lower", artifact: "something",
    push: i < pushed ? 1 - i / 10 : -0.01 * i }));
  window.amaqcQuality.render(document.getElementById('quality-metrics'),
    { quality: rows, cnn_probability: 0.5 });
}"""


@pytest.mark.slow
@pytest.mark.parametrize(("pushed", "shown"), [(2, 6), (8, 8), (20, 10)])
def test_the_quality_panel_shows_the_reasons_first_and_folds_the_rest(
    settings: Settings, base_url: str, page: Any, pushed: int, shown: int
) -> None:
    from playwright.sync_api import expect

    from model.iqm import IQM_NAMES

    series_id = scored(settings, base_url, "1.2.22.62", n=1)
    sign_in(page, settings)
    page.goto(f"/series/{series_id}")
    page.wait_for_function("() => window.amaqcQuality !== undefined")
    page.evaluate(RENDER_PANEL, [list(IQM_NAMES), pushed])
    panel = page.locator("#quality-metrics")
    expect(panel).to_be_visible()
    expect(panel.locator(":scope > table.iqm tr")).to_have_count(shown)
    more = panel.locator("details.iqm-more")
    folded = len(IQM_NAMES) - shown
    expect(more.locator("summary")).to_have_text(f"all {len(IQM_NAMES)} metrics ({folded} more)")
    expect(more.locator("table.iqm tr").first).not_to_be_visible()
    more.locator("summary").click()
    expect(more.locator("table.iqm tr")).to_have_count(folded)
    expect(more.locator("table.iqm tr").first).to_be_visible()
    names = panel.locator("tr").evaluate_all("rows => rows.map((r) => r.dataset.metric)")
    assert names == list(IQM_NAMES)  # in the order given: the pushes, largest first
