"""Reading a Stable-Baselines3 agent file (.zip) without running any code from it.

SB3 keeps an agent's weights as `.pth` files, which it loads with `torch.load(weights_only=True)`, and
its settings in a `data` JSON, where every value JSON cannot hold (the policy class, its kwargs, the
spaces, the schedules, buffers) is a cloudpickle blob: unpickling one can run any code. Each blob comes
with a readable description beside it (its class, its attributes' reprs), and every value an agent of
ours holds can be rebuilt from that description and from classes we know. `safe_objects` does so and
hands the result to SB3 as `custom_objects`, which SB3 then uses instead of unpickling; a file with a
blob that cannot be rebuilt that way is refused, naming it, and nothing in it is unpickled.

The features extractor is found by class name, so agent files saved before a module moved (the shipped
`agent.zip` names `genie_env.agent.ImpalaCNN`) still load.
"""

from __future__ import annotations

import ast
import collections
import json
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from genie_env._compat import import_gym_quietly
from genie_env._io import GenieError
from genie_env.agents.networks import ImpalaCNN

import_gym_quietly()
from gymnasium import spaces  # noqa: E402
from stable_baselines3.common import buffers  # noqa: E402
from stable_baselines3.common.torch_layers import NatureCNN  # noqa: E402
from stable_baselines3.common.utils import ConstantSchedule, FloatSchedule, LinearSchedule  # noqa: E402

SERIALIZED = ":serialized:"
FEATURES_EXTRACTORS = {cls.__name__: cls for cls in (ImpalaCNN, NatureCNN)}
BUFFERS = {cls.__name__: cls for cls in (buffers.RolloutBuffer, buffers.DictRolloutBuffer, buffers.ReplayBuffer,
                                         buffers.DictReplayBuffer)}  # fmt: skip
SCHEDULES = {"ConstantSchedule": ConstantSchedule, "LinearSchedule": LinearSchedule}
# state of an interrupted rollout: not needed to act, and rebuilt by SB3 when training continues
DROPPED = ("_last_obs", "_last_episode_starts", "_last_original_obs")


class UnsafeAgentFile(GenieError, ValueError):
    """An agent file holds serialized objects that cannot be rebuilt without unpickling them."""


def _class_name(described: dict[str, Any]) -> str | None:
    """The name of a pickled class from its readable description (the repr of its `__init__`)."""
    match = re.match(r"<function (\w+)\.__init__", str(described.get("__init__", "")))
    return match.group(1) if match else None


def _schedule(described: dict[str, Any]) -> FloatSchedule:
    """A schedule from its description, e.g. value_schedule 'ConstantSchedule(val=0.2)'."""
    match = re.fullmatch(r"(\w+)\((.*)\)", str(described.get("value_schedule", "")))
    if not match or match.group(1) not in SCHEDULES:
        raise KeyError(described.get("value_schedule"))
    kwargs = {k.strip(): float(v) for k, v in (part.split("=") for part in match.group(2).split(","))}
    return FloatSchedule(SCHEDULES[match.group(1)](**kwargs))


def _space(described: dict[str, Any]) -> spaces.Space:
    """An image Box (uint8, 0..255) or a Discrete space from its description."""
    kind = described[":type:"]
    if kind.endswith("Discrete'>"):
        return spaces.Discrete(int(described["n"]), start=int(described.get("start", 0)))
    if kind.endswith("Box'>") and described.get("dtype") == "uint8":
        return spaces.Box(0, 255, tuple(described["_shape"]), "uint8")
    raise KeyError(kind)


def _known_class(key: str, described: str) -> type:
    """A class the policy kwargs name, from its repr ("<class 'torch.optim.rmsprop.RMSprop'>"): a features
    extractor of ours or SB3's, a torch optimizer, or a torch activation."""
    name = re.search(r"\.(\w+)'>$", described).group(1)
    if key == "features_extractor_class":
        return FEATURES_EXTRACTORS[name]
    module = torch.optim if key == "optimizer_class" else torch.nn if key == "activation_fn" else None
    cls = getattr(module, name)
    if not isinstance(cls, type) or not issubclass(cls, (torch.optim.Optimizer, torch.nn.Module)):
        raise KeyError(name)
    return cls


def _policy_kwargs(described: dict[str, Any]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    for key, value in described.items():
        if key in (":type:", SERIALIZED):
            continue
        if not isinstance(value, str):  # plain JSON (e.g. optimizer_kwargs)
            kwargs[key] = value
        elif value.startswith("<class "):
            kwargs[key] = _known_class(key, value)
        else:
            kwargs[key] = ast.literal_eval(value)
    return kwargs


def safe_objects(path: str | Path, algo_class: type) -> dict[str, Any]:
    """SB3 `custom_objects` for every serialized value of the agent file `path`, rebuilt from its readable
    description, so that `algo_class.load(path, custom_objects=...)` unpickles nothing. Raises
    UnsafeAgentFile naming the values it cannot rebuild, ValueError for a file that is not an SB3 zip."""
    try:
        with zipfile.ZipFile(path) as z:
            data = json.loads(z.read("data"))
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"could not load {path}: not an SB3 agent file (a zip with a 'data' JSON): {e}") from e
    policies = {cls.__name__: cls for cls in algo_class.policy_aliases.values()}
    builders = {
        "policy_class": lambda d: policies[_class_name(d)],
        "rollout_buffer_class": lambda d: BUFFERS[_class_name(d)],
        "replay_buffer_class": lambda d: BUFFERS[_class_name(d)],
        "policy_kwargs": _policy_kwargs,
        "observation_space": _space,
        "action_space": _space,
        "ep_info_buffer": lambda d: collections.deque(maxlen=int(data.get("_stats_window_size", 100))),
        "ep_success_buffer": lambda d: collections.deque(maxlen=int(data.get("_stats_window_size", 100))),
        **{key: lambda d: None for key in DROPPED},
    }
    objects, refused = {}, []
    for key, value in data.items():
        if not (isinstance(value, dict) and SERIALIZED in value):
            continue
        build = builders.get(key, _schedule if "schedule" in key or key.startswith("clip_range") else None)
        try:
            objects[key] = build(value)
        except (TypeError, KeyError, ValueError, AttributeError, SyntaxError):
            refused.append(key)
    if refused:
        raise UnsafeAgentFile(
            f"{path} holds serialized objects genie-env cannot rebuild without unpickling them ({', '.join(refused)}); "
            "loading it could run code from the file, so it is refused"
        )
    return objects
