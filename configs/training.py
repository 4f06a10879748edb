"""The `train` section: optimizer, schedule, loss, condition dropout, logging and checkpoint cadence."""

from __future__ import annotations

import ml_collections


def train_config(stage: str) -> ml_collections.ConfigDict:
    """Defaults per stage (see adapter-training-eval.md §6b-6d: AdamW β 0.9/0.999, eps 1e-8)."""
    return ml_collections.ConfigDict(dict(
        steps={"stage1": 40_000, "stage2": 20_000}.get(stage, 10_000),
        learning_rate={"stage1": 5e-5, "stage2": 1e-5}.get(stage, 1e-4),
        schedule="constant",  # constant | warmup | linear_decay
        warmup_steps=0,
        decay_steps=20_000,  # linear_decay: ticks from 1.0 to final_decay_ratio
        decay_every=1,  # optimizer steps per tick (the reference's Lightning frequency was 100)
        final_decay_ratio=0.01,
        weight_decay=0.0 if stage == "stage1" else 0.01,
        b1=0.9,
        b2=0.999,
        eps=1e-8,
        grad_clip=1.0,  # global-norm clipping; 0 = off
        ema_decay=0.0,  # 0 = no EMA
        # Loss: eps-prediction MSE; "v" weights by 1/ᾱ_t (the v-prediction loss), capped at
        # loss_weight_cap (0 = no cap); timesteps uniform, or biased toward high noise with density ∝ u^(1/power).
        loss_weighting="uniform",  # uniform | v
        loss_weight_cap=0.0,
        timestep_sampling="uniform",  # uniform | high_noise
        high_noise_power=2.0,
        # Condition dropout for guidance, per sample: text only, style only, both.
        drop_text=0.0,
        drop_style=0.0,
        drop_both=0.0,
        log_every=50,
        checkpoint_every=1000,
        keep_checkpoints=3,
        async_checkpoint=True,
        sample_every=0,  # 0 = no periodic samples (see the `periodic` section)
        eval_every=0,  # 0 = no periodic evaluation
        peak_flops_per_device=0.0,  # 0 = look up by device kind (no MFU when unknown)
    ))
