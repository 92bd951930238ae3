"""Genie's CoinRun experiment: learn to act from action-free expert videos (`genie bc-study --out runs/bc_study`).

    the expert (--expert AGENT, or PPO trained on the real game for --expert-steps) -> --videos frames of
    expert video, collected on training levels -> a LAM trained on their frames alone -> the LAM on the
    videos' validation levels, beside a randomly initialised LAM of the same shape (`genie eval-lam`) ->
    behaviour cloning of the LAM's latent actions grounded by --labelled transitions with their real action
    (LAM BC, for each count), and of every real action (oracle BC), --seeds each -> every policy, the expert
    and the random policy on validation levels (which pick the seed that ships) and on test levels (which
    the table reports) -> OUT/bc_study.{md,json,png} -> OUT/ship/ (and --ship-to, e.g.
    genie_env/assets/coinrun/lam): lam_bc.zip (--ship-labels labels) and oracle_bc.zip with their .json
    records, the LAM (fp16), the table, the plot and a model card.

The videos' actions are read only by oracle BC, by the grounding labels LAM BC is allowed, and by the
evaluations of the LAM. Every stage is recorded in OUT/stages.json and skipped when the command runs again;
the expert, the collection and the LAM resume from their checkpoints. Both level ranges are checked
disjoint from the levels behind the expert and the videos.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tyro

from genie_env.agents.networks import Features
from genie_env.games import DistributionMode
from genie_env.presets import LAMPresetName

from .common import StageRecord, cli_errors, setup_logging
from .evaluate import HeldOutSplits

logger = logging.getLogger(__name__)

SPLITS = ("val", "test")
SHIP_RECORD = "bc_study.json"  # marks a directory this command shipped, and so may replace
SCRIPTED = ("sticky", "random")  # experts that are not SB3 files


@dataclass(frozen=True)
class BCStudyArgs(HeldOutSplits):
    """Arguments of `genie bc-study` (and the validation and test levels every policy is played on)."""

    out: str = "runs/bc_study"
    """directory of the experiment: OUT/expert, videos, lam, lam_eval, bc/, eval/, stages.json, bc_study.*"""
    expert: str | None = None
    """the expert whose videos are cloned: an SB3 agent file (e.g. genie_env/assets/coinrun/agent.zip, the
    shipped dream agent: free, but weaker than a long real PPO), or sticky or random (a floor, and the tests');
    default: PPO on the real game for --expert-steps"""
    expert_steps: int = 3_000_000
    """without --expert: real frames of the expert's PPO (the sample-efficiency study's 2.8M-frame reference)"""
    expert_features: Features = "impala"
    """without --expert: the expert's CNN"""
    videos: int = 100_000
    """frames of expert video to collect (their actions hidden from all but the oracle and the grounding labels)"""
    video_envs: int = 64
    """levels the expert plays at once while its videos are collected"""
    val_fraction: float = 0.05
    """share of the videos' levels held out as their validation split (the LAM's evaluation, BC's accuracy)"""
    lam_preset: LAMPresetName = "cpu"
    """the latent action model's preset"""
    lam_steps: int = 0
    """optimisation steps of the LAM (0 = its preset's)"""
    labelled: tuple[int, ...] = (50, 200, 1000)
    """LAM BC: numbers of transitions whose real action grounds the latent actions, one LAM BC side each"""
    ship_labels: int = 200
    """the LAM BC side that ships as lam_bc.zip (one of --labelled)"""
    seeds: int = 2
    """BC policies per side: seeds 0..N-1 (the seed of the labelled draw, the batches and the network)"""
    bc_steps: int = 3000
    """optimisation steps of each BC policy"""
    bc_features: Features = "impala"
    """the BC policies' CNN"""
    seed: int = 0
    """seed of the expert's training, the video collection and the random LAM"""
    distribution_mode: DistributionMode = "easy"
    """CoinRun difficulty: easy or hard"""
    ship_to: str | None = None
    """also copy OUT/ship/ here, e.g. genie_env/assets/coinrun/lam (a directory it did not write is refused)"""

    def __post_init__(self) -> None:
        if not self.labelled or min(self.labelled) < 1 or self.seeds < 1 or self.videos < 2:
            raise ValueError("--labelled needs counts >= 1, --seeds >= 1 and --videos >= 2")
        if self.ship_labels not in self.labelled:
            raise ValueError(f"--ship-labels {self.ship_labels} must be one of --labelled {list(self.labelled)}")
        if self.expert is None and self.expert_steps < 1:
            raise ValueError("--expert-steps must be >= 1 (or give --expert)")

    def header(self) -> dict[str, Any]:
        """What one OUT holds one of: the expert, the videos and the LAM every side shares."""
        shared = ("videos", "video_envs", "val_fraction", "lam_preset", "lam_steps", "seed", "distribution_mode")
        expert = self.expert or f"ppo:{self.expert_steps}:{self.expert_features}"
        return {"expert": expert, **{k: getattr(self, k) for k in shared}}


