"""Noise schedules (scaled-linear, zero terminal SNR), eps/v conversions, DDIM and DPM-Solver++(2M) with guidance."""
