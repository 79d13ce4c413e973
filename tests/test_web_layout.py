"""The web page's layout in headless Chromium: a phone-sized screen, long file names.

Screenshots of the full page land in /tmp (bulkredeem-page-1280.png, bulkredeem-page-420.png)
for a person to look at; the assertions measure what the eye would check.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.webpage import PHONE, choose_upload, playwright_expect, shop, sign_in, wait_for_end

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytest_plugins = ["tests.browser"]  # its fixtures: page, phone, any_width
pytestmark = pytest.mark.timeout(300)

# Mostly underscores: Chromium would break after a hyphen of its own accord, never after `_`.
LONG_NAME = "redemptions_diwali_2020_store_0042_till_07_export_final-v2.csv"
# Where each line of an element's text starts: the characters' boxes, one Range per character.
LINE_STARTS = """element => {
  const walker = document.createTreeWalker(element, NodeFilter.SHOW_TEXT);
  const chars = [];
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    for (let i = 0; i < node.data.length; i += 1) {
      const range = document.createRange();
      range.setStart(node, i);
      range.setEnd(node, i + 1);
      const box = range.getBoundingClientRect();
      if (box.width > 0) chars.push({ char: node.data[i], top: Math.round(box.top) });
    }
  }
  const starts = [];
  chars.forEach((c, i) => { if (i > 0 && c.top > chars[i - 1].top + 2) starts.push(i); });
  return { text: chars.map((c) => c.char).join(""), starts };
}"""
# What the eye checks on a narrow screen: nothing wider than the window but inside a box that
# scrolls on its own.
OVERFLOW = """() => {
  const width = document.documentElement.clientWidth;
  const header = document.querySelector("header.top").getBoundingClientRect();
  const outside = [...document.querySelectorAll("body *")].filter((el) => {
    if (el.closest(".scroll") && el !== el.closest(".scroll")) return false;
    const box = el.getBoundingClientRect();
    return box.width > 0 && (box.right > width + 0.5 || box.left < -0.5);
  }).map((el) => `${el.tagName.toLowerCase()}#${el.id}.${el.className}`);
  return {
    width,
    scrollWidth: document.documentElement.scrollWidth,
    headerLeft: header.left,
    headerWidth: header.width,
    outside,
  };
}"""


def _upload_and_finish(page: Page, org: tuple[int, str], tmp_path: Path, name: str) -> None:
    series, path = shop(org[0], tmp_path, name)
    sign_in(page, org[1])
    choose_upload(page, series, path)
    page.get_by_role("button", name="Upload").click()
    wait_for_end(page, "COMPLETED_WITH_ERRORS")


def _line_starts(page: Page, selector: str) -> dict[str, Any]:
    found: dict[str, Any] = page.locator(selector).evaluate(LINE_STARTS)
    return found


def _assert_fits(page: Page, width: int) -> None:
    seen = page.evaluate(OVERFLOW)
    assert seen["outside"] == [], seen
    assert seen["scrollWidth"] == seen["width"] == width, seen
    # The dark header band spans the whole width.
    assert seen["headerLeft"] == 0
    assert seen["headerWidth"] == width


def test_on_a_phone_sized_screen_nothing_scrolls_the_page_sideways(
    phone: Page, org: tuple[int, str], tmp_path: Path
) -> None:
    series, path = shop(org[0], tmp_path, LONG_NAME)
    sign_in(phone, org[1])
    choose_upload(phone, series, path)
    phone.screenshot(path="/tmp/bulkredeem-page-420-form.png", full_page=True)
    _assert_fits(phone, 420)  # the form, its columns' dropdowns shown

    phone.get_by_role("button", name="Upload").click()
    wait_for_end(phone, "COMPLETED_WITH_ERRORS")
    phone.screenshot(path="/tmp/bulkredeem-page-420.png", full_page=True)
    _assert_fits(phone, 420)  # the job, its failed rows, the jobs list
    # Every control can be reached without sideways scrolling.
    for name in ("Upload", "Download errors CSV", "Refresh", "Close", "Sign out"):
        box = phone.get_by_role("button", name=name).bounding_box()
        assert box is not None
        assert box["x"] >= 0
        assert box["x"] + box["width"] <= 420, name


def test_on_a_wide_screen_the_page_keeps_its_layout(
    page: Page, org: tuple[int, str], tmp_path: Path
) -> None:
    _upload_and_finish(page, org, tmp_path, LONG_NAME)
    page.screenshot(path="/tmp/bulkredeem-page-1280.png", full_page=True)

    _assert_fits(page, 1280)
    # The jobs table is a table here: one row per job, its headers on top.
    header = page.locator("#jobs-table thead")
    playwright_expect()(header).to_be_visible()
    row = page.locator("#jobs-rows tr").first
    boxes = [c.bounding_box() for c in row.locator("td").all()]
    assert len({round(b["y"]) for b in boxes if b}) == 1


def test_a_long_file_name_wraps_at_its_separators_never_inside_a_word(
    any_width: Page, org: tuple[int, str], tmp_path: Path
) -> None:
    page = any_width
    _upload_and_finish(page, org, tmp_path, LONG_NAME)
    wrapped = False
    for selector in ("#job-file", "#jobs-rows tr:first-child td.file"):
        shown = _line_starts(page, selector)
        assert shown["text"] == LONG_NAME, selector
        for start in shown["starts"]:
            assert LONG_NAME[start - 1] in "_-.", (selector, LONG_NAME[:start])
        wrapped = wrapped or any(LONG_NAME[start - 1] == "_" for start in shown["starts"])
        # Read out as one name, not as pieces ("redemptions_ diwali-" ...).
        assert LONG_NAME in page.locator(selector).aria_snapshot()
        # The whole name stays one hover away, whatever the box shows of it.
        playwright_expect()(page.locator(selector).locator("[title]").first).to_have_attribute(
            "title", LONG_NAME
        )
    if page.viewport_size == PHONE:
        # On a phone the name is too long for one line: it did wrap, so the check above bit.
        assert wrapped, "the name was not wrapped after an underscore"


def test_a_name_piece_wider_than_its_box_ends_in_an_ellipsis_never_breaks(
    phone: Page, org: tuple[int, str], tmp_path: Path
) -> None:
    name = "redemptions" + "x" * 60 + ".csv"
    _upload_and_finish(phone, org, tmp_path, name)
    shown = _line_starts(phone, "#job-file")
    assert all(name[start - 1] == "." for start in shown["starts"]), shown
    box = phone.locator("#job-file .file-name")
    # Cut at the box's edge (text-overflow: ellipsis), not wider than the screen.
    assert box.evaluate("el => el.scrollWidth > el.clientWidth")
    assert box.evaluate("el => getComputedStyle(el).textOverflow") == "ellipsis"
    assert box.evaluate("el => el.getBoundingClientRect().right") <= 420
    playwright_expect()(box).to_have_attribute("title", name)
