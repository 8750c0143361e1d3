"""Workflows are registered once and looked up from the config; the stage runner names none of
them, and the config combinations each can run are checked by the workflow or objective they belong to."""
import re
from pathlib import Path

import pytest

import moldiff.experiment as experiment
from moldiff import workflows
from moldiff.config import ConfigError, load_config
from moldiff.objectives.registry import OBJECTIVES

CONFIGS = Path(__file__).resolve().parents[1] / "experiments" / "configs"


def test_the_stage_runner_names_no_objective_source_or_backbone():
    source = Path(experiment.__file__).read_text()
    named = re.findall(r"morered|qm9|unigem|force_field|is_vector_system|muller_brown|\begnn\b|painn", source)
    assert not named, named


EXPECTED = {"dsm_lj13": "molecules", "psm_md17": "molecules", "fp_muller_brown": "states", "fp_alanine": "states",
            "unigem_qm9": "generation", "morered_qm9": "relaxation", "morered_qm9_time": "relaxation",
            "morered_qm9_ff": "relaxation"}


@pytest.mark.parametrize("name,expected", sorted(EXPECTED.items()))
def test_each_config_resolves_to_its_workflow(name, expected):
    cfg = load_config(CONFIGS / f"{name}.yaml")
    assert workflows.workflow_for(cfg).name == expected


def test_every_objective_is_registered_once_and_names_a_registered_workflow_or_none():
    assert set(OBJECTIVES) == {"dsm", "psm", "fokker_planck", "unigem", "morered", "force_field"}
    assert {s.workflow for s in OBJECTIVES.values()} - {None} <= set(workflows.names())


def test_combinations_fail_with_the_rule_of_their_workflow_or_objective():
    with pytest.raises(ConfigError, match="states workflow"):
        load_config(CONFIGS / "fp_muller_brown.yaml", ["model.backbone=egnn"])
    with pytest.raises(ConfigError, match="objective.name unigem trains model.backbone branched_egnn"):
        load_config(CONFIGS / "unigem_qm9.yaml", ["model.backbone=painn", "model.cutoff=5.0"])
    with pytest.raises(ConfigError, match="only objective.name force_field uses them"):
        load_config(CONFIGS / "morered_qm9.yaml", ["data.qm9.gfn2_labels={n_molecules: 2}"])
    with pytest.raises(ConfigError, match="workflow: unknown workflow 'relax'; workflows: generation, molecules"):
        load_config(CONFIGS / "morered_qm9.yaml", ["workflow=relax"])


def test_a_workflow_registered_from_outside_the_package_runs_the_config_that_names_it():
    class Echo(workflows.Workflow):
        name = "echo_test"

        def check(self, cfg):
            return [] if cfg.objective.name == "dsm" else ["echo_test runs dsm only"]

    workflows.register(Echo())
    try:
        cfg = load_config(CONFIGS / "dsm_lj13.yaml", ["workflow=echo_test"])
        assert workflows.workflow_for(cfg).name == "echo_test"
        with pytest.raises(ConfigError, match="echo_test runs dsm only"):
            load_config(CONFIGS / "psm_lj13.yaml", ["workflow=echo_test"])
    finally:
        del workflows.WORKFLOWS["echo_test"]


def test_reporting_lives_in_the_package_and_nothing_edits_sys_path():
    root = Path(__file__).resolve().parents[1]
    scripts = sorted((root / "benchmarks").glob("*.py")) + sorted((root / "platform" / "moldiff").rglob("*.py"))
    assert scripts
    offenders = [str(p.relative_to(root)) for p in scripts if "sys.path.insert" in p.read_text()]
    assert not offenders, offenders
    # the publishers are thin command lines over moldiff.reporting
    for name in ("publish_results", "publish_study", "publish_sweep", "publish_morered"):
        assert "from moldiff.reporting." in (root / "benchmarks" / f"{name}.py").read_text(), name


def test_the_config_offers_exactly_the_registered_backbones():
    from typing import get_args

    from moldiff.config import ModelConfig
    from moldiff.models.registry import BACKBONES
    assert set(get_args(ModelConfig.model_fields["backbone"].annotation)) == set(BACKBONES)


def test_every_data_source_has_a_kind_and_a_preparation():
    from typing import get_args

    from moldiff.config import SOURCE_KINDS, DataConfig
    from moldiff.data.sources import PREPARE
    assert set(PREPARE) == set(SOURCE_KINDS) == set(get_args(DataConfig.model_fields["source"].annotation))
