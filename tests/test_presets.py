"""Presets and the one parser of user-given widths."""

import pytest

from ppo_core.config import MAX_WIDTH, PPOConfig
from ppo_core.errors import ConfigError
from ppo_core.presets import PRESETS, TRAINING_MODES, parse_hidden_dims, preset_name


def test_preset_widths_are_the_documented_ones():
    assert PRESETS == {
        "tiny": (256, 128, 64),
        "small": (512, 256, 128),
        "medium": (1024, 512, 256),
        "large": (2048, 1024, 512, 256),
        "xlarge": (4096, 2048, 1024, 512),
    }


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_name_and_parser_are_inverse(name):
    assert parse_hidden_dims(name) == PRESETS[name]
    assert parse_hidden_dims(f"  {name.upper()} ") == PRESETS[name]
    assert preset_name(PRESETS[name]) == name
    assert preset_name(list(PRESETS[name])) == name


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("768,384,192", (768, 384, 192)),
        ("768, 384, 192", (768, 384, 192)),
        ("768 384 192", (768, 384, 192)),
        ("64,", (64,)),
        (str(MAX_WIDTH), (MAX_WIDTH,)),
    ],
)
def test_parse_widths(text, expected):
    assert parse_hidden_dims(text) == expected


def test_custom_widths_are_named_by_their_widths():
    assert preset_name((768, 384, 192)) == "768x384x192"


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("", "is empty"),
        (" , ", "is empty"),
        ("huge", "'huge' is neither a preset"),
        ("256,-1", "'-1' is neither a preset"),
        ("256,12.5", "'12.5' is neither a preset"),
        ("256,0", "width 0 is outside"),
        (str(MAX_WIDTH + 1), f"width {MAX_WIDTH + 1} is outside"),
    ],
)
def test_parse_rejects_bad_text_in_one_line(text, named):
    with pytest.raises(ConfigError, match=named) as caught:
        parse_hidden_dims(text)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("mode", list(TRAINING_MODES))
def test_training_modes_are_valid_ppo_overrides(mode):
    config = PPOConfig(**TRAINING_MODES[mode])
    for field, value in TRAINING_MODES[mode].items():
        assert getattr(config, field) == value
