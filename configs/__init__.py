"""ml_collections configs: `get_config(arg)` files (stage1, stage2, toy) and their shared parts."""
