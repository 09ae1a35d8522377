"""The tree viewer in a real headless Chromium: click a node, read its step text; big trees stay usable.

Needs Debian's chromium + chromium-driver and selenium (scripts/setup_test_extras.sh). Screenshots go to
test-artifacts/ for a human to look at.
"""

from __future__ import annotations

import json
import shutil
import time

import pytest
from eval_helpers import ARTIFACTS, big_tree, chromium_driver, small_tree

from astro_reasoner.viz.tree_view import render_tree_html

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser():
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.fail("selenium is missing: pip install selenium (the test extras install it)")
    if not shutil.which("chromium") or not shutil.which("chromedriver"):
        pytest.fail("chromium/chromedriver missing: apt-get install chromium chromium-driver "
                    "(scripts/setup_test_extras.sh does it)")
    driver, profile = chromium_driver()
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def _by():
    from selenium.webdriver.common.by import By

    return By


def test_click_node_shows_its_step_text(browser, tmp_path):
    By = _by()
    tree = small_tree()
    page = tmp_path / "tree.html"
    page.write_text(render_tree_html(tree))
    browser.get(page.as_uri())
    rows = browser.find_elements(By.CSS_SELECTOR, ".row")
    assert len(rows) == 7  # small trees open fully
    assert "Root" in browser.find_element(By.ID, "details").text
    browser.find_element(By.ID, "node-4").click()
    shown = browser.find_element(By.ID, "step-text").text
    assert shown == tree.nodes[4].step
    cells = [td.text for td in browser.find_elements(By.CSS_SELECTOR, "#details td")]
    assert cells[cells.index("verdict") + 1] == "correct" and cells[cells.index("visits N") + 1] == "2"
    path_items = browser.find_elements(By.CSS_SELECTOR, "ol.path li")
    assert [li.text.split(" ", 1)[1] for li in path_items[1:]] == [tree.nodes[1].step, tree.nodes[4].step]
    assert "selected" in browser.find_element(By.ID, "node-4").get_attribute("class")
    # terminal colours: correct green, wrong red
    assert browser.find_element(By.CSS_SELECTOR, "#node-4 .dot").value_of_css_property("background-color") \
        == "rgba(46, 125, 50, 1)"
    assert browser.find_element(By.CSS_SELECTOR, "#node-3 .dot").value_of_css_property("background-color") \
        == "rgba(198, 40, 40, 1)"
    # collapse node 1: its children disappear; clicking the toggle again brings them back
    browser.find_element(By.CSS_SELECTOR, "#node-1 .tog").click()
    assert not browser.find_element(By.ID, "node-4").is_displayed()
    browser.find_element(By.CSS_SELECTOR, "#node-1 .tog").click()
    assert browser.find_element(By.ID, "node-4").is_displayed()
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "tree_viewer_small.png"))
    assert browser.get_log("browser") == []  # no script errors


def test_big_tree_loads_lazily_and_search_reveals_deep_nodes(browser, tmp_path):
    By = _by()
    from selenium.webdriver.common.keys import Keys

    tree = big_tree(5000)
    page = tmp_path / "big.html"
    page.write_text(render_tree_html(tree))
    t0 = time.time()
    browser.get(page.as_uri())
    load = time.time() - t0
    rendered = len(browser.find_elements(By.CSS_SELECTOR, ".row"))
    assert rendered < 300, "only the top levels should be in the DOM at first"
    assert load < 10
    deep = max(tree.nodes, key=lambda n: n.depth)
    box = browser.find_element(By.ID, "search")
    box.send_keys(f"Step {deep.id}:" + Keys.ENTER)
    assert browser.find_element(By.ID, "step-text").text == deep.step  # escaped <b> shown as text
    assert len(browser.find_elements(By.CSS_SELECTOR, "ol.path li")) == deep.depth + 1
    browser.find_element(By.ID, "btn-correct").click()
    sel = browser.find_element(By.CSS_SELECTOR, ".row.selected")
    assert tree.nodes[int(sel.get_attribute("data-id"))].verdict == "correct"
    browser.save_screenshot(str(ARTIFACTS / "tree_viewer_big.png"))
    assert browser.get_log("browser") == []


def test_tree_inside_the_report_iframe_is_clickable(browser, tmp_path):
    By = _by()
    from astro_reasoner.viz.report import build_report

    tree = small_tree()
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "trees.jsonl").write_text(json.dumps(tree.to_json()) + "\n")
    out = build_report(tmp_path / "run", tmp_path / "report.html")
    browser.get(out.as_uri())
    browser.switch_to.frame(browser.find_element(By.CSS_SELECTOR, "iframe.tree"))
    try:
        browser.find_element(By.ID, "node-3").click()
        assert browser.find_element(By.ID, "step-text").text == tree.nodes[3].step
    finally:
        browser.switch_to.default_content()
    assert browser.get_log("browser") == []
