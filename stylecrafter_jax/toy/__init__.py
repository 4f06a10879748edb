"""The toy: a tiny StyleCrafter trained end to end on generated style images (its data stream, the two-phase
pipeline that `configs/toy.py` runs, and the classifiers that score its samples)."""
