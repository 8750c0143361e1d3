"""Relaxation of unstable molecules: the methods (``methods``, one registry), the convergence
threshold of the adaptive ones (``threshold``) and the Ray Data pipeline that runs them (``pipeline``)."""
