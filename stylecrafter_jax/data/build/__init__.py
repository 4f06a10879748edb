"""Dataset building: source folders (`sources`, `caption_files`) decoded (`media`, `video_decode`) into tfds
ArrayRecord datasets (`builder_base`, `style_images`, `videos`) under `options`, counted in a `report`;
`dataset.build_dataset` runs one build and `python -m stylecrafter_jax.data.build` is its command."""
