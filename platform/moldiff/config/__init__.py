"""Typed experiment configuration. One YAML file per experiment (``experiments/configs/*.yaml``) is
validated against :class:`ExperimentConfig` before anything starts; unknown keys, wrong types,
out-of-range values and combinations no workflow can run raise :class:`ConfigError` naming the
file, the key path and what is allowed.

    schema    the sections (data, model, diffusion, objective, training, sampling, ...) and the root
    loading   YAML with ``extends``, dotted overrides, validation errors, absolute paths
"""
from .loading import (PATH_KEYS, absolute_paths, apply_overrides, deep_merge, dotted_changes, dump_config, flatten,
                      format_validation_error, is_uri, load_config, load_raw, validate_config)
from .schema import (SOURCE_KINDS, STAGES, AlanineSource, AseSource, ConfigError, DataConfig, DiffusionConfig,
                     EvaluationConfig, ExperimentConfig, ExpertsConfig, FokkerPlanckConfig, ForceFieldConfig,
                     GFN2LabelsConfig, LJSource, MCMCConfig, ModelConfig, MoreRedConfig, MullerBrownSource,
                     NpzSource, ObjectiveConfig, ParquetSource, PSMConfig, QM9Source, RayConfig, RelaxationConfig,
                     RelaxationInputsConfig, SamplingConfig, SimulationConfig, TrainingConfig, TrainSetConfig,
                     UniGEMConfig, WindowConfig, XtbMDSource, bf16_conflict)

__all__ = [
    "PATH_KEYS", "absolute_paths", "apply_overrides", "deep_merge", "dotted_changes", "dump_config", "flatten",
    "format_validation_error",
    "is_uri", "load_config", "load_raw", "validate_config",
    "SOURCE_KINDS", "STAGES", "AlanineSource", "AseSource", "ConfigError", "DataConfig", "DiffusionConfig", "EvaluationConfig",
    "ExperimentConfig", "ExpertsConfig", "FokkerPlanckConfig", "ForceFieldConfig", "GFN2LabelsConfig", "LJSource",
    "MCMCConfig", "ModelConfig", "MoreRedConfig", "MullerBrownSource", "NpzSource", "ObjectiveConfig",
    "ParquetSource", "PSMConfig", "QM9Source", "RayConfig", "RelaxationConfig", "RelaxationInputsConfig",
    "SamplingConfig", "SimulationConfig", "TrainingConfig", "TrainSetConfig", "UniGEMConfig", "WindowConfig",
    "XtbMDSource",
    "bf16_conflict",
]
