"""Train state, stage masks, loss, the jitted step and the loop."""
