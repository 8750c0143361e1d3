"""Loading experiment configs: YAML with ``extends``, dotted ``key=value`` overrides, validation
with errors that name the file, the key path and what is allowed, and paths made absolute for
processes that run elsewhere."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Optional, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from .schema import ConfigError, ExperimentConfig


def _parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"override '{text}' is not of the form key.sub=value")
    key, raw = text.split("=", 1)
    path = [p for p in key.strip().split(".")]
    if not key.strip() or any(not p for p in path):
        raise ConfigError(f"override '{text}' has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as err:
        raise ConfigError(f"override '{text}': value is not valid YAML ({err})") from None
    return path, value


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Set ``key.sub=value`` overrides on a raw config dict (values parsed as YAML scalars/lists)."""
    out = copy.deepcopy(raw)
    for text in overrides:
        path, value = _parse_override(text)
        node = out
        for i, part in enumerate(path[:-1]):
            if isinstance(node, list):          # a list item by index, e.g. experts.members.0.training.epochs
                child = node[_list_index(node, part, text, path[:i + 1])]
            else:
                child = node.get(part)
                if child is None:
                    child = node[part] = {}
            if not isinstance(child, (dict, list)):
                raise ConfigError(f"override '{text}': '{'.'.join(path[:i + 1])}' is a value, not a section")
            node = child
        if isinstance(node, list):
            node[_list_index(node, path[-1], text, path)] = value
        else:
            node[path[-1]] = value
    return out


def _list_index(node: list, part: str, text: str, path: list[str]) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise ConfigError(f"override '{text}': '{'.'.join(path)}' needs an index 0-{len(node) - 1} into a list")
    return int(part)


def _section_model(loc: tuple) -> Optional[type[BaseModel]]:
    """The pydantic model that owns the field at ``loc`` (to list allowed keys)."""
    model: Any = ExperimentConfig
    for part in loc[:-1]:
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
        field = model.model_fields.get(part)
        if field is None:
            return None
        ann = field.annotation
        if get_origin(ann) is not None:  # Optional[X] -> X
            ann = next((a for a in get_args(ann) if isinstance(a, type) and issubclass(a, BaseModel)), None)
        model = ann
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def format_validation_error(err: ValidationError, source: str) -> str:
    lines = [f"invalid configuration in {source}:"]
    for e in err.errors():
        loc = tuple(str(p) for p in e["loc"])
        key = ".".join(loc) or "<root>"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            owner = _section_model(loc)
            allowed = sorted(owner.model_fields) if owner else []
            msg = f"unknown key; allowed keys here: {', '.join(allowed)}"
        elif "input" in e and e["type"] not in ("missing",) and not isinstance(e["input"], dict):
            msg += f" (got {e['input']!r})"
        lines.append(f"  {key}: {msg}")
    return "\n".join(lines)


def deep_merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_raw(path: str | Path, _chain: tuple = ()) -> dict:
    """YAML -> dict, resolving ``extends: other.yaml`` (relative to the file) by deep merge."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}" + (f" (extended by {_chain[-1]})" if _chain else ""))
    if path.resolve() in _chain:
        raise ConfigError(f"{path}: 'extends' forms a cycle: {' -> '.join(map(str, _chain + (path,)))}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    base = raw.pop("extends", None)
    if base is None:
        return raw
    if not isinstance(base, str):
        raise ConfigError(f"{path}: 'extends' must be a file name, got {base!r}")
    return deep_merge(load_raw(path.parent / base, _chain + (path.resolve(),)), raw)


PATH_KEYS = (("output_dir",), ("data", "root"), ("data", "npz", "path"), ("data", "parquet", "path"), ("data", "ase", "path"),
             ("ray", "storage_path"), ("sampling", "checkpoint"), ("relaxation", "time_run"),
             ("relaxation", "inputs", "from_run"))


def absolute_paths(raw: dict, base: Path | None = None) -> dict:
    """Resolve the config's relative paths against ``base`` (default: the working directory), for
    processes that run elsewhere (Tune trials run inside their trial directory)."""
    out = copy.deepcopy(raw)
    base = Path(base or Path.cwd())
    defaults = {("output_dir",): "runs", ("data", "root"): "data"}
    for keys in PATH_KEYS:
        node = out
        for k in keys[:-1]:
            node = node.get(k) if isinstance(node, dict) else None
            if node is None:
                break
        if not isinstance(node, dict):
            continue
        value = node.get(keys[-1], defaults.get(keys))
        if isinstance(value, str) and not is_uri(value):
            node[keys[-1]] = str((base / Path(value).expanduser()).resolve())
    return out


def flatten(nested: dict, prefix: str = "", keep_empty: bool = False) -> dict:
    """Nested sections become dotted keys, so {"objective": {"fokker_planck": {"alpha": a}}} and
    "objective.fokker_planck.alpha" mean the same (later entries win); list values stay whole.
    ``keep_empty``: an empty section stays a key (``{}``) instead of vanishing."""
    out = {}
    for key, value in nested.items():
        if isinstance(value, dict) and (value or not keep_empty):
            out.update(flatten(value, f"{prefix}{key}.", keep_empty))
        else:
            out[f"{prefix}{key}"] = value
    return out


def dotted_changes(old: dict, new: dict) -> list[str]:
    """``key: old -> new`` (or ``added`` / ``removed``) for every dotted key where two nested
    dicts differ, sorted."""
    a, b = flatten(old, keep_empty=True), flatten(new, keep_empty=True)
    out = []
    for key in sorted(set(a) | set(b)):
        if key not in a:
            out.append(f"{key}: added {b[key]!r}")
        elif key not in b:
            out.append(f"{key}: removed (was {a[key]!r})")
        elif a[key] != b[key]:
            out.append(f"{key}: {a[key]!r} -> {b[key]!r}")
    return out


def is_uri(value: str) -> bool:
    """``s3://bucket/prefix``, ``gs://...``: storage Ray Train reaches through pyarrow.fs, not a path."""
    return "://" in value


def load_config(path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read a YAML experiment config (following ``extends``), apply overrides, and validate it."""
    return validate_config(apply_overrides(load_raw(path), overrides or []), source=str(path))


def validate_config(raw: dict, source: str = "<dict>") -> ExperimentConfig:
    try:
        return ExperimentConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source)) from None


def dump_config(cfg: ExperimentConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
