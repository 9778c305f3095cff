"""Planning-budget sweep (Fac-TDMPC Fig. 7): the grid of MPPI budgets, the 95% rule, the
resumable results file, the sweep itself and its plots."""
