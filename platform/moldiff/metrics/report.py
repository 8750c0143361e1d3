"""One report shape for every run's ``metrics.json``, whatever the workflow.

A :class:`Report` is a list of :class:`Entry` values, each one statistic of one group of samples:

    key        unique flat name (what sweeps select on and pages index by): "distance_tvd",
               "iid_js", "itp_all_median_ratio"
    metric     the statistic itself: "distance_tvd", "js", "median_ratio"
    labels     what it was measured on, as structure instead of a name to parse:
               {"mode": "iid"}, {"method": "itp", "group": "diffusion50"}, {"split": "val"}
    per_seed   one value per seed (``seed_kind`` says whether sampling or training seeds)
    floor      the comparison column, per seed or a single value; ``Report.floor_meaning`` says what it
               is (two independent reference draws, no relaxation, the test molecules themselves, ...)
    train_set  the training set's own value where that means something, else None (never a stand-in)
    unit       the value's unit where it has one

Everything the old files held stays: experiment, variant, seeds, sample counts, how the reference
was split. ``load_report`` reads this schema and the flat one that runs wrote before it (blocks
``metrics`` / ``noise_floor`` / ``train_set`` keyed by flat names), so old run directories still
load; a file that is neither is a clear error naming it.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Union

import numpy as np

SCHEMA = "moldiff.report/2"
REPORT_FILE = "metrics.json"


class ReportError(ValueError):
    """A metrics file that cannot be read as a report."""


def _floats(values: Iterable[float]) -> list[float]:
    return [float(v) for v in values]


def _mean_std(values: list[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return math.nan, math.nan
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0


@dataclass
class Entry:
    key: str
    metric: str
    per_seed: list[float]
    floor: Optional[list[float]] = None
    train_set: Optional[float] = None
    unit: Optional[str] = None
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def mean(self) -> float:
        return _mean_std(self.per_seed)[0]

    @property
    def std(self) -> float:
        return _mean_std(self.per_seed)[1]

    @property
    def floor_mean(self) -> Optional[float]:
        return None if self.floor is None else _mean_std(self.floor)[0]

    @property
    def floor_std(self) -> Optional[float]:
        return None if self.floor is None else _mean_std(self.floor)[1]

    def to_json(self) -> dict:
        out = asdict(self)
        out.update(mean=self.mean, std=self.std)
        if self.floor is not None:
            out.update(floor_mean=self.floor_mean, floor_std=self.floor_std)
        return out


@dataclass
class Report:
    experiment: str
    variant: str
    workflow: str
    seeds: list[int]
    seed_kind: str = "sampling"            # the per-seed values come from sampling seeds of one model
    n_samples: int = 0                     # samples (molecules, states, inputs) per seed
    n_reference: int = 0
    n_noise_floor_set: int = 0
    n_train: int = 0
    reference: str = ""                   # what the samples were compared with
    floor_meaning: str = ""               # what the comparison column holds
    entries: list[Entry] = field(default_factory=list)
    context: dict = field(default_factory=dict)     # workflow-specific facts (exact populations, manifests)

    # ----------------------------------------------------------------------------- building

    def add(self, key: str, per_seed: Iterable[float], floor: Union[None, float, Iterable[float]] = None,
            train_set: Optional[float] = None, unit: Optional[str] = None, metric: Optional[str] = None,
            **labels: str) -> Entry:
        if any(e.key == key for e in self.entries):
            raise ValueError(f"report {self.experiment}: entry {key!r} added twice")
        floor_values = None if floor is None else _floats([floor] if np.isscalar(floor) else floor)
        entry = Entry(key, metric or key, _floats(per_seed), floor_values,
                      None if train_set is None else float(train_set), unit,
                      {k: str(v) for k, v in labels.items()})
        self.entries.append(entry)
        return entry

    # ------------------------------------------------------------------------------ reading

    def __contains__(self, key: str) -> bool:
        return any(e.key == key for e in self.entries)

    def __getitem__(self, key: str) -> Entry:
        for e in self.entries:
            if e.key == key:
                return e
        raise KeyError(f"report {self.experiment}: no entry {key!r}; entries: {', '.join(self.keys())}")

    def keys(self) -> list[str]:
        return [e.key for e in self.entries]

    def select(self, **labels: str) -> list[Entry]:
        """Entries whose labels include all of ``labels`` (``metric=`` matches the statistic)."""
        metric = labels.pop("metric", None)
        return [e for e in self.entries if (metric is None or e.metric == metric)
                and all(e.labels.get(k) == v for k, v in labels.items())]

    def label_values(self, label: str) -> list[str]:
        """Every value ``label`` takes, in the order entries were added."""
        return list(dict.fromkeys(e.labels[label] for e in self.entries if label in e.labels))

    def means(self) -> dict[str, float]:
        return {e.key: e.mean for e in self.entries}

    def summary_view(self) -> dict:
        """Entries keyed by name as {"metrics": {key: {mean, std, per_seed}}, "noise_floor": {...},
        "train_set": {key: value or None}} with the header fields: the shape of tables that index
        by entry name (study pages merge these across trials)."""
        def stats(values):
            mean, std = _mean_std(values)
            return {"mean": mean, "std": std, "per_seed": list(values)}
        head = {k: v for k, v in asdict(self).items() if k != "entries"}
        return {**head, "reference_split": self.reference,
                "metrics": {e.key: stats(e.per_seed) for e in self.entries},
                "noise_floor": {e.key: stats(e.floor) for e in self.entries if e.floor is not None},
                "train_set": {e.key: e.train_set for e in self.entries},
                "units": {e.key: e.unit for e in self.entries if e.unit}}

    # -------------------------------------------------------------------------------- files

    def to_json(self) -> dict:
        head = {k: v for k, v in asdict(self).items() if k not in ("entries",)}
        return {"schema": SCHEMA, **head, "entries": [e.to_json() for e in self.entries]}

    def write(self, run_dir: Path) -> Path:
        from ..atomic import write_text
        path = Path(run_dir) / REPORT_FILE
        write_text(path, json.dumps(self.to_json(), indent=2, allow_nan=True) + "\n")
        return path

    @classmethod
    def from_json(cls, raw: dict, source: str = "<dict>") -> "Report":
        if not isinstance(raw, dict):
            raise ReportError(f"{source}: a metrics report is a JSON object, got {type(raw).__name__}")
        if raw.get("schema") == SCHEMA:
            try:
                entries = [Entry(e["key"], e["metric"], e["per_seed"], e.get("floor"), e.get("train_set"),
                                 e.get("unit"), e.get("labels") or {}) for e in raw["entries"]]
                head = {k: raw[k] for k in ("experiment", "variant", "workflow", "seeds")}
            except (KeyError, TypeError) as err:
                raise ReportError(f"{source}: a {SCHEMA} report without {err}") from None
            rest = {k: raw[k] for k in ("seed_kind", "n_samples", "n_reference", "n_noise_floor_set", "n_train",
                                        "reference", "floor_meaning", "context") if k in raw}
            return cls(**head, **rest, entries=entries)
        if "metrics" in raw and "noise_floor" in raw:
            return _from_flat(raw, source)
        raise ReportError(f"{source}: not a moldiff metrics report (no 'schema': {SCHEMA!r} and no 'metrics' / "
                          "'noise_floor' blocks); rerun the run's evaluate stage: "
                          "python experiments/run.py <run_dir> --stages evaluate")


def load_report(path: Union[str, Path]) -> Report:
    """The report in ``path`` (a ``metrics.json`` or the run directory holding it)."""
    path = Path(path)
    if path.is_dir():
        path = path / REPORT_FILE
    if not path.is_file():
        raise ReportError(f"{path}: no metrics report; run the 'evaluate' stage first "
                          f"(python experiments/run.py {path.parent} --stages evaluate)")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ReportError(f"{path}: not valid JSON ({err}); rerun the evaluate stage") from None
    return Report.from_json(raw, str(path))


# ------------------------------------------------------------------- the flat files of before


_STATE_KEY = re.compile(r"^(?P<mode>iid|sim|gap)_(?P<metric>.+)$")
_RELAX_STATS = ("median_ratio_se", "failure_fraction_se", "median_ratio", "failure_fraction", "median_rmsd_after",
                "median_steps", "converged_fraction", "median_energy_above_min", "mean_energy_above_min",
                "no_energy_fraction", "validity", "uniqueness", "valid_and_unique", "novelty", "atom_stability",
                "molecule_stability")


def _flat_labels(key: str) -> tuple[str, dict]:
    """(metric, labels) of a flat key written before reports had labels."""
    from ..relaxation.methods import METHODS

    relax = re.match(rf"^((?:{'|'.join(METHODS)})(?:-kmin\d+)?)_(.+?)_({'|'.join(_RELAX_STATS)})$", key)
    if relax:
        return relax[3], {"method": relax[1], "group": relax[2]}
    state = _STATE_KEY.match(key)
    if state:
        return state["metric"], {"mode": state["mode"]}
    split = re.match(r"^val_(.+_mae)$", key)
    if split:
        return split[1], {"split": "val"}
    return key, {}


def _from_flat(raw: dict, source: str) -> Report:
    metrics, floors, train = raw["metrics"], raw["noise_floor"], raw.get("train_set") or {}
    units = raw.get("units") or {}
    entries = []
    for key, s in metrics.items():
        metric, labels = _flat_labels(key)
        floor = floors.get(key)
        entries.append(Entry(key, metric, s["per_seed"], None if floor is None else floor["per_seed"],
                             train.get(key), units.get(key) if isinstance(units.get(key), str) else None, labels))
    context = {k: raw[k] for k in ("train_manifest", "exact_populations", "units") if k in raw}
    return Report(raw.get("experiment", Path(source).parent.name), raw.get("variant", ""), "legacy",
                  raw.get("seeds", []), "sampling", raw.get("n_samples", 0), raw.get("n_reference", 0),
                  raw.get("n_noise_floor_set", 0), raw.get("n_train", 0), raw.get("reference_split", ""),
                  "", entries, context)


# --------------------------------------------------------------------------------- rendering


def _cell(value: Optional[float], std: Optional[float] = None) -> str:
    if value is None:
        return "–"
    return f"{value:.4f}" + (f" ± {std:.4f}" if std is not None else "")


def results_table(report: Report, floor_title: str = "noise floor", sample_title: str = "samples") -> str:
    """Markdown: key | value (mean ± std over seeds) | comparison column | training set | unit."""
    has_train = any(e.train_set is not None for e in report.entries)
    has_unit = any(e.unit for e in report.entries)
    head = ["metric", f"{sample_title} (mean ± std)", f"{floor_title} (mean ± std)"] + \
        (["training set"] if has_train else []) + (["unit"] if has_unit else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for e in report.entries:
        row = [e.key, _cell(e.mean, e.std), _cell(e.floor_mean, e.floor_std)]
        if has_train:
            row.append(_cell(e.train_set))
        if has_unit:
            row.append(e.unit or "")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def write_results_page(report: Report, run_dir: Path, description: str = "", preamble: str = "",
                       **table_kwargs) -> str:
    """``<run_dir>/results.md``: the run's name, description, how it was judged, and the table."""
    from ..atomic import write_text

    table = results_table(report, **table_kwargs)
    how = f"Reference: {report.reference}." if report.reference else ""
    floor = f" Comparison column: {report.floor_meaning}." if report.floor_meaning else ""
    seeds = f"{report.n_samples} per seed, {report.seed_kind} seeds {report.seeds}."
    figures = "\n\n".join(f"![{png.stem}](plots/{png.name})" for png in sorted((Path(run_dir) / "plots").glob("*.png")))
    text = "\n\n".join(p for p in (f"# {report.experiment}", description, preamble, f"{seeds} {how}{floor}".strip(),
                                   table, figures) if p) + "\n"
    write_text(Path(run_dir) / "results.md", text)
    return table
