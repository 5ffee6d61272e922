"""Batch augmentation: the crop / pad / flip maths against explicit slicing, seeding, DDP shards,
kill + resume equality, and that evaluation never sees it."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from _resume_child import CFG_AUGMENT, image_task

from gradversary.data.augment import (
    AugmentConfig,
    CenterCrop,
    augment_batch,
    augment_draws,
    augmented_shape,
    center_crop,
    crop_and_flip,
)
from gradversary.engine import Trainer, load_checkpoint, resolve_config
from gradversary.errors import ConfigError
from gradversary.io import read_metrics

HERE = Path(__file__).parent


def _reference(x, cfg, draws):
    """Per example, by hand: pad with explicit slices, cut the window, mirror with a python loop."""
    n, c, h, w = x.shape
    p = cfg.pad
    side_h = side_w = cfg.crop
    if side_h is None:
        side_h, side_w = h, w
    out = []
    for i in range(n):
        img = torch.full((c, h + 2 * p, w + 2 * p), cfg.pad_value)
        img[:, p:p + h, p:p + w] = x[i]
        dy, dx, fl = (int(v) for v in draws[i])
        win = img[:, dy:dy + side_h, dx:dx + side_w]
        if cfg.flip and fl:
            win = torch.stack([win[:, :, side_w - 1 - j] for j in range(side_w)], dim=-1)
        out.append(win)
    return torch.stack(out)


@pytest.mark.parametrize("cfg", [AugmentConfig(crop=5, pad=2, flip=True, pad_value=0.25),
                                 AugmentConfig(pad=1, flip=False),
                                 AugmentConfig(crop=4, flip=True),  # from a larger image
                                 AugmentConfig(flip=True)])
def test_augment_batch_equals_explicit_slicing(cfg):
    x = torch.rand(16, 2, 7, 7)
    got = augment_batch(x, cfg, seed=3, step=5)
    ph = 7 + 2 * cfg.pad - (cfg.crop or 7)
    draws = augment_draws(16, ph, ph, seed=3, stream=0, step=5)
    assert got.shape == (16, 2, cfg.crop or 7, cfg.crop or 7)
    assert torch.equal(got, _reference(x, cfg, draws))


def test_offsets_stay_in_bounds_and_cover_every_position():
    d = augment_draws(20000, 4, 2, seed=0, stream=0, step=0)
    for col, hi in ((0, 4), (1, 2), (2, 1)):
        assert d[:, col].min() == 0 and d[:, col].max() == hi
        counts = torch.bincount(d[:, col], minlength=hi + 1).double() / len(d)
        assert torch.allclose(counts, torch.full_like(counts, 1 / (hi + 1)), atol=0.02)


def test_padding_values_and_modes():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    # crop 8 of a 4-image padded by 2: the whole padded image, so the border is the padding
    const = augment_batch(x, AugmentConfig(crop=8, pad=2, pad_value=-1.0), 0, 0)
    assert torch.equal(const[0, 0, 2:6, 2:6], x[0, 0])
    assert (const[0, 0, :2] == -1).all() and (const[0, 0, :, -2:] == -1).all()
    refl = augment_batch(x, AugmentConfig(crop=8, pad=2, pad_mode="reflect"), 0, 0)
    assert torch.equal(refl[0, 0, 0, 2:6], x[0, 0, 2])  # row -2 mirrors row 2
    rep = augment_batch(x, AugmentConfig(crop=8, pad=2, pad_mode="replicate"), 0, 0)
    assert torch.equal(rep, F.pad(x, (2, 2, 2, 2), mode="replicate"))


def test_flip_mirrors_about_half_the_images():
    x = torch.rand(400, 1, 3, 5)
    out = augment_batch(x, AugmentConfig(flip=True), seed=1, step=0)
    same = (out == x).flatten(1).all(1)
    mirrored = (out == x.flip(-1)).flatten(1).all(1)
    assert bool((same | mirrored).all())
    assert 150 < int(mirrored.sum()) < 250
    flips = augment_draws(400, 0, 0, seed=1, stream=0, step=0)[:, 2]
    assert torch.equal(mirrored, flips.bool())


def test_crop_and_flip_one_known_case():
    x = torch.arange(25.0).view(1, 1, 5, 5)
    got = crop_and_flip(x, torch.tensor([1]), torch.tensor([2]), torch.tensor([1]), 2, 3)
    assert got.tolist() == [[[[9.0, 8.0, 7.0], [14.0, 13.0, 12.0]]]]


def test_center_crop():
    x = torch.arange(36.0).view(1, 1, 6, 6)
    assert center_crop(x, 4).tolist() == x[..., 1:5, 1:5].tolist()
    assert torch.equal(CenterCrop(6)(x), x) and torch.equal(CenterCrop(8)(x), x)


def test_seeded_by_seed_step_and_stream():
    x = torch.rand(32, 1, 8, 8)
    cfg = AugmentConfig(crop=6, pad=1, flip=True)
    a = augment_batch(x, cfg, seed=0, step=4)
    assert torch.equal(a, augment_batch(x, cfg, seed=0, step=4))
    for other in (dict(seed=1, step=4), dict(seed=0, step=5), dict(seed=0, step=4, stream=1)):
        assert not torch.equal(a, augment_batch(x, cfg, **other)), other
    before = torch.get_rng_state()
    augment_batch(x, cfg, seed=0, step=4)
    assert torch.equal(before, torch.get_rng_state())  # the global stream is not touched


def test_ranks_augment_their_shard_as_one_process_does():
    x = torch.rand(24, 3, 8, 8)
    cfg = AugmentConfig(crop=7, pad=2, flip=True)
    whole = augment_batch(x, cfg, seed=2, step=9, stream=1)
    for world in (2, 3, 4):
        n = 24 // world
        shards = [augment_batch(x[r * n:(r + 1) * n], cfg, seed=2, step=9, stream=1, rank=r,
                                world_size=world) for r in range(world)]
        assert torch.equal(torch.cat(shards), whole), world


def test_config_checks():
    with pytest.raises(ConfigError, match="does nothing"):
        AugmentConfig()
    with pytest.raises(ConfigError, match="did you mean 'flip'"):
        resolve_config({"train": {"augment": {"flipp": True}}})
    with pytest.raises(ConfigError, match="larger than the padded image"):
        augmented_shape((1, 8, 8), AugmentConfig(crop=11, pad=1))
    with pytest.raises(ConfigError, match="image inputs"):
        Trainer(resolve_config({"train": {"augment": {"flip": True}, "progress": False}}), persist=False)
    cfg = resolve_config({}, ["train.augment.crop=28", "train.augment.pad=2"])
    assert cfg.train.augment == AugmentConfig(crop=28, pad=2)
    assert cfg.to_dict()["train"]["augment"]["pad_mode"] == "constant"


def test_trainer_augments_training_batches_only(tmp_path):
    cfg = resolve_config({**CFG_AUGMENT, "train": {**CFG_AUGMENT["train"], "steps": 3}})
    tr = Trainer(cfg, run_dir=tmp_path, task=image_task())
    twin = Trainer(cfg, run_dir=tmp_path / "twin", task=image_task())
    b = tr._next_batch()
    aug = cfg.train.augment
    rows_s, rows_t = twin.batches.source.next(), twin.batches.target.next()
    assert torch.equal(b.x_s, augment_batch(twin.batches.x_s[rows_s], aug, seed=11, step=0, stream=0))
    assert torch.equal(b.x_t, augment_batch(twin.batches.x_t[rows_t], aug, seed=11, step=0, stream=1))
    assert torch.equal(b.y_s, twin.batches.y_s[rows_s])
    tr.fit()
    # evaluation: the network centre-crops the whole 8 x 8 images itself, no random crop
    model = tr.method.model
    assert isinstance(model.features[0], CenterCrop)
    xt, yt = tr.task.eval["target_test"].x, tr.task.eval["target_test"].y
    with torch.no_grad():
        acc = float((model(xt).argmax(1) == yt).float().mean())
    assert tr.evaluate()["target_test_acc"] == pytest.approx(acc, abs=1e-6)
    assert tr.evaluate() == tr.evaluate()


def test_target_augmentation_can_be_off(tmp_path):
    raw = {**CFG_AUGMENT, "train": {**CFG_AUGMENT["train"], "augment": {"pad": 1, "target": False}}}
    off = Trainer(resolve_config(raw), run_dir=tmp_path, task=image_task())
    on = Trainer(resolve_config({**raw, "train": {**raw["train"], "augment": {"pad": 1}}}),
                 run_dir=tmp_path / "on", task=image_task())
    b_off, b_on = off._next_batch(), on._next_batch()
    assert torch.equal(b_off.x_s, b_on.x_s)
    twin = Trainer(resolve_config(raw), run_dir=tmp_path / "twin", task=image_task())
    assert torch.equal(b_off.x_t, twin.batches.x_t[twin.batches.target.next()])  # the target untouched
    assert not torch.equal(b_off.x_t, b_on.x_t)


def test_killed_and_resumed_augmented_run_ends_like_an_uninterrupted_one(tmp_path, env_src):
    full = tmp_path / "full"
    Trainer(resolve_config(CFG_AUGMENT), run_dir=full, task=image_task()).fit()
    plain = tmp_path / "plain"
    no_aug = {**CFG_AUGMENT, "train": {k: v for k, v in CFG_AUGMENT["train"].items() if k != "augment"}}
    Trainer(resolve_config(no_aug), run_dir=plain, task=image_task()).fit()
    assert read_metrics(full / "metrics.jsonl") != read_metrics(plain / "metrics.jsonl")  # it acts

    cut = tmp_path / "cut"
    proc = subprocess.run([sys.executable, str(HERE / "_resume_child.py"), str(cut), "25", "augment"],
                          env=env_src, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 17, proc.stderr
    assert load_checkpoint(cut / "checkpoints" / "last.pt")["step"] == 20
    Trainer(resolve_config(CFG_AUGMENT), run_dir=cut, task=image_task()).fit(resume=True)
    assert read_metrics(full / "metrics.jsonl") == read_metrics(cut / "metrics.jsonl")
    sa = load_checkpoint(full / "checkpoints" / "last.pt")["method"]
    sb = load_checkpoint(cut / "checkpoints" / "last.pt")["method"]
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
