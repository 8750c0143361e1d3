"""moldiff: a Ray-distributed platform for diffusion models of molecules."""

__version__ = "0.1.0"
