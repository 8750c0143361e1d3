"""Results pages from runs, studies and sweeps: docs/results/<name>.md for people and .json for
programs, each with the command that made it, seeds, sample sizes, noise floors, the paper's numbers
side by side and the expected effects judged by rule.

    run_page     one run directory               (benchmarks/publish_results.py)
    study        a study or several, merged      (benchmarks/publish_study.py)
    sweep_page   a Tune sweep                    (benchmarks/publish_sweep.py)
    morered      the MoreRed relaxation runs     (benchmarks/publish_morered.py)
    files        writing a page and its records; the command a run recorded
    expectations the issues' expected effects    (benchmarks/expected_effects.yaml)

Pages read runs through their reports (``moldiff.metrics.report.load_report``). The paper's numbers
(``benchmarks/paper_numbers.yaml``), expected effects and hand-written notes (``benchmarks/notes/``)
live in the checkout beside the benchmarks that measure; ``CHECKOUT`` is where they are looked up.
"""
