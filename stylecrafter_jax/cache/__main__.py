"""Run a training config's frozen encoders once over its data and store the outputs as a cached dataset.

python -m stylecrafter_jax.cache --config=configs/stage1.py --kind images --out CACHE_DIR [--epochs 2]
Then train on it: --config.data.kind=cached --config.data.cached.data_dir=CACHE_DIR. Each epoch stores
another random style crop of every record; the VAE posterior is stored as its mean and log-variance,
so every training step still draws its own latent sample.
"""

from __future__ import annotations

import sys
from typing import Sequence

import jax
import ml_collections
from absl import flags
from ml_collections import config_flags

from stylecrafter_jax.cache.write import build_cached_dataset, cache_encoders
from stylecrafter_jax.cli import flag_main
from stylecrafter_jax.conditioning.frozen import build_encoders
from stylecrafter_jax.conditioning.tokenizer import load_tokenizer
from stylecrafter_jax.errors import ConfigError
from stylecrafter_jax.parallel.mesh import create_mesh
from stylecrafter_jax.train.base_weights import load_encoder_params


def define_flags(flag_values: flags.FlagValues, argv: Sequence[str]) -> None:
    """Register the command's flags on `flag_values` (config overrides are read from `argv`)."""
    config_flags.DEFINE_config_file("config", None, "Training config, e.g. configs/stage1.py",
                                    flag_values=flag_values, sys_argv=list(argv))
    fv = dict(flag_values=flag_values)
    flags.DEFINE_enum("kind", None, ["images", "videos"], "Which source of the config's data to encode "
                      "(default: the config's data.kind when that is images or videos).", **fv)
    flags.DEFINE_string("out", None, "tfds data_dir to write cached_examples/<version>/ into.", **fv)
    flags.DEFINE_integer("epochs", 1, "Differently augmented copies of every record.", **fv)
    flags.DEFINE_integer("batch-size", 0, "Records per encoder call (default: the source's batch size).", **fv)
    flags.DEFINE_bool("overwrite", False, "Replace a cache already in --out.", **fv)


def build_cache(config: ml_collections.ConfigDict, kind: str, out: str, *, epochs: int = 1, batch_size: int = 0,
                overwrite: bool = False) -> int:
    """Encode `epochs` epochs of the config's `kind` source into `out`; returns the number of records."""
    if kind not in ("images", "videos"):
        raise ConfigError(f"kind {kind!r} (--kind, or the config's data.kind): expected 'images' or 'videos'")
    mesh = create_mesh(config.mesh)
    encoders = build_encoders(config.model)
    params = load_encoder_params(config, mesh)
    tokenizer = load_tokenizer(context_length=config.model.text_encoder.context_length)
    functions = cache_encoders(config, encoders, params, tokenizer)
    return build_cached_dataset(config.data, kind, functions, out, batch_size=batch_size or config.data[kind].batch_size,
                                num_epochs=epochs, overwrite=overwrite)


def run(fv: flags.FlagValues) -> int:
    """Build the cache the parsed flags describe."""
    config = fv["config"].value
    kind = fv["kind"].value or config.data.kind
    if not fv["out"].value:
        raise ConfigError("--out: expected the folder to write the cached dataset into")
    written = build_cache(config, kind, fv["out"].value, epochs=fv["epochs"].value,
                          batch_size=fv["batch-size"].value, overwrite=fv["overwrite"].value)
    print(f"cached {written} {kind} records on {jax.device_count()} devices into {fv['out'].value}; train with "
          f"--config.data.kind=cached --config.data.cached.data_dir={fv['out'].value}")
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """The command line entry point."""
    return flag_main(argv, __doc__, define_flags, run)


if __name__ == "__main__":
    sys.exit(main())
