"""moldiff models in the field's tools (ASE calculators, ...)."""
