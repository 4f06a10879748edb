"""Stylized video and image generation: inputs, the jitted sampling pipeline and the output files."""
