"""Node.verdict is a Verdict member in memory and the bare value in JSON (trees on disk do not change)."""

from __future__ import annotations

import json

import pytest

from astro_reasoner.search.config import SearchConfig
from astro_reasoner.search.mcts import new_tree, validate_tree
from astro_reasoner.types import NO_PARENT, ROOT_ID, Node, SearchTree, Verdict


def test_a_verdict_read_from_json_is_a_member_and_writes_back_as_the_value():
    node = Node.from_json({"id": 1, "parent": ROOT_ID, "depth": 1, "step": "x", "terminal": True,
                           "verdict": "correct"})
    assert node.verdict is Verdict.CORRECT
    assert json.dumps(node.to_json()["verdict"]) == '"correct"'
    assert f"{node.verdict}" == str(node.verdict) == "correct"  # never "Verdict.CORRECT"
    assert {"correct": 1}[node.verdict] == 1 and node.verdict in {"correct"}  # hashes as its value


def test_an_unknown_verdict_is_a_malformed_record():
    with pytest.raises(ValueError, match="maybe"):
        Node(id=1, parent=ROOT_ID, depth=1, step="x", verdict="maybe")


def test_tree_round_trip_is_byte_identical():
    tree = new_tree("p", "1+1?", "2")
    tree.nodes.append(Node(id=1, parent=ROOT_ID, depth=1, step="2", terminal=True, verdict=Verdict.WRONG))
    tree.nodes[ROOT_ID].children.append(1)
    text = json.dumps(tree.to_json())
    assert json.dumps(SearchTree.from_json(json.loads(text)).to_json()) == text
    assert '"verdict": "wrong"' in text and tree.terminals(Verdict.WRONG) == [tree.nodes[1]]


def test_the_root_constants_describe_new_trees():
    tree = new_tree("p", "q", "a")
    assert tree.nodes[ROOT_ID].parent == NO_PARENT and not validate_tree(tree)


@pytest.mark.parametrize("verdict, reward", [(Verdict.CORRECT, 1.0), (Verdict.WRONG, -0.5),
                                             (Verdict.UNPARSEABLE, -2.0), (None, -2.0)])
def test_search_rewards_by_verdict(verdict, reward):
    cfg = SearchConfig(reward_wrong=-0.5, reward_unparseable=-2.0)
    assert cfg.reward(verdict) == reward
