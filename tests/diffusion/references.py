"""NumPy float64 re-evaluations of the reference samplers' formulas, step by step, for the diffusion tests."""

import jax.numpy as jnp
import numpy as np

from stylecrafter_jax.diffusion.ddim import ddim_timesteps, step_noise


def reference_ddim_loop(process, spacing, steps, x, keys, model, eta=1.0):
    """NumPy float64 DDIM with the reference's v/eps handling, dynamic rescale or use_scale, step by step."""
    schedule = process.schedule
    ac = schedule.alphas_cumprod.astype(np.float64)
    ts = ddim_timesteps(steps, 1000, spacing)
    scale_arr = process.scale_arr.astype(np.float64)
    x = np.asarray(x, np.float64)
    for k, index in enumerate(range(len(ts) - 1, -1, -1)):
        t = ts[index]
        a, a_prev = ac[t], ac[ts[index - 1]] if index > 0 else ac[0]
        sigma = eta * np.sqrt((1 - a_prev) / (1 - a) * (1 - a / a_prev))
        out = np.asarray(model(jnp.asarray(x, jnp.float32), jnp.full((x.shape[0],), t, jnp.int32)), np.float64)
        if process.prediction == "v":
            sa, s1a = float(schedule.sqrt_alphas_cumprod[t]), float(schedule.sqrt_one_minus_alphas_cumprod[t])
            eps, x0 = sa * out + s1a * x, sa * x - s1a * out
        else:
            eps, x0 = out, (x - np.sqrt(1 - a) * out) / np.sqrt(a)
        scale = scale_arr[t]
        if index > 0:
            scale_prev = scale_arr[ts[index - 1]]
        else:
            scale_prev = scale_arr[0] if process.rescale == "use_scale" else scale
        x0 = x0 * scale_prev / scale
        direction = np.sqrt(max(1 - a_prev - sigma ** 2, 0.0))
        noise = np.asarray(step_noise(keys, k, x.shape[1:]), np.float64)
        x = np.sqrt(a_prev) * x0 + direction * eps + sigma * noise
    return x
