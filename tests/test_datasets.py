"""The real-data loaders (digits, amazon, office_caltech) on the staged files in shared/data.

Facts checked against the data root's MANIFEST.md (measured there independently of these
loaders): split sizes, class histograms, label ranges, nonzeros per row and largest counts.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gradversary.config import from_dict
from gradversary.config_files import read_config_file
from gradversary.data import amazon as amazon_mod
from gradversary.data import create_task
from gradversary.data import digits as digits_mod
from gradversary.data import office_caltech as office_mod
from gradversary.data import office_caltech_surf as surf_mod
from gradversary.errors import ConfigError, DataError

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "dann"


def _need(*relpaths: str) -> Path:
    missing = [p for p in relpaths if not (DATA / p).is_file()]
    if missing:
        pytest.skip(f"real data not found: {', '.join(str(DATA / p) for p in missing)} "
                    f"(the staged datasets live in shared/data beside the repository)")
    return DATA


def _raw(name: str) -> dict[str, np.ndarray]:
    with np.load(DATA / name, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _corrupt_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    data = bytearray(src.read_bytes())
    data[len(data) // 2] ^= 0xFF
    dst.write_bytes(bytes(data))


def _check_common(task, num_classes: int, in_shape: tuple[int, ...]) -> None:
    assert task.num_classes == num_classes
    assert task.target.y is None, "the target's labels must be dropped"
    assert set(task.eval) == {"source_test", "target_test"}
    for name, d in {"source": task.source, "target": task.target, **task.eval}.items():
        assert d.x.dtype == torch.float32, name
        assert d.in_shape == in_shape, name
        if d.y is not None:
            assert d.y.dtype == torch.int64, name
            assert 0 <= int(d.y.min()) and int(d.y.max()) <= num_classes - 1, name
    for name, d in task.eval.items():
        assert d.y is not None and len(d.y) == len(d), name


# --------------------------------------------------------------------------------- digits
@pytest.fixture(scope="module")
def mnist_mnistm():
    root = _need("mnist.npz", "mnist_m.npz")
    return create_task("digits", root=root, source="mnist", target="mnist_m", max_source=1500,
                       max_target=1500, max_test=500, seed=3)


def test_digits_mnist_to_mnistm_shapes_ranges_and_protocol(mnist_mnistm):
    task = mnist_mnistm
    _check_common(task, 10, (3, 28, 28))
    assert (len(task.source), len(task.target)) == (1500, 1500)
    assert {k: len(v) for k, v in task.eval.items()} == {"source_test": 500, "target_test": 500}
    for d in (task.source, task.target, *task.eval.values()):
        assert float(d.x.min()) >= 0.0 and float(d.x.max()) <= 1.0
    # grey MNIST repeated over 3 channels; MNIST-M is colour
    assert torch.equal(task.source.x[:, 0], task.source.x[:, 2])
    assert not torch.equal(task.target.x[:, 0], task.target.x[:, 2])
    assert task.name == "mnist->mnist_m"


def test_digits_mnist_values_and_labels_are_the_file_s(mnist_mnistm):
    raw = _raw("mnist.npz")
    idx = np.asarray(mnist_mnistm.meta["indices"]["source"])
    assert len(idx) == 1500 and np.all(np.diff(idx) > 0)
    want = torch.from_numpy(raw["x_train"][idx]).permute(0, 3, 1, 2).float() / 255.0
    torch.testing.assert_close(mnist_mnistm.source.x[:, :1], want, rtol=0, atol=0)
    assert torch.equal(mnist_mnistm.source.y, torch.from_numpy(raw["y_train"][idx]))
    tidx = np.asarray(mnist_mnistm.meta["indices"]["source_test"])
    assert torch.equal(mnist_mnistm.eval["source_test"].y, torch.from_numpy(raw["y_test"][tidx]))


def test_digits_mnistm_is_resized_bilinear_antialiased_to_28(mnist_mnistm):
    raw = _raw("mnist_m.npz")
    assert raw["x_train"].shape[1:] == (32, 32, 3)
    idx = np.asarray(mnist_mnistm.meta["indices"]["target_test"])
    src = torch.from_numpy(raw["x_test"][idx]).permute(0, 3, 1, 2).float() / 255.0
    want = F.interpolate(src, size=(28, 28), mode="bilinear", antialias=True, align_corners=False)
    got = mnist_mnistm.eval["target_test"].x
    # resized in uint8: rounded to grey levels, so within one level of the float resize
    assert (got - want).abs().max() <= 1.01 / 255
    assert (got - want).abs().mean() <= 0.5 / 255
    assert torch.equal(mnist_mnistm.eval["target_test"].y, torch.from_numpy(raw["y_test"][idx]))


def test_mnistm_train_images_follow_mnist_order():
    # The docstring's claim (MANIFEST): MNIST-M train image i was made from MNIST x_train[i].
    _need("mnist.npz", "mnist_m.npz")
    m, mm = _raw("mnist.npz"), _raw("mnist_m.npz")
    n = len(mm["y_train"])
    assert n == 20000 and np.array_equal(mm["y_train"], m["y_train"][:n])
    assert np.array_equal(mm["y_test"], m["y_test"][: len(mm["y_test"])])


def test_digits_disjoint_drops_the_shared_mnist_digits():
    root = _need("mnist.npz", "mnist_m.npz")
    kw = dict(source="mnist", target="mnist_m", max_source=400, max_target=10, max_test=10)
    shared = np.asarray(create_task("digits", root=root, **kw).meta["indices"]["source"])
    apart = np.asarray(create_task("digits", root=root, disjoint=True, **kw).meta["indices"]["source"])
    assert (shared < 20000).any()  # without the option, some source digits are MNIST-M's
    assert apart.min() >= 20000 and apart.max() < 60000


def test_digits_usps_and_mnist_in_both_directions():
    root = _need("usps.npz", "mnist.npz")
    task = create_task("digits", root=root, source="usps", target="mnist", max_target=300,
                       max_test=300)
    _check_common(task, 10, (3, 28, 28))
    assert len(task.source) == 7291 and task.meta["indices"]["source"] is None  # all of it
    assert torch.bincount(task.source.y).tolist() == [1194, 1005, 731, 658, 652, 556, 664, 645,
                                                      542, 644]
    assert float(task.source.x.min()) >= 0 and float(task.source.x.max()) <= 1
    back = create_task("digits", root=root, source="mnist", target="usps", max_source=300,
                       max_test=300)
    assert len(back.target) == 7291 and back.target.y is None


def test_digits_size_and_channels_options():
    root = _need("usps.npz", "mnist_m.npz")
    task = create_task("digits", root=root, source="mnist_m", target="usps", size=32,
                       channels=1, max_source=50, max_target=50, max_test=50)
    _check_common(task, 10, (1, 32, 32))
    raw = _raw("mnist_m.npz")
    idx = np.asarray(task.meta["indices"]["source"])
    rgb = torch.from_numpy(raw["x_train"][idx]).permute(0, 3, 1, 2).float() / 255.0  # 32x32
    grey = (rgb * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    torch.testing.assert_close(task.source.x, grey, rtol=0, atol=1e-6)


def test_digits_per_domain_standardisation_uses_each_domain_s_training_statistics():
    root = _need("usps.npz", "mnist_m.npz")
    kw = dict(source="mnist_m", target="usps", max_source=300, max_target=200, max_test=100, seed=4)
    raw = create_task("digits", root=root, **kw)
    std = create_task("digits", root=root, standardize="per_domain", **kw)
    for dom in ("source", "target"):
        x = raw.eval[f"{dom}_test"].x if dom == "source" else raw.target.x
        mean = raw.source.x.mean((0, 2, 3), keepdim=True) if dom == "source" else x.mean((0, 2, 3), keepdim=True)
        sd = (raw.source.x if dom == "source" else x).std((0, 2, 3), keepdim=True)
        got = std.eval[f"{dom}_test"].x if dom == "source" else std.target.x
        torch.testing.assert_close(got, (x - mean) / sd, rtol=1e-5, atol=1e-5)
        m, s = std.meta["standardize"][dom]
        torch.testing.assert_close(torch.tensor(m), mean.flatten(), rtol=1e-6, atol=1e-6)
    # the training splits are standardised exactly; the test splits with the training statistics
    torch.testing.assert_close(std.source.x.mean((0, 2, 3)), torch.zeros(3), rtol=0, atol=1e-5)
    torch.testing.assert_close(std.target.x.std((0, 2, 3)), torch.ones(3), rtol=0, atol=1e-5)
    torch.testing.assert_close(std.eval["target_test"].x,
                               (raw.eval["target_test"].x - torch.tensor(std.meta["standardize"]["target"][0]).view(1, 3, 1, 1))
                               / torch.tensor(std.meta["standardize"]["target"][1]).view(1, 3, 1, 1),
                               rtol=1e-5, atol=1e-5)
    assert torch.equal(std.source.y, raw.source.y)


def test_digits_pooled_mean_centres_both_domains_with_one_mean():
    root = _need("mnist.npz", "mnist_m.npz")
    kw = dict(source="mnist", target="mnist_m", max_source=400, max_target=300, max_test=100, seed=2)
    raw = create_task("digits", root=root, **kw)
    cen = create_task("digits", root=root, standardize="pooled_mean", **kw)
    # the mean of the two training means, by hand; every split loses the same vector
    want = (raw.source.x.double().mean((0, 2, 3)) + raw.target.x.double().mean((0, 2, 3))) / 2
    torch.testing.assert_close(torch.tensor(cen.meta["standardize"]["pooled_mean"], dtype=torch.float64),
                               want, rtol=0, atol=1e-6)
    for name in ("source", "target"):
        torch.testing.assert_close(getattr(cen, name).x, getattr(raw, name).x - want.float().view(1, 3, 1, 1))
    for name in cen.eval:
        torch.testing.assert_close(cen.eval[name].x, raw.eval[name].x - want.float().view(1, 3, 1, 1))
    # so the two training means are opposite: the source's is minus the target's
    torch.testing.assert_close(cen.source.x.mean((0, 2, 3)), -cen.target.x.mean((0, 2, 3)), rtol=0, atol=1e-5)


def test_digits_binarize_thresholds_mnist_only():
    root = _need("mnist.npz", "mnist_m.npz", "usps.npz")
    kw = dict(max_source=300, max_target=200, max_test=100, seed=1)
    raw = create_task("digits", root=root, source="mnist", target="mnist_m", **kw)
    b = create_task("digits", root=root, source="mnist", target="mnist_m", binarize=True, **kw)
    assert set(torch.unique(b.source.x).tolist()) == {0.0, 1.0}
    assert torch.equal(b.source.x, (raw.source.x > 0).float())
    assert torch.equal(b.eval["source_test"].x, (raw.eval["source_test"].x > 0).float())
    assert torch.equal(b.target.x, raw.target.x)  # MNIST-M untouched
    # MNIST as the target is binarised too; a pair without MNIST is refused
    t = create_task("digits", root=root, source="mnist_m", target="mnist", binarize=True, **kw)
    assert set(torch.unique(t.target.x).tolist()) == {0.0, 1.0}
    with pytest.raises(ConfigError, match="binarize"):
        create_task("digits", root=root, source="usps", target="mnist_m", binarize=True, **kw)


def test_digits_subsampling_is_deterministic_in_the_seed():
    root = _need("usps.npz")
    kw = dict(source="usps", target="usps", max_source=100, max_target=100, max_test=100)
    a = create_task("digits", root=root, seed=1, **kw)
    b = create_task("digits", root=root, seed=1, **kw)
    c = create_task("digits", root=root, seed=2, **kw)
    assert a.meta["indices"] == b.meta["indices"]
    assert torch.equal(a.source.x, b.source.x) and torch.equal(a.source.y, b.source.y)
    assert a.meta["indices"]["source"] != c.meta["indices"]["source"]
    assert a.meta["indices"]["source"] != a.meta["indices"]["target"]  # one stream per split


@pytest.mark.parametrize("name, fname, where", [("svhn", "svhn.npz", "ufldl.stanford.edu"),
                                                ("syn_numbers", "syn_numbers.npz", "grl")])
def test_digits_unstaged_domains_say_what_is_missing(tmp_path, name, fname, where):
    with pytest.raises(DataError, match="not available") as e:
        create_task("digits", root=tmp_path, source=name, target="mnist")
    assert fname in str(e.value) and where in str(e.value)


def test_digits_unknown_domain_and_bad_options():
    with pytest.raises(ConfigError, match="did you mean 'mnist'"):
        create_task("digits", source="mnsit")
    with pytest.raises(ConfigError, match="unknown domain 'cifar10'"):
        from_dict(digits_mod.DigitsConfig, {"target": "cifar10"})
    with pytest.raises(ConfigError, match="channels"):
        create_task("digits", channels=2)
    with pytest.raises(ConfigError, match="max_source"):
        create_task("digits", max_source=0)
    with pytest.raises(ConfigError, match="standardize"):
        create_task("digits", standardize="global")
    cfg = from_dict(digits_mod.DigitsConfig, {"source": "MNIST", "target": "mnist-m"})
    assert (cfg.source, cfg.target) == ("mnist", "mnist_m")


def test_digits_corrupt_file_names_file_and_checksum(tmp_path):
    _corrupt_copy(_need("usps.npz") / "usps.npz", tmp_path / "usps.npz")
    with pytest.raises(DataError, match="corrupt") as e:
        create_task("digits", root=tmp_path, source="usps", target="usps")
    msg = str(e.value)
    assert "usps.npz" in msg and digits_mod.CHECKSUMS["usps.npz"] in msg and "niuers" in msg


def test_digits_missing_file_is_named(tmp_path):
    with pytest.raises(DataError, match="missing data file") as e:
        create_task("digits", root=tmp_path, source="usps", target="mnist")
    assert "usps.npz" in str(e.value) and digits_mod.CHECKSUMS["usps.npz"] in str(e.value)


def test_digits_configs_subtract_the_source_training_mean():
    # configs/dann/*: the dann_mnist mean is the source training mean after the loader's
    # preprocessing (MNIST: 33.32 / 255 per the MANIFEST).
    _need("mnist.npz", "usps.npz")
    means = {}
    for name in ("mnist", "usps"):
        x = digits_mod.to_images(_raw(f"{name}.npz")["x_train"], 28, 3)
        means[name] = x.double().mean((0, 2, 3)).tolist()
    assert abs(means["mnist"][0] - 33.32 / 255) < 1e-4
    found = 0
    for path in sorted(CONFIGS.glob("*.yaml")):
        cfg = read_config_file(path)
        if cfg["model"]["name"] != "dann_mnist":
            continue
        if cfg["data"].get("standardize") == "pooled_mean":  # the loader centres instead
            assert cfg["model"].get("mean") is None, path.name
            continue
        if cfg["model"].get("std") is not None:  # a port's own Normalize(mean, std), not the paper's
            continue
        found += 1
        want = means[cfg["data"]["source"]]
        assert np.allclose(cfg["model"]["mean"], want, atol=1e-4), path.name
    assert found >= 6  # the paper-recipe pairs, plus any variants


# --------------------------------------------------------------------------------- amazon
@pytest.fixture(scope="module")
def books_kitchen():
    root = _need(*[f"amazon_reviews/{d}_{s}.svmlight.gz" for d in ("books", "kitchen")
                   for s in ("train", "test")])
    return create_task("amazon", root=root, source="B", target="K")


def test_amazon_shapes_labels_and_protocol(books_kitchen):
    task = books_kitchen
    _check_common(task, 2, (5000,))
    assert task.name == "books->kitchen"
    assert (len(task.source), len(task.target)) == (2000, 2000)
    assert {k: len(v) for k, v in task.eval.items()} == {"source_test": 4465, "target_test": 5945}
    assert torch.bincount(task.source.y).tolist() == [1000, 1000]
    assert torch.bincount(task.eval["target_test"].y).tolist() == [2991, 2954]  # -1 / +1


def test_amazon_counts_match_the_manifest(books_kitchen):
    # MANIFEST: books_train mean 92.2 nonzeros a row, max count 61; kitchen_test 62.9 and 36.
    for d, nnz, top in [(books_kitchen.source, 92.2, 61),
                        (books_kitchen.eval["target_test"], 62.9, 36)]:
        x = d.x
        assert float(x.min()) == 0.0 and torch.equal(x, x.round())
        assert float(x.max()) == top
        assert round(float((x > 0).sum(1).float().mean()), 1) == nnz


def test_amazon_parser_agrees_with_sklearn(books_kitchen):
    sk = pytest.importorskip("sklearn.datasets")
    rel = "amazon_reviews/books_train.svmlight.gz"
    xs, ys = sk.load_svmlight_file(str(DATA / rel), n_features=5000, zero_based=True)
    np.testing.assert_array_equal(books_kitchen.source.x.numpy(), xs.toarray().astype(np.float32))
    np.testing.assert_array_equal(books_kitchen.source.y.numpy(), (ys > 0).astype(np.int64))


def test_parse_svmlight_small_and_malformed():
    x, y = amazon_mod.parse_svmlight("1 0:2 3:1.5\n\n-1 4:7  # comment\n+1\n", n_features=5)
    np.testing.assert_array_equal(x, [[2, 0, 0, 1.5, 0], [0, 0, 0, 0, 7], [0, 0, 0, 0, 0]])
    assert y.tolist() == [1, 0, 1] and x.dtype == np.float32
    for bad, msg in [("2 0:1\n", "-1 or \\+1"), ("1 0:1 7\n", "pairs"), ("1 5:1\n", "indices"),
                     ("1 2:1 1:1\n", "increase"), ("x 0:1\n", "not a number"), ("\n", "no ex")]:
        with pytest.raises(DataError, match=msg):
            amazon_mod.parse_svmlight(bad, n_features=5, name="f.svmlight")


def test_amazon_transforms(books_kitchen):
    root = _need(*[f"amazon_reviews/{d}_{s}.svmlight.gz" for d in ("books", "kitchen")
                   for s in ("train", "test")])
    raw = books_kitchen.source.x
    binary = create_task("amazon", root=root, source="books", target="kitchen", transform="binary")
    assert torch.equal(binary.source.x, (raw > 0).float())
    logs = create_task("amazon", root=root, source="books", target="kitchen", transform="log1p")
    torch.testing.assert_close(logs.eval["target_test"].x,
                               torch.log1p(books_kitchen.eval["target_test"].x))


def test_amazon_unknown_domain_and_options():
    with pytest.raises(ConfigError, match="did you mean 'books'"):
        create_task("amazon", source="bookz")
    with pytest.raises(ConfigError, match="unknown domain 'music'"):
        create_task("amazon", target="music")
    with pytest.raises(ConfigError, match="'raw'"):
        create_task("amazon", features="bow")
    cfg = from_dict(amazon_mod.AmazonConfig, {"source": "e", "target": "D"})
    assert (cfg.source, cfg.target) == ("electronics", "dvd")


def test_amazon_corrupt_and_missing_files(tmp_path):
    rel = "amazon_reviews/books_train.svmlight.gz"
    with pytest.raises(DataError, match="missing data file") as e:
        create_task("amazon", root=tmp_path, source="books", target="dvd")
    assert "books_train.svmlight.gz" in str(e.value)
    _corrupt_copy(_need(rel) / rel, tmp_path / rel)
    with pytest.raises(DataError, match="corrupt") as e:
        create_task("amazon", root=tmp_path, source="books", target="dvd")
    msg = str(e.value)
    assert "books_train.svmlight.gz" in msg and amazon_mod.CHECKSUMS[rel] in msg
    assert "GRAAL-Research" in msg


# ------------------------------------------------------------------------- office_caltech
OFFICE_HIST = {"amazon": [92, 82, 94, 99, 100, 100, 99, 100, 94, 98],
               "caltech": [151, 110, 100, 138, 85, 128, 133, 94, 87, 97],
               "dslr": [12, 21, 12, 13, 10, 24, 22, 12, 8, 23],
               "webcam": [29, 21, 31, 27, 27, 30, 43, 30, 27, 30]}


@pytest.mark.parametrize("src, tgt", [("A", "W"), ("caltech", "dslr")])
def test_office_caltech_transductive_protocol(src, tgt):
    root = _need(office_mod.FILE)
    task = create_task("office_caltech", root=root, source=src, target=tgt)
    _check_common(task, 10, (800,))
    s, t = task.meta["source"], task.meta["target"]
    assert torch.bincount(task.source.y, minlength=10).tolist() == OFFICE_HIST[s]
    assert torch.bincount(task.eval["target_test"].y, minlength=10).tolist() == OFFICE_HIST[t]
    # fully transductive: the evaluation target is the (unlabelled) training target
    assert torch.equal(task.eval["target_test"].x, task.target.x)
    assert torch.equal(task.eval["source_test"].x, task.source.x)
    both = torch.cat([task.source.x, task.target.x]).double()
    assert both.mean(0).abs().max() < 1e-5
    assert (both.std(0) - 1).abs().max() < 1e-5


def test_office_caltech_normalisations():
    root = _need(office_mod.FILE)
    none = create_task("office_caltech", root=root, source="D", target="W", normalize="none")
    raw = _raw(office_mod.FILE)
    np.testing.assert_array_equal(none.source.x.numpy(), raw["x_dslr"])
    assert set(torch.unique(none.target.x).tolist()) == {-1.0, 1.0}  # binary word presence
    l1 = create_task("office_caltech", root=root, source="amazon", target="caltech",
                     normalize="l1")
    sums = torch.cat([l1.source.x, l1.target.x]).sum(1)
    assert float(l1.source.x.min()) >= 0
    # one image in each of amazon and caltech contains no visual word: its row stays zero
    assert int((sums == 0).sum()) == 2
    torch.testing.assert_close(sums[sums > 0], torch.ones(int((sums > 0).sum())))


def test_nearest_class_mean_check_tells_a_shared_vocabulary_from_per_domain_ones():
    g = torch.Generator().manual_seed(0)
    protos = torch.randn(4, 50, generator=g)

    def domain(n, shift):
        y = torch.arange(n) % 4
        return protos[y] + 0.8 * torch.randn(n, 50, generator=g) + shift, y

    shared = {"a": domain(200, 0.0), "b": domain(150, 0.3)}
    chk = office_mod.nearest_class_mean_check(shared)
    assert min(chk["in_domain"].values()) > 0.9
    assert min(chk["cross_domain"].values()) > 0.9
    assert chk["chance"] == pytest.approx((38 / 150 + 50 / 200) / 2)  # largest class share of each target
    # the same data with domain b's features permuted: a vocabulary of its own
    xb, yb = shared["b"]
    perm = torch.randperm(50, generator=g)
    own = {"a": shared["a"], "b": (xb[:, perm], yb)}
    chk2 = office_mod.nearest_class_mean_check(own)
    assert min(chk2["in_domain"].values()) > 0.9
    assert max(chk2["cross_domain"].values()) < 0.6
    with pytest.raises(ValueError, match="two domains"):
        office_mod.nearest_class_mean_check({"a": shared["a"]})


def test_office_caltech_vocabulary_check_on_the_staged_file():
    root = _need(office_mod.FILE)
    chk = office_mod.vocabulary_check(root)
    assert len(chk["cross_domain"]) == 12
    # measured: 0.50 to 0.72 inside a domain, 0.11 to 0.23 across (see the module docstring)
    assert min(chk["in_domain"].values()) > 0.45
    assert max(chk["cross_domain"].values()) < 0.3


def test_office_caltech_unknown_domain():
    with pytest.raises(ConfigError, match="did you mean 'webcam'"):
        create_task("office_caltech", target="webcm")
    with pytest.raises(ConfigError, match="unknown domain 'X'"):
        create_task("office_caltech", source="X")


def test_office_caltech_corrupt_and_missing_files(tmp_path):
    with pytest.raises(DataError, match="missing data file") as e:
        create_task("office_caltech", root=tmp_path)
    assert office_mod.FILE in str(e.value) and office_mod.SHA256 in str(e.value)
    (tmp_path / office_mod.FILE).write_bytes(b"not an npz at all")
    with pytest.raises(DataError, match="corrupt") as e:
        create_task("office_caltech", root=tmp_path)
    assert office_mod.FILE in str(e.value) and office_mod.SHA256 in str(e.value)
    assert "BUPT-GAMMA" in str(e.value)


# -------------------------------------------------------------------- office_caltech_surf
@pytest.mark.parametrize("pair, correct", [("D->W", 187), ("C->A", 227)])
def test_office_caltech_surf_source_only_1nn_reproduces_the_published_baseline(pair, correct):
    # JDA (Long et al., ICCV 2013) NN column: D->W 63.39 = 187 / 295, C->A 23.70 = 227 / 958
    root = _need(surf_mod.FILE)
    task = create_task("office_caltech_surf", root=root, source=pair[0], target=pair[-1])
    tgt = task.eval["target_test"]
    acc = surf_mod.nearest_neighbour_accuracy(task.source.x, task.source.y, tgt.x, tgt.y)
    assert round(acc * len(tgt.y)) == correct
    assert round(100 * acc, 2) == surf_mod.PUBLISHED_1NN[pair]
    # raw counts give another figure: the protocol is what reproduces it
    raw = create_task("office_caltech_surf", root=root, source=pair[0], target=pair[-1], normalize="none")
    assert round(100 * surf_mod.nearest_neighbour_accuracy(raw.source.x, raw.source.y, raw.target.x,
                                                           tgt.y), 2) != surf_mod.PUBLISHED_1NN[pair]


def test_office_caltech_surf_protocol_by_hand():
    root = _need(surf_mod.FILE)
    task = create_task("office_caltech_surf", root=root, source="amazon", target="webcam")
    _check_common(task, 10, (800,))
    assert torch.bincount(task.source.y, minlength=10).tolist() == OFFICE_HIST["amazon"]
    raw = _raw(surf_mod.FILE)
    for x, key in ((task.source.x, "x_amazon"), (task.target.x, "x_webcam")):
        r = raw[key].astype(np.float64)
        r = r / r.sum(1, keepdims=True)
        ref = (r - r.mean(0)) / r.std(0)  # within the domain, population std
        assert np.abs(x.numpy() - ref).max() < 1e-5
    pooled = create_task("office_caltech_surf", root=root, source="amazon", target="webcam",
                         normalize="l1_zscore_pooled")
    both = torch.cat([pooled.source.x, pooled.target.x]).double()
    assert both.mean(0).abs().max() < 1e-5 and (both.std(0, correction=0) - 1).abs().max() < 1e-4
    assert pooled.source.x.double().mean(0).abs().max() > 0.1  # the domains' shift is kept
    # same images in the same order as the BoVW file: the labels agree row by row
    assert np.array_equal(raw["y_dslr"], _raw(office_mod.FILE)["y_dslr"])


def test_office_caltech_surf_options_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'webcam'"):
        create_task("office_caltech_surf", target="webcm")
    with pytest.raises(ConfigError, match="normalize"):
        create_task("office_caltech_surf", normalize="zscore")
    with pytest.raises(DataError, match="missing data file") as e:
        create_task("office_caltech_surf", root=tmp_path)
    assert surf_mod.FILE in str(e.value) and surf_mod.SHA256 in str(e.value)
    assert "VisionLearningGroup/CORAL" in str(e.value)


def test_gfk_normalize_by_hand():
    x = torch.tensor([[1.0, 3.0, 0.0], [2.0, 2.0, 4.0]])
    l1 = surf_mod.gfk_normalize(x, "l1")
    assert torch.allclose(l1, torch.tensor([[0.25, 0.75, 0.0], [0.25, 0.25, 0.5]]))
    z = surf_mod.gfk_normalize(x)
    # column 0 is constant after l1 (0.25, 0.25): centred only; others are +-1
    assert torch.allclose(z, torch.tensor([[0.0, 1.0, -1.0], [0.0, -1.0, 1.0]]))


def test_root_given_as_a_copy_directory_works(tmp_path):
    # a data root elsewhere (e.g. --data-root) holding a verified copy of the file
    shutil.copy(_need(office_mod.FILE) / office_mod.FILE, tmp_path / office_mod.FILE)
    task = create_task("office_caltech", root=str(tmp_path), source="W", target="D")
    assert len(task.source) == 295 and len(task.target) == 157


@pytest.mark.slow
def test_amazon_msda_features_are_30000_d_and_cached(tmp_path, monkeypatch):
    if not DATA.is_dir():
        pytest.skip(f"no shared data at {DATA}")
    monkeypatch.setenv("GRADVERSARY_CACHE", str(tmp_path))
    task = create_task("amazon", root=DATA, source="books", target="kitchen", features="msda")
    assert task.source.x.shape == (2000, 30000)
    assert task.eval["target_test"].x.shape[1] == 30000
    assert torch.equal(task.source.x[:, :5000], create_task("amazon", root=DATA, source="books",
                                                            target="kitchen").source.x)
    assert len(list((tmp_path / "msda").glob("*.pt"))) == 1


def test_digits_loads_a_users_own_unstaged_files_unverified(tmp_path, caplog):
    rng = np.random.default_rng(0)
    for name in ("svhn", "syn_numbers"):
        np.savez(tmp_path / f"{name}.npz",
                 x_train=rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8),
                 y_train=rng.integers(0, 10, 20), x_test=rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8),
                 y_test=rng.integers(0, 10, 8))
    with caplog.at_level("WARNING"):
        task = create_task("digits", root=tmp_path, source="syn_numbers", target="svhn", size=32)
    assert task.source.x.shape == (20, 3, 32, 32) and task.eval["target_test"].x.shape == (8, 3, 32, 32)
    assert "unverified" in caplog.text
