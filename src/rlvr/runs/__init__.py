"""Run directories: config, metrics, samples, plots, summary -- written so nothing already written is lost."""

from rlvr.runs.rundir import RunDir, atomic_write_text

__all__ = ["RunDir", "atomic_write_text"]
