"""`maildrill capacity`: capacity curves found by an adaptive step search.

`stability` judges one step's figures, `search` is the pure state machine that picks the
next step's rate, `measure` turns one step's run directory into figures, `model` is
capacity.json, `driver` runs the steps through `maildrill run`'s own Drill, and `report`
writes capacity.md and the plot.
"""
