"""Fixtures for the eval/viz tests: hand-built search trees and a headless Chromium driver."""

from __future__ import annotations

import random
import shutil
import tempfile
from pathlib import Path

from astro_reasoner.types import Node, SearchTree, Verdict

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


def small_tree() -> SearchTree:
    """A 7-node tree: root -> (1 -> (3 wrong, 4 correct), 2 -> (5 -> 6 wrong))."""
    spec = [  # id, parent, step, visits, value_sum, prior, terminal, answer, verdict
        (0, -1, "", 6, 0.0, 1.0, False, None, None),
        (1, 0, "There are 3 boxes with 4 apples each, so 3 * 4 = 12 apples.", 3, 1.0, 0.6, False, None, None),
        (2, 0, "Tom has 3 + 4 = 7 apples.", 3, -3.0, 0.4, False, None, None),
        (3, 1, "He eats 2, so 12 + 2 = 14. The answer is \\boxed{14}.", 1, -1.0, 0.3, True, "14", "wrong"),
        (4, 1, "He eats 2 apples, so 12 - 2 = 10 apples are left. The answer is \\boxed{10}.", 2, 2.0, 0.7,
         True, "10", "correct"),
        (5, 2, "He eats 2, so 7 - 2 = 5.", 3, -3.0, 1.0, False, None, None),
        (6, 5, "The answer is \\boxed{5}.", 3, -3.0, 1.0, True, "5", "wrong"),
    ]
    nodes = []
    for i, p, step, n, w, prior, term, ans, verdict in spec:
        nodes.append(Node(id=i, parent=p, depth=0 if p < 0 else nodes[p].depth + 1, step=step, prior=prior,
                          visits=n, value_sum=w, evals=1 if term else 0, terminal=term, answer=ans,
                          verdict=verdict, step_tokens=len(step.split())))
    for nd in nodes:
        if nd.parent >= 0:
            nodes[nd.parent].children.append(nd.id)
    return SearchTree(problem_id="apples-1", problem="Tom has 3 boxes with 4 apples in each box. He eats 2 "
                      "apples. How many apples are left?", answer="10", nodes=nodes,
                      stats={"generated_tokens": 123, "backend_calls": 7})


def big_tree(n_nodes: int = 5000, seed: int = 0, width: int = 4) -> SearchTree:
    """A random tree of ``n_nodes`` (preferential growth), leaves at depth >= 3 terminal."""
    rng = random.Random(seed)
    nodes = [Node(id=0, parent=-1, depth=0, step="")]
    while len(nodes) < n_nodes:
        parent = nodes[rng.randrange(len(nodes))] if rng.random() < 0.3 else nodes[-1]
        if parent.terminal or len(parent.children) >= width:
            parent = nodes[rng.randrange(len(nodes))]
            if parent.terminal or len(parent.children) >= width:
                continue
        i = len(nodes)
        nd = Node(id=i, parent=parent.id, depth=parent.depth + 1, step=f"Step {i}: x_{i} = {rng.randint(1, 99)} "
                  f"<b>not html</b> & more", prior=rng.random())
        nd.terminal = nd.depth >= 3 and rng.random() < 0.35
        if nd.terminal:
            nd.answer = str(rng.randint(1, 9))
            nd.verdict = Verdict.CORRECT if nd.answer == "7" else Verdict.WRONG
        nodes.append(nd)
        parent.children.append(i)
    for nd in reversed(nodes):  # back up visits/values bottom-up
        if nd.terminal:
            nd.evals, nd.visits, nd.value_sum = 1, 1, 1.0 if nd.verdict == "correct" else -1.0
        elif not nd.children:
            nd.evals, nd.visits, nd.value_sum = 1, 1, 0.0
        else:
            nd.visits = sum(nodes[c].visits for c in nd.children)
            nd.value_sum = sum(nodes[c].value_sum for c in nd.children)
    return SearchTree(problem_id="big", problem="A big random tree.", answer="7", nodes=nodes)


def chromium_driver():
    """Headless Chromium through selenium with the project's launch flags (returns driver, profile dir)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="astro-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-dev-shm-usage",
                 f"--user-data-dir={profile}", "--window-size=1400,900"):
        opts.add_argument(flag)
    service = Service(executable_path=shutil.which("chromedriver") or "/usr/bin/chromedriver")
    return webdriver.Chrome(service=service, options=opts), profile
