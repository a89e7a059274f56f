"""Variance and baseline analysis (docs/variance.md).

    exact           exact E[g], Var[g] of the score-function estimator under a baseline, by enumeration
                    (and the same moments from sampled groups); the BASELINES registry
    enumerate       a toy policy + task as a finite problem: probabilities, rewards, exact scores
    two_state       the notes' two-state example: table, exact variances, training over many seeds
    task_variance   ``rlvr variance task``: gradient variance and bias of every delta mode on a task
    param_baseline  the notes' optimal per-parameter baseline as a training-time gradient correction
    diagnostics     live diagnostics: half-batch gradient agreement, noise scale, importance-ratio ESS
    figures         the PNGs
    tables          result rows as plain-text tables
(The ``rlvr variance`` command is ``rlvr/cli/variance.py``.)
"""