def side_name(labels: int | None) -> str:
    """oracle, or lam_N for LAM BC grounded by N labels."""
    return "oracle" if labels is None else f"lam_{labels}"


class BCStudy:
    """Runs the experiment's stages in order (see the module docstring)."""

    def __init__(self, args: BCStudyArgs) -> None:
        self.args, self.out = args, Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.stages = StageRecord(self.out / "stages.json", args.header())

    def run(self) -> dict[str, Any]:
        from genie_env._io import DirLock

        with DirLock(self.out):
            return self._run()

    def _run(self) -> dict[str, Any]:
        from genie_env.agents.bc_study import bc_rows, write_bc_study
        from genie_env.agents.study import summarise_side

        a, st = self.args, self.stages
        expert = st.stage("expert", self.expert)
        videos = st.stage("videos", lambda: self.videos(expert))
        lam = st.stage("lam", lambda: self.lam(videos))
        lam_eval = {
            "trained": st.stage("eval_lam", lambda: self.eval_lam(lam, videos, trained=True)),
            "random_init": st.stage("eval_lam_random", lambda: self.eval_lam(lam, videos, trained=False)),
        }
        exclude = (videos, *self.expert_levels(expert))

        def evaluated(agent: str, name: str) -> dict[str, dict[str, Any]]:  # both splits, each a stage
            return {split: st.stage(f"eval/{name}_{split}", lambda s=split: self.evaluate(agent, s, exclude,
                                                                                          f"{name}_{s}"),
                                    current=lambda result, s=split: a.asked(result, s))
                    for split in SPLITS}  # fmt: skip

        random, expert_eval = evaluated("random", "random"), evaluated(expert, "expert")
        sides: dict[str, Any] = {}
        for labels in (None, *sorted(a.labelled)):
            name = side_name(labels)
            results = {split: {} for split in SPLITS}
            for seed in range(a.seeds):
                run = st.stage(f"bc/{name}_seed{seed}", lambda n=labels, s=seed: self.bc(videos, lam, n, s))
                for split, result in evaluated(run, f"{name}_seed{seed}").items():
                    results[split][seed] = result
            spent = json.loads((Path(run).parent / "config.json").read_text())["real_action_labels"]
            sides[name] = (spent, summarise_side(results["val"], results["test"]))
        rows = bc_rows(sides)
        shipped = side_name(a.ship_labels)
        paths = write_bc_study(rows, expert_eval["test"], random["test"], self.out, shipped, lam_eval)
        ship = self.ship(rows, shipped, lam, paths)
        return {"rows": rows, "paths": {k: str(v) for k, v in paths.items()}, "ship": str(ship)}

    # ------------------------------------------------------------------------ stages
    def expert(self) -> str:
        """The expert's agent file: --expert, or PPO trained on the real game here (OUT/expert, resumable)."""
        from genie_env.agents.train import AgentConfig, train_or_resume

        a = self.args
        if a.expert in SCRIPTED:
            return a.expert
        if a.expert is not None:
            if not Path(a.expert).is_file():
                raise FileNotFoundError(f"--expert {a.expert} does not exist (expected an SB3 agent .zip)")
            return a.expert
        cfg = AgentConfig(
            env="real",
            steps=a.expert_steps,
            features=a.expert_features,
            seed=a.seed,
            distribution_mode=a.distribution_mode,
            checkpoint_every=max(a.expert_steps // 20, 8192),
        )
        return str(train_or_resume(cfg, self.out / "expert"))  # fmt: skip

    def expert_levels(self, expert: str) -> tuple[str, ...]:
        """What records the levels behind the expert: its run directory or the levels.json beside it."""
        if expert in SCRIPTED:
            return ()
        where = Path(expert).parent
        if (where / "levels.json").exists() or (where / "manifest.json").exists():
            return (str(where),)
        logger.warning("the levels the expert %s trained on are unknown (no levels.json beside it): they are not "
                       "checked disjoint from the evaluation levels", expert)  # fmt: skip
        return ()

    def videos(self, expert: str) -> str:
        """OUT/videos: --videos frames of the expert playing training levels (sampling its policy)."""
        from genie_env.agents.policies import collection_policy
        from genie_env.data.collect import CollectConfig, collect

        a, out = self.args, self.out / "videos"
        cfg = CollectConfig(out=str(out), frames=a.videos, num_envs=a.video_envs, val_fraction=a.val_fraction,
                            policy=expert if expert in SCRIPTED else f"sb3:{expert}", seed=a.seed,
                            distribution_mode=a.distribution_mode,
                            resume=(out / "manifest.json").exists())  # fmt: skip
        collect(cfg, collection_policy(cfg))
        return str(out)

    def lam(self, videos: str) -> str:
        """OUT/lam: the latent action model trained on the videos' frames alone (resumable)."""
        from .train_lam import default_args, run

        a, out = self.args, self.out / "lam"
        args = default_args(a.lam_preset)
        train = dataclasses.replace(args.train, steps=a.lam_steps or args.train.steps, max_minutes=0.0)
        run(dataclasses.replace(args, data=videos, out=str(out), train=train, resume=(out / "latest.json").exists()))
        return str(out)

    def eval_lam(self, lam: str, videos: str, trained: bool) -> dict[str, Any]:
        """The LAM (or a randomly initialised one of its shape) on the videos' validation levels: the
        contingency tables with their NMI, each latent action's scene shift, the next-frame PSNR."""
        import torch

        from genie_env._io import atomic_write_json
        from genie_env.evaluate.lam import evaluate_lam
        from genie_env.models import load_lam
        from genie_env.models.lam import LatentActionModel

        out = self.out / "lam_eval"
        model = load_lam(lam)
        if not trained:
            torch.manual_seed(self.args.seed)
            model = LatentActionModel(model.cfg).eval()
        grid = out / ("latent_actions.png" if trained else "latent_actions_random_init.png")
        result = evaluate_lam(model, videos, "val", grid_path=grid)
        atomic_write_json(out / ("eval_lam.json" if trained else "eval_lam_random_init.json"), result)
        return {k: v for k, v in result.items() if not k.startswith("contingency_")}

    def bc(self, videos: str, lam: str, labels: int | None, seed: int) -> str:
        """One BC policy: oracle (labels None) or LAM BC grounded by `labels` transitions; its agent.zip."""
        from genie_env.agents.bc import BCConfig, train_bc

        a = self.args
        kind = {"labels": "real"} if labels is None else {"labels": "latent", "lam": lam, "labelled": labels}
        cfg = BCConfig(data=(videos,), features=a.bc_features, steps=a.bc_steps, seed=seed, **kind)
        return str(train_bc(cfg, self.out / "bc" / f"{side_name(labels)}_seed{seed}"))  # about an hour: a bar

    def evaluate(self, agent: str, split: str, exclude: tuple[str, ...], name: str) -> dict[str, Any]:
        """`agent` on one split; the full result kept as OUT/eval/NAME.json."""
        out = self.out / "eval" / f"{name}.json"
        return self.args.evaluate(agent, split, exclude, out, self.args.distribution_mode, self.args.seed)

    # ------------------------------------------------------------------------ shipping
    def ship(self, rows: list[dict[str, Any]], shipped: str, lam: str, paths: dict[str, Path]) -> Path:
        """OUT/ship/ (and --ship-to): the picked oracle and LAM BC policies as oracle_bc.zip and lam_bc.zip,
        each with its training record and pick (NAME.json, which `genie evaluate` reads), the LAM in fp16,
        the table, the plot and a model card. Written by a directory swap; a target this command did not
        write is refused."""
        from genie_env._io import atomic_dir, atomic_write_bytes, atomic_write_json
        from genie_env.checkpoint import export_checkpoint, resolve_checkpoint

        by_name = {row["name"]: row for row in rows}
        targets = [self.out / "ship"] + ([Path(self.args.ship_to)] if self.args.ship_to else [])
        for target in targets:
            if target.exists() and not (target / SHIP_RECORD).exists():
                raise ValueError(f"{target} exists and was not written by genie bc-study: refusing to replace it")
        for target in targets:
            with atomic_dir(target) as tmp:
                for file, name in (("oracle_bc", "oracle"), ("lam_bc", shipped)):
                    row = by_name[name]
                    run = self.out / "bc" / f"{name}_seed{row['picked_seed']}"
                    record = json.loads((run / "config.json").read_text())
                    picked = {"seed": row["picked_seed"], "on": "validation levels", "side": name,
                              "test_return": row["picked_return"], "test_ci": row["picked_ci"]}  # fmt: skip
                    shutil.copy2(run / "agent.zip", tmp / f"{file}.zip")
                    atomic_write_json(tmp / f"{file}.json", {**record, "picked": picked})
                export_checkpoint(resolve_checkpoint(lam), tmp / "lam")
                for path in paths.values():
                    shutil.copy2(path, tmp / path.name)
                atomic_write_bytes(tmp / "MODEL_CARD.md", self.model_card(target, shipped).encode())
        return targets[0]

    def model_card(self, target: Path, shipped: str) -> str:
        """MODEL_CARD.md of the shipped policies: what each file is, the command, every stage's wall time and
        the table, from the experiment's own records."""
        a = self.args
        v = json.loads((self.out / "bc_study.json").read_text())["verdicts"]
        stages = self.stages.record["stages"]
        command = command_line("genie bc-study", a, skip=("ship_to",))
        lines = [
            "# genie-env: acting from action-free videos (Genie's latent actions) — model card", "",
            f"What ships here (`{target}`), every stage recorded in `{self.out}/stages.json`:", "",
            "| file | what |", "|---|---|",
            f"| `lam_bc.zip`, `lam_bc.json` | behaviour cloning of the LAM's latent actions, grounded by "
            f"{a.ship_labels} transitions with a real action (the seed picked on validation levels) |",
            "| `oracle_bc.zip`, `oracle_bc.json` | the same network cloned from every real action of the same videos |",
            "| `lam/` | the latent action model, trained on the videos' frames alone (fp16) |",
            "| `bc_study.md`, `bc_study.json`, `bc_study.png` | every side and seed on held-out real levels |", "",
            "Both policies are SB3 PPO files: `stable_baselines3.PPO.load` and `genie evaluate` play them.", "",
            "## How it was made", "", "```bash", command, "```", "",
            "| stage | minutes |", "|---|---:|",
            *(f"| {name} | {s['wall_s'] / 60:.1f} |" for name, s in stages.items()), "",
            "## On held-out real levels", "",
            (self.out / "bc_study.md").read_text().strip(), "",
            f"LAM BC ({shipped}) reaches {100 * v['lam_over_oracle']:.0f}% of oracle BC's seed mean (target "
            f"{100 * v['target_share']:.0f}%); picked agents above the random policy (95% CIs apart): "
            + ", ".join(f"{k} {'yes' if ok else 'no'}" for k, ok in v["picked_above_random"].items()) + ".", "",
        ]  # fmt: skip
        return "\n".join(lines)


def command_line(prog: str, args: Any, skip: tuple[str, ...] = ()) -> str:
    """The command that gives `args` (a dataclass of CLI flags): `prog` and every flag not at its default."""
    parts = [prog]
    for f in dataclasses.fields(args):
        value = getattr(args, f.name)
        if f.name in skip or value == (f.default if f.default is not dataclasses.MISSING else f.default_factory()):
            continue
        shown = " ".join(map(str, value)) if isinstance(value, tuple) else str(value)
        parts.append(f"--{f.name.replace('_', '-')} {shown}")
    return " ".join(parts)


def main(argv: list[str] | None = None) -> None:
    from genie_env.agents.bc_study import format_bc_table

    argv = sys.argv[1:] if argv is None else argv
    setup_logging()
    with cli_errors():
        args = tyro.cli(BCStudyArgs, args=argv, prog="genie bc-study", description=__doc__)
        result = BCStudy(args).run()
        study = json.loads(Path(result["paths"]["json"]).read_text())
    print(format_bc_table(result["rows"], study["expert"], study["random"], study["lam"]))
    print(f"wrote {result['paths']['markdown']}, {result['paths']['png']}; shipped {result['ship']}")


if __name__ == "__main__":
    main()
