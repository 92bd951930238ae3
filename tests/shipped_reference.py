"""The shipped model's outputs on fixed inputs, kept as a golden file so a refactor can be shown not to
change them: `python -m tests.shipped_reference` rewrites `tests/data/shipped_reference.npz` (do that only
when the shipped model itself changes on purpose, and say so in the commit). One thread, fp32 and bf16,
so the figures do not depend on how many cores the machine has. They do depend on the CPU's instruction
set (AVX2 kernels round differently from AVX512 ones, bf16 is native only with AVX512-BF16, and oneDNN
takes other kernels on another vendor's CPU or with AMX), which the file records (`cpu_capability`,
`fast_bf16`, `cpu_vendor`, `amx`) for `compare`."""

from __future__ import annotations

import hashlib
from pathlib import Path

import gymnasium
import numpy as np
import torch

import genie_env
from genie_env._compat import fast_bf16

REFERENCE = Path(__file__).resolve().parent / "data" / "shipped_reference.npz"
STEPS = 6
ACTIONS = np.array([[7, 7, 8, 5, 4, 1], [1, 2, 7, 8, 8, 3], [4, 4, 4, 7, 7, 7]], np.int64)  # (3 envs, STEPS)


def shipped_digest() -> str:
    """sha256 over the shipped weights, the contexts and the agent: what the reference was made from."""
    root = Path(genie_env.__file__).resolve().parent / "assets" / "coinrun"
    h = hashlib.sha256()
    for part in ("tokenizer/model.safetensors", "dynamics/model.safetensors", "contexts.npz", "agent.zip"):
        h.update((root / part).read_bytes())
    return h.hexdigest()


def shipped_outputs() -> dict[str, np.ndarray]:
    """Tokens, frames, rewards, ends and probabilities of the shipped model through every public path:
    `WorldModel.encode/rollout/decode`, `GenieCoinRun-v0`, its `make_vec` form, and the shipped agent."""
    from stable_baselines3 import PPO

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out: dict[str, np.ndarray] = {}
        wm = genie_env.load_world_model(device="cpu", precision="fp32")
        with np.load(Path(genie_env.__file__).resolve().parent / "assets" / "coinrun" / "contexts.npz") as z:
            context = z["frames"][:3]  # (3, 1, 64, 64, 3)
        out["encode"] = wm.encode(context).numpy()
        greedy = wm.rollout(context, ACTIONS, seed=0)
        out["rollout_frames"], out["rollout_rewards"], out["rollout_terms"] = greedy
        sampled = wm.rollout(context, ACTIONS, steps=2, temperature=1.0, seed=3)
        out["sampled_frames"], out["sampled_rewards"], out["sampled_terms"] = sampled
        for precision in ("fp32", "bf16"):
            venv = gymnasium.make_vec("GenieCoinRun-v0", num_envs=3, precision=precision, max_episode_steps=4,
                                      events="expected", device="cpu")  # fmt: skip
            obs, _ = venv.reset(seed=5)
            frames, rewards, ends, probs = [obs], [], [], []
            for t in range(STEPS):
                obs, reward, terminated, truncated, info = venv.step(ACTIONS[:, t])
                frames.append(obs)
                rewards.append(reward)
                ends.append(np.stack([terminated, truncated], 1))
                probs.append(np.stack([info["reward_prob"], info["termination_prob"]], 1))
            venv.close()
            out[f"vec_{precision}_frames"] = np.stack(frames, 1)
            out[f"vec_{precision}_rewards"] = np.stack(rewards, 1)
            out[f"vec_{precision}_ends"] = np.stack(ends, 1)
            out[f"vec_{precision}_probs"] = np.stack(probs, 1)
        env = gymnasium.make("GenieCoinRun-v0", sampling={"steps": 2, "temperature": 0.5}, events="sample",
                             device="cpu", precision="fp32")  # fmt: skip
        obs, _ = env.reset(seed=11)
        single = [obs]
        for a in ACTIONS[0]:
            obs, *_ = env.step(int(a))
            single.append(obs)
        env.close()
        out["single_frames"] = np.stack(single)
        agent = PPO.load(Path(genie_env.__file__).resolve().parent / "assets" / "coinrun" / "agent.zip", device="cpu")
        obs_tensor = agent.policy.obs_to_tensor(out["vec_fp32_frames"].reshape(-1, 64, 64, 3))[0]
        with torch.no_grad():
            out["agent_probs"] = agent.policy.get_distribution(obs_tensor).distribution.probs.numpy()
        return out
    finally:
        torch.set_num_threads(threads)


# what a reference made before a key was recorded was made on: every one of them on AMD Zen 5 (no AMX)
MADE_BEFORE_RECORDED = {"cpu_vendor": "AuthenticAMD", "amx": "False"}


def machine() -> dict[str, str]:
    """What the outputs' rounding depends on: PyTorch's CPU kernel level, whether bf16 is native, the CPU's
    vendor and whether it has AMX tiles."""
    return {"cpu_capability": torch.backends.cpu.get_cpu_capability(), "fast_bf16": str(fast_bf16("cpu")),
            "cpu_vendor": cpu_vendor(), "amx": str(torch.cpu._is_amx_tile_supported())}  # fmt: skip


def cpu_vendor() -> str:
    """The CPU's vendor id (e.g. GenuineIntel, AuthenticAMD) from /proc/cpuinfo, or the platform's processor."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("vendor_id"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def compare(outputs: dict[str, np.ndarray], reference: dict[str, np.ndarray], same_machine: bool) -> list[str]:
    """The keys whose outputs differ from the reference's: bit for bit on a machine of the reference's kind;
    elsewhere the fp32 paths' tokens bit for bit, their frames within one grey level of a few pixels (the
    decoder's last rounding: 4 pixels in a million differ between AMD Zen 5 and an AMX Xeon), fp32 floats
    to 1e-4 relative, and the bf16 paths (whose rounding changes most between CPUs) frames at 30 dB PSNR
    or better and events within 0.01."""
    differing = []
    for key, want in reference.items():
        got = outputs[key]
        if same_machine or (not key.startswith("vec_bf16") and not np.issubdtype(want.dtype, np.floating)
                            and not key.endswith("frames")):  # fmt: skip
            same = np.array_equal(got, want)
        elif key.endswith("frames") and not key.startswith("vec_bf16"):
            off = np.abs(got.astype(np.int64) - want.astype(np.int64)) if got.shape == want.shape else None
            same = off is not None and off.max() <= 1 and (off > 0).mean() <= 1e-4
        elif key == "vec_bf16_frames":
            mse = np.mean((got.astype(np.float64) - want.astype(np.float64)) ** 2)
            same = got.shape == want.shape and (mse == 0 or 10 * np.log10(255**2 / mse) >= 30)
        elif key.startswith("vec_bf16"):
            same = got.shape == want.shape and np.allclose(got, want, rtol=0, atol=0.01)
        else:
            same = got.shape == want.shape and np.allclose(got, want, rtol=1e-4, atol=1e-7)
        if not same:
            differing.append(key)
    return differing


if __name__ == "__main__":
    REFERENCE.parent.mkdir(parents=True, exist_ok=True)
    made_on = {k: np.array(v) for k, v in machine().items()}
    np.savez_compressed(REFERENCE, digest=np.array(shipped_digest()), **made_on, **shipped_outputs())
    print(f"wrote {REFERENCE} ({REFERENCE.stat().st_size / 1024:.0f} KiB)")
