"""Command line of moldiff.reporting.morered (the page itself is built there):

    python benchmarks/publish_morered.py runs/morered_qm9_noise runs/morered_qm9 runs/morered_qm9_ff runs/morered_qm9_generation --time runs/morered_qm9_time
"""
import sys

from moldiff.reporting.morered import main

if __name__ == "__main__":
    sys.exit(main())
