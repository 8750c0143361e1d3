"""Command line of moldiff.reporting.sweep_page (the page itself is built there):

    python benchmarks/publish_sweep.py runs/unigem_qm9_tune [--name unigem_sweep]
"""
import sys

from moldiff.reporting.sweep_page import main

if __name__ == "__main__":
    sys.exit(main())
