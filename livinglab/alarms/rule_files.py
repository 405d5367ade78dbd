"""Alarm rule files: YAML lists of rules for bulk import (`livinglab alarms rules import FILE`), and the default
rule set shipped with the package (`default_rules.yaml`).

A file holds a list of rules, or a mapping with a `rules:` list; keys are the rule fields of CONTRACT.md section 5.
Every entry is validated with `RuleSpec`; a file with any invalid entry (or two entries with one rule id) is refused
whole, naming each bad entry. Checks that need the registry (the scope's sensor) happen at import, in the one
transaction that writes the rules (`livinglab.alarms.store.import_rules`).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from livinglab.alarms.rules import RuleSpec
from livinglab.errors import LivinglabError
from livinglab.sensor_files import read_text, validated_entries, yaml_entries

DEFAULT_RULES = "default_rules.yaml"


class RuleFileError(LivinglabError):
    """A rule file that cannot be read or holds invalid entries."""


def parse_rules(text: str) -> list[RuleSpec]:
    """Rules from the text of a YAML file; raises RuleFileError listing every invalid entry."""
    data = yaml_entries(text, "rules", RuleFileError)
    specs: list[RuleSpec] = []
    problems: list[str] = []
    seen: set[str] = set()
    for number, spec in validated_entries(data, RuleSpec, "rule", problems):
        if spec.rule_id is not None:
            if spec.rule_id in seen:
                problems.append(f"entry {number}: rule_id {spec.rule_id!r} appears more than once")
                continue
            seen.add(spec.rule_id)
        specs.append(spec)
    if problems:
        raise RuleFileError("invalid rules, nothing imported:\n  " + "\n  ".join(problems))
    return specs


def read_rule_file(path: Path) -> list[RuleSpec]:
    """Rules from a `.yaml` or `.yml` file."""
    if path.suffix.lower() not in (".yaml", ".yml"):
        raise RuleFileError(f"{path}: unknown file type {path.suffix!r} (use .yaml or .yml)")
    return parse_rules(read_text(path, RuleFileError))


def default_rules() -> list[RuleSpec]:
    """The default rule set shipped with the package."""
    return parse_rules(resources.files("livinglab.alarms").joinpath(DEFAULT_RULES).read_text(encoding="utf-8"))
