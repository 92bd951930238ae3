"""int8 matmuls for dreaming on CPUs with int8 dot-product instructions (AVX512-VNNI, AVX-VNNI or AMX).

`quantize_linears(model)` swaps every `nn.Linear` for an `Int8Linear`: weights rounded once to int8 with one
scale per output channel, activations rounded to int8 at every call with one scale per row (dynamic,
symmetric), the product taken by `torch._int_mm` in int32, then scaled back and the bias added in float32.
The rounding, the matmul and the rescaling run as one `torch.compile`d function (inductor's C++ backend,
compiled once per process for every shape): run eagerly, the extra passes over the activations cost more
than the int8 matmul saves (the README's "int8 and `torch.compile`"). That is also why this is not torchao's
`Int8DynamicActivationInt8WeightConfig`: the same scheme, but with each Linear compiled it made our dream
step slower than bf16, and compiling the whole step does not pay (both measured in the README).

Inference only: `Int8Linear` holds no parameters and has no gradient.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from genie_env.models.inductor import require_inductor


def _int8_linear(x: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """x (M, K) float -> (M, N) in x's dtype: x quantized per row, times int8 `weight` (K, N) with per-column
    `scale` (N,), plus `bias` (N,)."""
    xf = x.float()
    row_scale = xf.abs().amax(-1, keepdim=True).clamp(min=1e-8) / 127
    xq = torch.round(xf / row_scale).clamp(-127, 127).to(torch.int8)
    return (torch._int_mm(xq, weight).float() * row_scale * scale + bias).to(x.dtype)


CHUNK_ROWS = 6144
"""most rows per kernel call: `torch._int_mm` on CPU falls off a cliff at about 8,000 rows (on 2 Zen 5 cores,
x 256 -> 1,024: 850 GOP/s at 2,080 to 7,000 rows, 271 at 8,320), so longer inputs go through in near-equal
chunks (64 dreams of 65 tokens are one chunk, 256 dreams three)"""


@functools.cache
def _compiled_kernel():
    return torch.compile(_int8_linear, dynamic=True)


class Int8Linear(nn.Module):
    """A frozen `nn.Linear` with int8 weights (per output channel) and int8 activations (per row), computed
    by the compiled kernel in the input's dtype (bf16 under bf16 autocast, which `WorldModel` runs it in)."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        w = linear.weight.detach().float()
        scale = w.abs().amax(1).clamp(min=1e-8) / 127
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("weight", torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8).t().contiguous())
        self.register_buffer("scale", scale)
        bias = linear.bias.detach().float() if linear.bias is not None else torch.zeros(self.out_features)
        self.register_buffer("bias", bias.to(w.device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(f"Int8Linear expects {self.in_features} input features, got shape {tuple(x.shape)}")
        kind = x.device.type
        dtype = torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else x.dtype
        rows = x.reshape(-1, self.in_features).to(dtype)
        if rows.shape[0] == 0:
            return rows.new_zeros(*x.shape[:-1], self.out_features)
        kernel, pieces = _compiled_kernel(), -(-len(rows) // CHUNK_ROWS)
        with torch.autocast(kind, enabled=False):
            chunks = [kernel(c, self.weight, self.scale, self.bias) for c in rows.tensor_split(pieces)]
        out = chunks[0] if len(chunks) == 1 else torch.cat(chunks)
        return out.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"


def _probe_kernel() -> None:
    Int8Linear(nn.Linear(16, 8))(torch.randn(3, 16))


def quantize_linears(model: nn.Module) -> int:
    """Replace every `nn.Linear` inside `model` by an `Int8Linear`, in place; the number replaced. RuntimeError
    where the kernel cannot be compiled here (torch.compile's C++ backend needs a C++ compiler)."""
    require_inductor("precision='int8'", "use precision='bf16'", _probe_kernel)
    count = 0
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if isinstance(child, nn.Linear):
                setattr(parent, name, Int8Linear(child))
                count += 1
    return count
