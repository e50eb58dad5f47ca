"""Model cards are parsed safely: only mappings, only safe YAML, bounded size and shape."""

from __future__ import annotations

import time

from heritage.sources.cards import CARD_SIZE_LIMIT, parse_card, read_card


def test_front_matter_fields_and_body_description():
    card = parse_card(
        "---\nlicense: mit\nmodel_name: org/m\nbase_model: org/base\ntags: [a, b]\n"
        "created: 2024-01-02\n---\n\n# m\n\nFirst paragraph\ncontinues.\n\nSecond.\n"
    )
    assert card.name == "org/m" and card.base_models == ["org/base"]
    assert card.description == "First paragraph continues."
    assert card.metadata["tags"] == ["a", "b"] and card.metadata["created"] == "2024-01-02"
    assert not card.problems


def test_name_description_and_base_model_list():
    card = parse_card(
        "---\nname: x\ndescription: ' short '\nbase_model:\n- a/b\n- c/d\n- a/b\n---\nbody\n"
    )
    assert (card.name, card.description, card.base_models) == ("x", "short", ["a/b", "c/d"])


def test_bad_base_model_types_are_ignored_with_a_reason():
    for value in ("{a: 1}", "[a, 3]", "7"):
        card = parse_card(f"---\nbase_model: {value}\n---\n")
        assert card.base_models == []
        assert card.problems == ["base_model is neither a string nor a list of strings; ignored"]


def test_non_mapping_invalid_and_unclosed_front_matter():
    card = parse_card("---\n- a\n- b\n---\ntext\n")
    assert card.metadata == {} and card.description == "text"
    assert card.problems == ["front matter is a list, not a mapping; ignored"]
    assert parse_card("---\na: [1\n---\n").problems[0].startswith("front matter is not valid YAML")
    assert parse_card("---\na: 1\n").problems == ["front matter has no closing '---'; ignored"]
    assert parse_card("no front matter\n").description == "no front matter"


def test_python_tags_are_refused_not_executed(tmp_path):
    marker = tmp_path / "pwned"
    card = parse_card(f"---\nx: !!python/object/apply:os.system ['touch {marker}']\n---\n")
    assert card.metadata == {} and card.problems[0].startswith("front matter is not valid YAML")
    assert not marker.exists()


def test_alias_bomb_is_refused_quickly():
    lines = ["---", "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 12):
        prev = f"*a{i - 1}"
        lines.append(f"a{i}: &a{i} [{', '.join([prev] * 10)}]")
    lines.append("base_model: org/base\n---\n")
    start = time.perf_counter()
    card = parse_card("\n".join(lines))
    assert time.perf_counter() - start < 2
    assert card.metadata == {} and card.base_models == []
    assert "values; ignored" in card.problems[0]


def test_self_referencing_front_matter_is_refused():
    card = parse_card("---\na: &a [*a]\n---\n")
    assert card.metadata == {} and "values; ignored" in card.problems[0]


def test_read_card_caps_the_size(tmp_path):
    path = tmp_path / "README.md"
    path.write_text("---\nname: big\n---\n" + "x" * (CARD_SIZE_LIMIT * 2))
    card = read_card(path)
    assert card.name == "big"
    assert card.problems[0].startswith("model card is over 256 KB")
    assert read_card(tmp_path / "missing.md").problems[0].startswith("cannot read model card")
