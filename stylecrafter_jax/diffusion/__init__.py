"""Noise schedule, q_sample and DDIM sampling with multi-condition guidance."""
