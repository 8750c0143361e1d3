"""Progress of driver-side stages: log lines where there is no terminal, one bar where there is."""
import io

import numpy as np

from moldiff.parallel.simulation import frames_written
from moldiff.progress import Progress


def test_without_a_terminal_each_update_is_a_log_line():
    lines = []
    p = Progress("[sample] seed 0: molecules", 300, lines.append, bar=False)
    for done in (100, 100, 250, 300):          # a repeated count is not news
        p.update(done)
    p.close()
    assert [line.split(" (")[0] for line in lines] == [f"[sample] seed 0: molecules: {n}/300" for n in (100, 250, 300)]


def test_on_a_terminal_one_bar_and_one_closing_line():
    lines, stream = [], io.StringIO()
    p = Progress("[simulate] seed 1: frames", 40, lines.append, bar=True, stream=stream)
    p.update(10)
    p.update(40)
    p.close()
    shown = stream.getvalue()
    assert "[simulate] seed 1: frames" in shown and "40/40" in shown and "\r" in shown    # one line redrawn
    assert len(lines) == 1 and lines[0].startswith("[simulate] seed 1: frames: 40/40")


def test_simulation_progress_counts_the_frames_written_so_far(tmp_path):
    (tmp_path / "actor_0").mkdir()
    (tmp_path / "actor_1").mkdir()
    np.save(tmp_path / "actor_0" / "block_00000000.npy", np.zeros((5, 3, 2)))     # 5 frames x 3 chains
    np.save(tmp_path / "actor_1" / "block_00000000.npy", np.zeros((5, 2, 2)))
    np.save(tmp_path / "actor_1" / "block_00000005.npy", np.zeros((2, 2, 2)))
    (tmp_path / "actor_1" / ".block_00000007.npy.tmp-1234").write_bytes(b"half")  # being written: not counted
    assert frames_written(tmp_path) == 15 + 10 + 4
