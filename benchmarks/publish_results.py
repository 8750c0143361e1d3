"""Command line of moldiff.reporting.run_page (the page itself is built there):

    python benchmarks/publish_results.py runs/dsm_lj13 --name dsm_lj13 [--variant dsm]
"""
import sys

from moldiff.reporting.run_page import main

if __name__ == "__main__":
    sys.exit(main())
