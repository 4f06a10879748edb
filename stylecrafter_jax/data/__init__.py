"""Input pipelines: tfds builders, augmentation, caption cleaning, mixing, host sharding."""
