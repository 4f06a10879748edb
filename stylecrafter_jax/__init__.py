"""stylecrafter-jax: a JAX/Flax trainer and sampler for StyleCrafter stylized video diffusion."""

__version__ = "0.1.0"
