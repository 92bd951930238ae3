"""Distillation of a dynamics model into a smaller or leaner one (`genie train-dynamics --distill-from`).

The student learns the teacher's predictions rather than the data's: on every masked token the
teacher's distribution over codes (soft cross-entropy, which equals the KL divergence up to the
teacher's entropy), and on every transition the teacher's calibrated reward distribution and
termination probability. Soft targets carry more per example than the one code that happened, which
is why a distilled student can match a teacher that a student of the same size trained from scratch
does not (the width-128 model trained from scratch lost a point of real return, README).

With `dreamed` p > 0 a window is, with probability p, the teacher's own dream: a real prefix of
1..W-1 frames (uniform), then the teacher's greedy generations under the window's actions
(`DynamicsModel.dreamed_prev`). So the student learns the teacher where dream agents take it, not
only on the real data's states.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from genie_env.models.common import StepResult
from genie_env.models.dynamics import DynamicsModel

# fields a student must share with its teacher: what the tokens, actions and rewards mean
SHARED = ("codebook_size", "grid", "num_actions", "reward_values")


def check_student(student: DynamicsModel, teacher: DynamicsModel, teacher_name: str) -> None:
    """ValueError naming the fields where the student cannot learn from `teacher_name`."""

    def value(cfg, name):  # JSON gives lists where a fresh config holds tuples
        v = getattr(cfg, name)
        return tuple(v) if isinstance(v, (list, tuple)) else v

    differ = [f for f in SHARED if value(student.cfg, f) != value(teacher.cfg, f)]
    if differ:
        detail = ", ".join(f"{f} {getattr(student.cfg, f)} against {getattr(teacher.cfg, f)}" for f in differ)
        raise ValueError(f"--distill-from {teacher_name} predicts other tokens, actions or rewards: {detail}")


class DistillObjective(nn.Module):
    """Training objective for the shared trainer: a window batch of token shards -> StepResult, the
    student's soft cross-entropy against the frozen teacher's predictions (see the module docstring)."""

    def __init__(self, student: DynamicsModel, teacher: DynamicsModel, dreamed: float = 0.0,
                 teacher_name: str = "the teacher") -> None:  # fmt: skip
        super().__init__()
        if not 0.0 <= dreamed <= 1.0:
            raise ValueError(f"--distill-dreamed is a probability in [0, 1], got {dreamed}")
        check_student(student, teacher, teacher_name)
        self.model, self.dreamed = student, dreamed  # `model`: what the trainer saves
        self.teacher = [teacher.eval().requires_grad_(False)]  # a list: not a submodule, so never saved or trained

    def forward(self, batch: dict[str, torch.Tensor]) -> StepResult:
        student, teacher = self.model, self.teacher[0]
        tokens, actions = batch["tokens"], batch["actions"]
        if teacher.head.weight.device != tokens.device:  # the trainer moves the student only
            self.teacher[0] = teacher = teacher.to(tokens.device)
        b, w = tokens.shape[:2]
        s = student.cfg.tokens
        seq = tokens.reshape(b, w, s)
        metrics: dict[str, torch.Tensor] = {}
        if self.dreamed > 0:
            dev = tokens.device
            real = torch.randint(1, w, (b,), device=dev)
            real = torch.where(torch.rand(b, device=dev) < self.dreamed, real, torch.full_like(real, w))
            seq = teacher.dreamed_prev(tokens, actions, real)
            metrics["dreamed_fraction"] = (w - real).float().mean() / w
        _, masked, current = student.masked_targets(seq)
        with torch.no_grad():
            taught = teacher(seq, current, actions)
        out = student(seq, current, actions)
        scored = masked[:, :-1]
        soft = F.softmax(taught.logits[:, :-1][scored].float(), -1)
        log_q = F.log_softmax(out.logits[:, :-1][scored].float(), -1)
        token_ce = -(soft * log_q).sum(-1).mean()
        teacher_entropy = -(soft * soft.clamp_min(1e-12).log()).sum(-1).mean()
        reward_t, term_t = teacher.event_probabilities(taught.events)
        reward_ce = -(reward_t * F.log_softmax(student.reward_logits(out.events), -1)).sum(-1).mean()
        term_bce = F.binary_cross_entropy_with_logits(out.events[..., -1], term_t)
        agree = (out.logits[:, :-1][scored].argmax(-1) == taught.logits[:, :-1][scored].argmax(-1)).float().mean()
        total = token_ce + student.cfg.event_weight * (reward_ce + term_bce)
        return StepResult(total, {
            "token_kl": (token_ce - teacher_entropy).detach(), "token_soft_ce": token_ce.detach(),
            "teacher_agreement": agree.detach(), "reward_soft_ce": reward_ce.detach(),
            "termination_soft_bce": term_bce.detach(), **metrics,
        })  # fmt: skip
