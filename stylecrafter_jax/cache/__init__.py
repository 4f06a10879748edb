"""The encoder cache: a training config's frozen encoders run once over its data (`python -m
stylecrafter_jax.cache`), their outputs written as a dataset (`write`) and read back as the step's inputs (`read`)."""
