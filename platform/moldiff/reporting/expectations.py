"""Judge a study's expected effects (benchmarks/expected_effects.yaml) from its numbers, so a
results page says "met" or "NOT met" by rule, not by hand."""
from __future__ import annotations

import operator
from pathlib import Path

import yaml

from .files import BENCHMARKS

FILE = BENCHMARKS / "expected_effects.yaml"
OPS = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt}


def judge(cells: dict[str, dict], checks: list[dict]) -> list[str]:
    """``cells``: variant -> {"metrics": {name: mean}, "floor": {name: mean}}. One line per check and
    variant; a check whose numbers are missing says so instead of passing."""
    lines = []
    for check in checks:
        names = list(cells) if check["variant"] == "*" else [check["variant"]]
        for name in names:
            metric, op = check["metric"], check["op"]
            ours = cells.get(name, {}).get("metrics", {}).get(metric)
            if "value" in check:
                bound, against = float(check["value"]), f"{check['value']}"
            elif check.get("of") == "noise_floor":
                floor = cells.get(name, {}).get("floor", {}).get(metric)
                bound = None if floor is None else check["factor"] * floor
                against = f"{check['factor']} x the noise floor {floor:.4g}" if floor is not None else "the floor"
            else:
                other = cells.get(check["of_variant"], {}).get("metrics", {}).get(metric)
                bound = None if other is None else check["factor"] * other
                against = (f"{check['factor']} x {check['of_variant']}'s {other:.4g}" if other is not None
                           else f"{check['of_variant']} (not run)")
            if ours is None or bound is None:
                lines.append(f"- {name}: {metric} {op} {against}: cannot be judged yet (not run or no such metric)")
                continue
            met = OPS[op](ours, bound)
            shown = "" if "value" in check else f" (= {bound:.4g})"
            lines.append(f"- {name}: {metric} {ours:.4g} {op} {against}{shown}: {'met' if met else '**NOT met**'}")
    return lines


def checks_for(name: str) -> list[dict]:
    return (yaml.safe_load(FILE.read_text()) or {}).get(name, [])
