"""Style and content accuracy of the toy's trained model over guidance settings (the toy's proof of learning).

python -m benchmarks.toy_scores [--workdir runs/toy] [--settings 3:3:1:1,1:1:1:1,1:1:0:0]
Each setting is text_scale:style_scale:eta:clip_x0; needs a finished `python -m stylecrafter_jax.train
--config=configs/toy.py` run in --workdir.
"""

from __future__ import annotations

import argparse
import os
import time

from configs.toy import get_config
from stylecrafter_jax.sampling.weights import load_params
from stylecrafter_jax.toy.pipeline import evaluation_set, sample_images
from stylecrafter_jax.toy.scores import ToyScorer


def main() -> None:
    """Print one row per guidance setting."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="runs/toy")
    parser.add_argument("--settings", default="3:3:1:1,0:0:1:1,1:1:1:1,1:3:1:1,3:1:1:1,3:3:0:1,3:3:1:0")
    args = parser.parse_args()
    config = get_config()
    examples = evaluation_set(config)
    scorer = ToyScorer.fit(config.data.seed, config.data.toy.image_size, config.data.toy.num_styles)
    params = load_params(os.path.join(args.workdir, "export"), config.model)
    print(f"{'text':>6}{'style':>7}{'eta':>5}{'clip':>6}{'style acc':>11}{'content acc':>13}{'seconds':>9}")
    for setting in args.settings.split(","):
        text, style, eta, clip = (float(v) for v in setting.split(":"))
        config.sampling.update(text_scale=text, style_scale=style, eta=eta, clip_x0=clip)
        start = time.perf_counter()
        images = sample_images(config, params, examples)
        scores = scorer.score(list(images), [e.style_id for e in examples], [e.shape_id for e in examples])
        print(f"{text:>6.1f}{style:>7.1f}{eta:>5.1f}{clip:>6.1f}{scores['style_accuracy']:>11.3f}"
              f"{scores['content_accuracy']:>13.3f}{time.perf_counter() - start:>9.0f}")


if __name__ == "__main__":
    main()
