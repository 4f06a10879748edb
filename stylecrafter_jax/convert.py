"""Command line: import the official PyTorch checkpoints into a converted directory, export components back.

  python -m stylecrafter_jax.convert import --videocrafter model.ckpt [--adapter adapter_v1.pth]
      [--temporal temporal_v1_1.pth] [--open-clip open_clip_pytorch_model.bin] --out DIR
      [--config full|medium|tiny|CONFIG.py[:ARG]] [--only unet,adapter] [--ignore-key PREFIX ...]
      [--unsafe-pickle] [--overwrite] [--no-hash]
  python -m stylecrafter_jax.convert import --config=configs/dynamicrafter.py:512 --dynamicrafter model.ckpt
      --out DIR   (or --config=configs/videocrafter_i2v.py --videocrafter-i2v model.ckpt; same options)
  python -m stylecrafter_jax.convert export --checkpoint DIR --component adapter|temporal|unet|projector
      --out FILE.pth|FILE.safetensors [--dtype float32|float16|bfloat16]

`--config` is a model size of `stylecrafter_jax/models/sizes.py` or a config file whose `get_config(ARG)` returns a
config with a `model` section, or a model section itself. The encoders come from a top-level `encoders`
section (`vae`, `text_encoder`, `image_encoder`), else from the model section's own encoder sections,
else from the encoder size tables (`stylecrafter_jax/models/sizes.py`) at the model's size.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

import ml_collections

from stylecrafter_jax.checkpoints import conversion
from stylecrafter_jax.checkpoints.torch_files import EXPORT_DTYPES
from stylecrafter_jax.cli import load_config_file
from stylecrafter_jax.errors import ConfigError, StyleCrafterError
from stylecrafter_jax.models.sizes import SIZES, model_config
from stylecrafter_jax.paths import absolute


def load_configs(spec: str) -> tuple[ml_collections.ConfigDict, ml_collections.ConfigDict | None]:
    """(model section, encoder configs or None) of a size name or a `CONFIG.py[:ARG]` file."""
    if spec in SIZES:
        model = model_config(spec)
        encoders = None
    else:
        if not os.path.isfile(spec.partition(".py:")[0].removesuffix(".py") + ".py"):
            raise ConfigError(f"--config {spec!r}: neither a model size {SIZES} nor a config file")
        config = load_config_file(spec)
        model = config.model if "model" in config else config
        encoders = config.get("encoders")
    if encoders is None:
        encoders = conversion.model_encoder_configs(model)
    if encoders is None:
        try:
            encoders = conversion.encoder_configs(model.size)
        except ConfigError:
            encoders = None
    return model, encoders


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m stylecrafter_jax.convert", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    imp = commands.add_parser("import", help="official PyTorch files -> converted directory")
    imp.add_argument("--videocrafter", help="VideoCrafter model.ckpt (unet, vae, text_encoder)")
    imp.add_argument("--adapter", help="StyleCrafter adapter_v1.pth (adapter)")
    imp.add_argument("--temporal", help="StyleCrafter temporal_v1_1.pth (replaces the U-Net's temporal layers)")
    imp.add_argument("--open-clip", help="open_clip_pytorch_model.bin of ViT-H-14 (image_encoder)")
    imp.add_argument("--videocrafter-i2v", help="VideoCrafter1 I2V model.ckpt (every component of that model)")
    imp.add_argument("--dynamicrafter", help="DynamiCrafter model.ckpt of the config's variant (every component)")
    imp.add_argument("--out", required=True, help="directory to write")
    imp.add_argument("--config", default="full", help="model size or CONFIG.py[:ARG] (default: full)")
    imp.add_argument("--only", help=f"comma-separated subset of {','.join(conversion.COMPONENTS)}")
    imp.add_argument("--ignore-key", action="append", default=[], metavar="PREFIX",
                     help="also accept (and skip) model.ckpt keys starting with PREFIX")
    imp.add_argument("--unsafe-pickle", action="store_true",
                     help="load pickles with weights_only=False (trusted files only)")
    imp.add_argument("--overwrite", action="store_true", help="replace converted weights already in --out")
    imp.add_argument("--no-hash", action="store_true", help="record file sizes but skip the sha256")
    exp = commands.add_parser("export", help="component of a converted directory -> official layout")
    exp.add_argument("--checkpoint", required=True, help="converted (or trained) directory")
    exp.add_argument("--component", required=True, choices=conversion.EXPORTS)
    exp.add_argument("--out", required=True, help="FILE.pth (needs torch) or FILE.safetensors")
    exp.add_argument("--dtype", default="float32", choices=EXPORT_DTYPES)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; errors about the input are printed (no traceback) with exit status 1."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "import":
            model, encoders = load_configs(args.config)
            files = conversion.OfficialFiles(videocrafter=args.videocrafter, adapter=args.adapter,
                                             temporal=args.temporal, open_clip=args.open_clip,
                                             videocrafter_i2v=args.videocrafter_i2v, dynamicrafter=args.dynamicrafter)
            names = tuple(name.strip() for name in args.only.split(",") if name.strip()) if args.only else None
            manifest = conversion.convert_official(files, args.out, model, encoders, names, ignore=args.ignore_key,
                                                   unsafe_pickle=args.unsafe_pickle, overwrite=args.overwrite,
                                                   hash_files=not args.no_hash)
            for name, counts in manifest["components"].items():
                print(f"{name}: {counts['num_params']:,} parameters in {counts['num_leaves']} arrays")
            print(f"wrote {absolute(args.out)}")
        else:
            count = conversion.export_component(args.checkpoint, args.component, args.out, dtype=args.dtype)
            print(f"wrote {count} tensors of {args.component} to {absolute(args.out)}")
    except (StyleCrafterError, FileExistsError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
