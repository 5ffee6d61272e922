"""Config files that inherit with ``base:``."""

import pytest
import yaml

from gradversary.config_files import merge, read_config_file
from gradversary.engine import load_config
from gradversary.errors import ConfigError


def test_a_child_merges_over_its_base_and_a_renamed_component_replaces_it(tmp_path):
    base = {"method": {"name": "dann", "disc_hidden": [4]}, "model": {"name": "mlp", "hidden": [8]},
            "data": {"name": "moons"}, "train": {"steps": 7, "seed": 0}}
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(base))
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.yaml").write_text("base: ../b.yaml\ntrain: {seed: 3}\nmethod: {name: erm}\n")
    raw = read_config_file(tmp_path / "sub" / "c.yaml")
    assert raw == {**base, "train": {"steps": 7, "seed": 3}, "method": {"name": "erm"}}
    cfg = load_config(tmp_path / "sub" / "c.yaml", ["train.steps=9"])
    assert cfg.method["name"] == "erm" and cfg.train.steps == 9 and cfg.model["hidden"] == [8]
    # the same component keeps the base's keys; lists replace
    assert merge({"m": {"name": "a", "x": 1, "l": [1, 2]}}, {"m": {"l": [3]}}) == {"m": {"name": "a", "x": 1, "l": [3]}}


def test_bad_bases_are_clear_errors(tmp_path):
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        read_config_file(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("base: missing.yaml\n")
    with pytest.raises(ConfigError, match="does not exist"):
        read_config_file(tmp_path / "c.yaml")
    (tmp_path / "d.yaml").write_text("- 1\n")
    with pytest.raises(ConfigError, match="mapping"):
        read_config_file(tmp_path / "d.yaml")
