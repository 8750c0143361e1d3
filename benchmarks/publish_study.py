"""Command line of moldiff.reporting.study (the page itself is built there):

    python benchmarks/publish_study.py runs/psm_lj13_study --name psm --group training_set
"""
import sys

from moldiff.reporting.study import main

if __name__ == "__main__":
    sys.exit(main())
