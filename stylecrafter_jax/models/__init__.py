"""Pure flax.linen modules: no I/O, no global state."""
