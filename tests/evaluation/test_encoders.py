"""Metric encoders against transformers (CLIP image/text, DINO ViT) on tiny random weights, preprocessing included."""

import numpy as np
import pytest
import torch
from transformers import CLIPImageProcessor

from stylecrafter_jax.conditioning.preprocess import CLIP_MEAN, CLIP_STD
from stylecrafter_jax.errors import CheckpointMismatchError, ConfigError
from stylecrafter_jax.evaluation.encoders import build_metric_encoders, resolve_checkpoint
from stylecrafter_jax.evaluation.preprocess import IMAGENET_MEAN, IMAGENET_STD, center_crop
from tests.evaluation.tiny_eval import random_image, tiny_config, write_metric_weights
from tests.torch_references import numpy_state_dict, open_clip_layout


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return write_metric_weights(str(tmp_path_factory.mktemp("metric_weights")))


@pytest.fixture(scope="module")
def encoders(weights):
    return build_metric_encoders(tiny_config(weights))


def hf_pixels(image: np.ndarray, size: int, mean, std) -> torch.Tensor:
    """transformers' CLIPImageProcessor (shortest edge `size`, bicubic, centre crop, rescale, normalise)."""
    processor = CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size},
                                   resample=3, image_mean=list(mean), image_std=list(std))
    return processor(images=image, return_tensors="pt")["pixel_values"]


def test_center_crop_matches_transformers_clip_processor():
    image = random_image(0, 60, 94)  # the long side resizes to 43 at size 28: crop offset (43 - 28) / 2 = 7.5
    crop = center_crop(image, 28)
    assert crop.shape == (28, 28, 3) and crop.dtype == np.uint8
    even = random_image(1, 60, 90)  # long side 42: offset 7 in both conventions
    reference = hf_pixels(even, 28, CLIP_MEAN, CLIP_STD)[0].permute(1, 2, 0).numpy()
    ours = (center_crop(even, 28) / 255.0 - np.asarray(CLIP_MEAN)) / np.asarray(CLIP_STD)
    np.testing.assert_allclose(ours, reference, atol=1e-5)
    resized = np.asarray(__import__("PIL.Image").Image.fromarray(image).resize((43, 28), 3))
    np.testing.assert_array_equal(crop, resized[:, 8:36])  # torchvision's int(round(7.5)) = 8


def test_image_embeddings_match_transformers(weights, encoders):
    # 5 images (one padded chunk at batch size 4) whose crop offsets are whole numbers at 28 and 32 px, where
    # transformers' floor and torchvision's rounding agree; portrait, landscape, square, already at 32 px
    shapes = [(30, 45), (31, 74), (32, 64), (45, 30), (50, 50)]
    images = [random_image(i, h, w) for i, (h, w) in enumerate(shapes)]
    out = encoders.embed_images(images)
    assert out["clip"].shape == (5, 64) and out["dino"].shape == (5, 32)
    with torch.no_grad():
        for i, image in enumerate(images):
            clip = weights["vision_model"](hf_pixels(image, 28, CLIP_MEAN, CLIP_STD)).image_embeds[0].numpy()
            dino = weights["dino_model"](hf_pixels(image, 32, IMAGENET_MEAN, IMAGENET_STD)).last_hidden_state
            np.testing.assert_allclose(out["clip"][i], clip, atol=1e-4)
            np.testing.assert_allclose(out["dino"][i], dino[0, 0].numpy(), atol=1e-4)


def test_text_embeddings_match_transformers(weights, encoders):
    prompts = ["A man playing the guitar on a city street.", "A campfire surrounded by tents."]
    tokens = encoders.tokenizer(prompts)
    assert tokens[0, 0] == 49406 and 49407 in tokens[0]
    with torch.no_grad():
        expected = weights["text_model"](torch.from_numpy(tokens).long()).text_embeds.numpy()
    np.testing.assert_allclose(encoders.embed_texts(prompts), expected, atol=1e-4)


def test_open_clip_layout_gives_the_same_embeddings(weights, encoders, tmp_path):
    state = {**open_clip_layout(numpy_state_dict(weights["text_model"]), "text"),
             **{"visual." + k: v for k, v in open_clip_layout(numpy_state_dict(weights["vision_model"]),
                                                               "vision").items()}}
    torch.save({k: torch.from_numpy(v) for k, v in state.items()}, tmp_path / "open_clip_pytorch_model.bin")
    config = tiny_config(weights)
    config.clip.checkpoint, config.clip.format = str(tmp_path), "open_clip"  # a folder: the file is found in it
    other = build_metric_encoders(config)
    image = [random_image(9, 50, 50)]
    np.testing.assert_allclose(other.embed_images(image)["clip"], encoders.embed_images(image)["clip"], atol=1e-6)
    np.testing.assert_allclose(other.embed_texts(["a cat"]), encoders.embed_texts(["a cat"]), atol=1e-6)


def test_bad_checkpoints_are_named(weights, tmp_path):
    config = tiny_config(weights)
    config.dino.checkpoint = ""
    with pytest.raises(ConfigError, match="dino.checkpoint is empty"):
        build_metric_encoders(config)
    config = tiny_config(weights)
    config.dino.checkpoint = weights["clip"]  # wrong model
    with pytest.raises(CheckpointMismatchError, match="ViTModel"):
        build_metric_encoders(config)
    with pytest.raises(ConfigError, match="holds none of"):
        build_metric_encoders(tiny_config({**weights, "clip": str(tmp_path)}))
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_checkpoint(str(tmp_path / "absent.safetensors"), ["model.safetensors"])
