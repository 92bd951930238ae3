"""The tokenizer: shapes, causality of ST-ViViT, input checks, checkpoints."""

from __future__ import annotations

import json

import pytest
import torch

from genie_env.checkpoint import CheckpointError, save_checkpoint
from genie_env.models import load_tokenizer
from genie_env.models.tokenizer import Tokenizer, TokenizerConfig, tokens_to_patches

CONV = TokenizerConfig(patch=16, channels=8, blocks=1, embed_dim=4, codebook_size=16)
STVIVIT = TokenizerConfig(kind="stvivit", patch=16, channels=16, blocks=2, heads=2, max_frames=4, embed_dim=4,
                          codebook_size=16)  # fmt: skip


def frames(b=2, t=3, seed=0):
    return torch.randint(0, 256, (b, t, 64, 64, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("cfg", [CONV, STVIVIT], ids=["conv", "stvivit"])
def test_shapes_and_encode_matches_forward(cfg):
    torch.manual_seed(0)
    model = Tokenizer(cfg)
    x = frames()
    out = model(x)
    assert out.tokens.shape == (2, 3, 4, 4) and out.tokens.dtype == torch.int64
    assert out.recon.shape == (2, 3, 64, 64, 3)
    assert torch.isclose(out.loss, out.recon_loss + out.codebook_loss + 0.25 * out.commitment_loss)
    model.eval()
    assert torch.equal(model.encode(x), model(x).tokens)
    decoded = model.decode_uint8(out.tokens)
    assert decoded.shape == x.shape and decoded.dtype == torch.uint8


def test_stvivit_tokens_of_frame_t_do_not_depend_on_later_frames():
    torch.manual_seed(0)
    model = Tokenizer(STVIVIT).eval()
    x = frames(b=1, t=4)
    y = x.clone()
    y[:, 2:] = 255 - y[:, 2:]  # change frames 2 and 3
    zx = model.encoder(x.permute(0, 1, 4, 2, 3).float() / 127.5 - 1)
    zy = model.encoder(y.permute(0, 1, 4, 2, 3).float() / 127.5 - 1)
    assert torch.equal(zx[:, :2], zy[:, :2])  # frames 0, 1 untouched by the change
    assert not torch.allclose(zx[:, 2:], zy[:, 2:])
    assert torch.equal(model.encode(x)[:, :2], model.encode(y)[:, :2])


def test_bad_inputs_give_clear_errors():
    model = Tokenizer(CONV).eval()
    with pytest.raises(TypeError, match="uint8"):
        model.encode(torch.zeros(1, 1, 64, 64, 3))
    with pytest.raises(ValueError, match=r"\(B, T, 64, 64, 3\)"):
        model.encode(torch.zeros(1, 64, 64, 3, dtype=torch.uint8))
    with pytest.raises(ValueError, match="out of range: this tokenizer has 16 codes"):
        model.decode(torch.full((1, 1, 4, 4), 16))
    with pytest.raises(ValueError, match="at most 4 frames"):
        Tokenizer(STVIVIT).encode(frames(b=1, t=5))
    with pytest.raises(ValueError, match="unknown tokenizer --model.kind .vit."):
        TokenizerConfig(kind="vit")
    with pytest.raises(ValueError, match="--model.frame-size 64 must be divisible by --model.patch 7"):
        TokenizerConfig(patch=7)


def test_checkpoint_round_trip_and_corruption_errors(tmp_path):
    torch.manual_seed(0)
    model = Tokenizer(CONV).eval()
    save_checkpoint(tmp_path / "ckpt", model, "tokenizer", CONV)
    loaded = load_tokenizer(tmp_path / "ckpt")
    x = frames()
    assert torch.equal(loaded.encode(x), model.encode(x))

    meta = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    meta["config"]["dropout"] = 0.1
    (tmp_path / "ckpt" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="unexpected keys \\['dropout'\\]"):
        load_tokenizer(tmp_path / "ckpt")

    save_checkpoint(tmp_path / "other", Tokenizer(CONV), "dynamics", CONV)
    with pytest.raises(CheckpointError, match="is a 'dynamics' checkpoint, expected a 'tokenizer'"):
        load_tokenizer(tmp_path / "other")

    save_checkpoint(tmp_path / "bad", model, "tokenizer", CONV)
    weights = tmp_path / "bad" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="corrupt checkpoint file .*model.safetensors"):
        load_tokenizer(tmp_path / "bad")

    bigger = TokenizerConfig(**{**CONV.__dict__, "channels": 12})
    save_checkpoint(tmp_path / "shape", model, "tokenizer", bigger)
    with pytest.raises(CheckpointError, match="shape mismatch"):
        load_tokenizer(tmp_path / "shape")
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_tokenizer(tmp_path / "missing")


def test_export_casts_to_fp16_and_drops_optimizer_state(tmp_path):
    from genie_env.checkpoint import export_checkpoint

    torch.manual_seed(0)
    model = Tokenizer(CONV).eval()
    optimizer = {"optimizer.safetensors": {"x": torch.ones(1)}}
    save_checkpoint(tmp_path / "ckpt", model, "tokenizer", CONV, tensors=optimizer)
    out = export_checkpoint(tmp_path / "ckpt", tmp_path / "export")
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    loaded = load_tokenizer(out)
    assert loaded.quantizer.codebook.dtype == torch.float32  # cast back on load
    x = frames()
    agree = (loaded.encode(x) == model.encode(x)).float().mean()
    assert agree > 0.95  # fp16 rounding may move a rare near-tie to its neighbour code


def test_decoder_unpatchifies_with_a_matmul_equal_to_its_transposed_conv():
    torch.manual_seed(0)
    layer = torch.nn.ConvTranspose2d(8, 3, 4, 4)
    x = torch.randn(5, 8, 3, 3)
    with torch.no_grad():
        assert torch.allclose(tokens_to_patches(x, layer), layer(x), atol=1e-5)
        with torch.autocast("cpu", dtype=torch.bfloat16):  # computed in float32 even under autocast
            assert tokens_to_patches(x, layer).dtype == torch.float32


def test_a_new_lighter_decoder_keeps_the_tokens_and_fits_the_old_tokenizers_dynamics(
    tiny_dataset, tiny_world_model, tmp_path
):
    import dataclasses

    from genie_env.cli import train_tokenizer

    from genie_env.data.dataset import WindowDataset
    from genie_env.models import tokenizer_identity
    from genie_env.models.tokenizer import DecoderObjective
    from genie_env.world_model import load_world_model, package_world_model

    args = train_tokenizer.default_args("tiny")
    lighter = dataclasses.replace(args.model, decoder_channels=args.model.channels // 2, decoder_blocks=0)
    run = tmp_path / "decoder"
    train = dataclasses.replace(args.train, steps=40, checkpoint_every=20)
    train_tokenizer.run(dataclasses.replace(args, data=str(tiny_dataset), out=str(run), model=lighter, train=train,
                                            decoder_for=str(tiny_world_model)))  # fmt: skip
    old, new = load_tokenizer(tiny_world_model / "tokenizer"), load_tokenizer(run)
    windows = WindowDataset(tiny_dataset, split="train", window=1)
    frames = torch.stack([torch.as_tensor(windows[i]["frames"]) for i in range(16)])
    assert torch.equal(old.encode(frames), new.encode(frames))  # the same tokens
    size = lambda m: sum(p.numel() for p in m.decoder.parameters())  # noqa: E731
    assert size(new) < size(old) / 2
    assert tokenizer_identity(tiny_world_model / "tokenizer") <= tokenizer_identity(run)
    # the old tokenizer's dynamics model fits the new tokenizer, which decodes its dreams
    out = package_world_model(run, tiny_world_model.parent / "dyn_run", tiny_dataset, tmp_path / "wm", num_contexts=4)
    wm = load_world_model(out)
    assert wm.tokenizer.cfg.decoder_blocks == 0
    # and its decoder learned: better reconstructions than a fresh decoder of the same shape
    torch.manual_seed(0)
    fresh = Tokenizer(new.cfg)
    fresh.load_state_dict({k: v for k, v in new.state_dict().items() if not k.startswith("decoder.")}, strict=False)
    batch = {"frames": frames}
    assert DecoderObjective(new)(batch).metrics["psnr"] > DecoderObjective(fresh)(batch).metrics["psnr"] + 1.0
    with pytest.raises(ValueError, match="are for the conv tokenizer"):
        TokenizerConfig(kind="stvivit", channels=32, heads=2, decoder_blocks=1)
