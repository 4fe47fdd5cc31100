"""Tests for lightning_segqa.data: synthetic scenes, tensor/folder datasets, class names."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from lightning_segqa.data import (
    FolderSegmentationDataset,
    TensorSegmentationDataset,
    load_class_names,
    write_folder_dataset,
)
from lightning_segqa.experiments.synthetic import STREET_CLASSES, STREET_PALETTE, UNLABELED_INDEX, make_street_scenes

CAMVID = Path(__file__).resolve().parents[1].parent / "shared/data/camvid"
K = len(STREET_CLASSES)


@pytest.fixture(scope="module")
def scenes() -> tuple[torch.Tensor, torch.Tensor]:
    return make_street_scenes(24, seed=5)


# ---------------------------------------------------------------- synthetic scenes


def test_constants() -> None:
    assert STREET_CLASSES[-1] == "unlabeled" and UNLABELED_INDEX == K - 1 == 8
    assert STREET_PALETTE.shape == (K, 3) and STREET_PALETTE.dtype == torch.uint8
    assert len({tuple(c) for c in STREET_PALETTE.tolist()}) == K  # distinct colours


def test_scenes_shapes_dtypes_ranges(scenes: tuple[torch.Tensor, torch.Tensor]) -> None:
    images, masks = scenes
    assert images.shape == (24, 3, 96, 128) and images.dtype == torch.float32
    assert masks.shape == (24, 96, 128) and masks.dtype == torch.int64
    assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0
    assert int(masks.min()) >= 0 and int(masks.max()) < K
    images, masks = make_street_scenes(3, height=40, width=30, seed=1)
    assert images.shape == (3, 3, 40, 30) and masks.shape == (3, 40, 30)
    assert make_street_scenes(0)[1].shape == (0, 96, 128)


def test_scenes_deterministic_by_seed() -> None:
    a, b, c = (make_street_scenes(4, 48, 64, seed=s) for s in (3, 3, 4))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1]) and not torch.equal(a[0], c[0])


def test_every_class_appears_and_layout(scenes: tuple[torch.Tensor, torch.Tensor]) -> None:
    _, masks = scenes
    assert STREET_CLASSES[:5] == ("sky", "building", "road", "pavement", "tree")
    counts = torch.bincount(masks.flatten(), minlength=K)
    assert bool((counts > 0).all()), dict(zip(STREET_CLASSES, counts.tolist(), strict=True))
    share = counts.float() / masks.numel()
    assert 0.0 < float(share[UNLABELED_INDEX]) < 0.05  # a little, learnable unlabeled clutter
    top, bottom = masks[:, 0].unique().tolist(), masks[:, -1].unique().tolist()
    sky, building, road, tree = 0, 1, 2, 4
    assert set(top) <= {sky, building, tree}  # sky on top (behind buildings and trees)
    assert not {sky, building, tree} & set(bottom) and road in bottom


def test_colour_correlates_with_class_but_does_not_determine_it(
    scenes: tuple[torch.Tensor, torch.Tensor],
) -> None:
    images, masks = scenes
    pixels = images.permute(0, 2, 3, 1).reshape(-1, 3).numpy().astype(np.float64)
    labels = masks.flatten().numpy()
    means = np.stack([pixels[labels == k].mean(0) for k in range(K)])
    dists = np.linalg.norm(means[:, None] - means[None], axis=-1) + np.eye(K)
    assert dists.min() > 0.05  # every class has its own mean colour
    sky_mean = means[STREET_CLASSES.index("sky")]
    assert sky_mean[2] > sky_mean[0]  # sky is blue-ish
    nearest = np.argmin(((pixels[:, None] - means[None]) ** 2).sum(-1), axis=1)
    accuracy = (nearest == labels).mean()
    assert 0.5 < accuracy < 0.95  # informative, but a model must use shape/texture too


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [({"num_images": -1}, ValueError), ({"num_images": 2.0}, TypeError),
     ({"height": 8}, ValueError), ({"width": True}, TypeError), ({"seed": "0"}, TypeError)],
)  # fmt: skip
def test_scenes_bad_arguments(kwargs: dict, error: type) -> None:
    with pytest.raises(error, match=next(iter(kwargs))):
        make_street_scenes(**{"num_images": 2, **kwargs})


# ---------------------------------------------------------------- tensor dataset


def test_tensor_dataset_items_and_collation(scenes: tuple[torch.Tensor, torch.Tensor]) -> None:
    images, masks = scenes
    flags = torch.arange(24) % 3 == 0
    ds = TensorSegmentationDataset(images, masks.int(), flags)
    assert len(ds) == 24
    item = ds[4]
    assert torch.equal(item["image"], images[4]) and torch.equal(item["mask"], masks[4])
    assert item["mask"].dtype == torch.int64 and item["index"].dtype == torch.int64
    assert int(item["index"]) == 4 and item["index"].ndim == 0
    assert item["is_mislabeled"].dtype == torch.bool and not bool(item["is_mislabeled"])
    assert int(ds[-1]["index"]) == 23
    batch = next(iter(DataLoader(ds, batch_size=6, shuffle=False)))
    assert batch["image"].shape == (6, 3, 96, 128) and batch["index"].tolist() == list(range(6))
    assert torch.equal(batch["is_mislabeled"], flags[:6])
    assert "is_mislabeled" not in TensorSegmentationDataset(images, masks)[0]
    with pytest.raises(IndexError):
        ds[24]


def test_tensor_dataset_errors(scenes: tuple[torch.Tensor, torch.Tensor]) -> None:
    images, masks = scenes
    with pytest.raises(TypeError, match="images"):
        TensorSegmentationDataset(images.to(torch.uint8), masks)
    with pytest.raises(TypeError, match="masks"):
        TensorSegmentationDataset(images, masks.float())
    with pytest.raises(ValueError, match="masks"):
        TensorSegmentationDataset(images, masks[:, :, :-1])
    with pytest.raises(ValueError, match="is_mislabeled"):
        TensorSegmentationDataset(images, masks, torch.zeros(3, dtype=torch.bool))


# ---------------------------------------------------------------- folder dataset


def test_folder_round_trip(tmp_path: Path) -> None:
    images, masks = make_street_scenes(5, 32, 40, seed=2)
    names = ["frame_b", "frame_a", "frame_c", "frame_e", "frame_d"]
    image_dir, mask_dir = write_folder_dataset(tmp_path, images, masks, names=names)
    ds = FolderSegmentationDataset(image_dir, mask_dir, num_classes=K)
    assert ds.names == sorted(names) and len(ds) == 5
    for i, name in enumerate(ds.names):
        item = ds[i]
        j = names.index(name)
        assert item["name"] == name and int(item["index"]) == i
        assert item["image"].dtype == torch.float32 and item["image"].shape == (3, 32, 40)
        expected = np.round(images[j].numpy() * 255) / 255  # 8-bit PNG quantisation
        np.testing.assert_allclose(item["image"].numpy(), expected, atol=1e-6)
        assert item["mask"].dtype == torch.int64 and torch.equal(item["mask"], masks[j])
    raw = np.asarray(Image.open(mask_dir / "frame_a.png"))  # written as class ids, not colours
    assert raw.ndim == 2 and np.array_equal(raw, masks[1].numpy())


def test_folder_resize(tmp_path: Path) -> None:
    small = torch.randint(0, 4, (2, 5, 6))
    masks = small.repeat_interleave(2, 1).repeat_interleave(2, 2)  # 2x2 blocks
    images = torch.full((2, 3, 10, 12), 0.4)
    ds = FolderSegmentationDataset(*write_folder_dataset(tmp_path, images, masks), 4, size=(5, 6))
    item = ds[1]
    assert item["image"].shape == (3, 5, 6) and item["mask"].shape == (5, 6)
    assert torch.equal(item["mask"], small[1])  # nearest keeps the block ids
    np.testing.assert_allclose(item["image"].numpy(), round(0.4 * 255) / 255, atol=1e-6)


def _write(path: Path, array: np.ndarray) -> None:
    Image.fromarray(array).save(path)


def _folders(tmp_path: Path) -> tuple[Path, Path]:
    image_dir, mask_dir = tmp_path / "images", tmp_path / "masks"
    image_dir.mkdir()
    mask_dir.mkdir()
    _write(image_dir / "ok.png", np.zeros((8, 10, 3), np.uint8))
    _write(mask_dir / "ok.png", np.zeros((8, 10), np.uint8))
    return image_dir, mask_dir


@pytest.mark.parametrize(
    ("setup", "match"),
    [
        (lambda i, m: _write(i / "lonely.jpg", np.zeros((8, 10, 3), np.uint8)),
         r"image lonely\.jpg has no mask"),
        (lambda i, m: _write(m / "orphan.png", np.zeros((8, 10), np.uint8)),
         r"mask orphan\.png has no image"),
        (lambda i, m: (_write(i / "big.png", np.zeros((9, 10, 3), np.uint8)),
                       _write(m / "big.png", np.zeros((8, 10), np.uint8))),
         r"size mismatch for 'big'.*10x9.*10x8"),
        (lambda i, m: (_write(i / "bad.png", np.zeros((8, 10, 3), np.uint8)),
                       _write(m / "bad.png", np.full((8, 10), 7, np.uint8))),
         r"mask bad\.png has class ids \[7\] outside 0\.\.4"),
        (lambda i, m: (_write(i / "rgb.png", np.zeros((8, 10, 3), np.uint8)),
                       _write(m / "rgb.png", np.zeros((8, 10, 3), np.uint8))),
         r"mask rgb\.png is RGB, not one channel"),
        (lambda i, m: (_write(i / "dup.png", np.zeros((8, 10, 3), np.uint8)),
                       _write(i / "dup.bmp", np.zeros((8, 10, 3), np.uint8))),
         r"duplicate stem: dup\.bmp and dup\.png"),
    ],
)  # fmt: skip
def test_folder_problems_name_the_file(tmp_path: Path, setup: object, match: str) -> None:
    image_dir, mask_dir = _folders(tmp_path)
    setup(image_dir, mask_dir)  # type: ignore[operator]
    with pytest.raises(ValueError, match=match):
        FolderSegmentationDataset(image_dir, mask_dir, num_classes=5)


def test_folder_ignore_index_and_ignored_files(tmp_path: Path) -> None:
    image_dir, mask_dir = _folders(tmp_path)
    mask = np.zeros((8, 10), np.uint8)
    mask[:2] = 255
    _write(mask_dir / "ok.png", mask)
    (image_dir / "notes.txt").write_text("not an image")
    (mask_dir / ".hidden.png").write_bytes(b"")
    ds = FolderSegmentationDataset(str(image_dir), str(mask_dir), 3, ignore_index=255)
    assert ds.names == ["ok"] and int(ds[0]["mask"].max()) == 255
    with pytest.raises(ValueError, match=r"\[255\] outside 0\.\.2"):
        FolderSegmentationDataset(image_dir, mask_dir, 3)


def test_folder_lists_at_most_ten_problems(tmp_path: Path) -> None:
    image_dir, mask_dir = _folders(tmp_path)
    for k in range(13):
        _write(mask_dir / f"orphan{k:02d}.png", np.zeros((8, 10), np.uint8))
    with pytest.raises(ValueError, match=r"orphan09\.png has no image\n  \.\.\. and 3 more$") as e:
        FolderSegmentationDataset(image_dir, mask_dir, 5)
    assert "orphan10" not in str(e.value) and str(mask_dir) in str(e.value)


def test_folder_missing_and_empty(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "masks").mkdir()
    with pytest.raises(ValueError, match=r"images_dir.*not an existing folder.*nowhere"):
        FolderSegmentationDataset(tmp_path / "nowhere", tmp_path / "masks", 3)
    with pytest.raises(ValueError, match=r"masks_dir.*not an existing folder"):
        FolderSegmentationDataset(tmp_path / "empty", tmp_path / "nomasks", 3)
    with pytest.raises(ValueError, match=r"no images .* in .*empty"):
        FolderSegmentationDataset(tmp_path / "empty", tmp_path / "masks", 3)
    with pytest.raises(ValueError, match="size"):
        FolderSegmentationDataset(tmp_path / "empty", tmp_path / "masks", 3, size=(0, 4))


def test_folder_jpeg_mask_warns(tmp_path: Path) -> None:
    image_dir, mask_dir = _folders(tmp_path)
    _write(image_dir / "photo.png", np.zeros((8, 10, 3), np.uint8))
    _write(mask_dir / "photo.jpg", np.zeros((8, 10), np.uint8))
    with pytest.warns(UserWarning, match=r"photo\.jpg.*lossy"):
        ds = FolderSegmentationDataset(image_dir, mask_dir, 5)
    assert ds.names == ["ok", "photo"]


def test_write_folder_dataset_16bit_and_errors(tmp_path: Path) -> None:
    images = torch.rand(1, 3, 4, 5)
    masks = torch.full((1, 4, 5), 300)
    _, mask_dir = write_folder_dataset(tmp_path, images, masks)
    assert np.asarray(Image.open(mask_dir / "00000.png")).max() == 300
    ds = FolderSegmentationDataset(tmp_path / "images", mask_dir, 301)
    assert int(ds[0]["mask"][0, 0]) == 300
    with pytest.raises(ValueError, match="names"):
        write_folder_dataset(tmp_path, images, masks, names=["a", "b"])
    with pytest.raises(ValueError, match="0..65535"):
        write_folder_dataset(tmp_path, images, masks - 301)


# ---------------------------------------------------------------- class names


def test_load_class_names(tmp_path: Path) -> None:
    txt = tmp_path / "names.txt"
    txt.write_text("sky\n\n  road \nbuilding\n\n")
    assert load_class_names(txt) == ["sky", "road", "building"]
    js = tmp_path / "names.json"
    js.write_text(json.dumps(list(STREET_CLASSES)))
    assert load_class_names(str(js)) == list(STREET_CLASSES)


@pytest.mark.parametrize(
    ("content", "match"),
    [("", "no class names"), ("[1, 2]", "non-empty strings"), ('["a", ', "invalid JSON"),
     ('{"a": 0}', "expected a JSON list"), ("a\nb\na\n", r"duplicate class names \['a'\]")],
)  # fmt: skip
def test_load_class_names_errors(tmp_path: Path, content: str, match: str) -> None:
    path = tmp_path / "names.txt"
    path.write_text(content)
    with pytest.raises(ValueError, match=match):
        load_class_names(path)
    with pytest.raises(FileNotFoundError, match="missing"):
        load_class_names(tmp_path / "missing.txt")


# ---------------------------------------------------------------- CamVid (real data)


@pytest.mark.camvid
def test_camvid_train_loads() -> None:
    if not (CAMVID / "train").is_dir():
        pytest.skip(f"CamVid not found at {CAMVID} (../shared/data/camvid beside the repo)")
    ds = FolderSegmentationDataset(CAMVID / "train/images", CAMVID / "train/masks", num_classes=12)
    assert len(ds) == 367
    for i in (0, 200, 366):
        item = ds[i]
        assert item["image"].shape == (3, 192, 256) and item["image"].dtype == torch.float32
        assert item["mask"].shape == (192, 256) and int(item["mask"].max()) < 12
        assert float(item["image"].min()) >= 0.0 and float(item["image"].max()) <= 1.0


def test_folder_max_class_id_leaves_ignore_index_out(tmp_path: Path) -> None:
    image_dir, mask_dir = _folders(tmp_path)
    masks = {"a": [0, 3], "b": [1, 255], "c": [2, 2]}
    for name, ids in masks.items():
        mask = np.full((8, 10), ids[0], np.uint8)
        mask[:3] = ids[1]
        _write(mask_dir / f"{name}.png", mask)
        _write(image_dir / f"{name}.png", np.zeros((8, 10, 3), np.uint8))
    ds = FolderSegmentationDataset(image_dir, mask_dir, 6, ignore_index=255)
    reference = max(i for ids in masks.values() for i in ids if i != 255)
    assert ds.max_class_id == reference == 3
    only_ignored = tmp_path / "ignored"
    (only_ignored / "images").mkdir(parents=True)
    (only_ignored / "masks").mkdir()
    _write(only_ignored / "masks" / "z.png", np.full((8, 10), 255, np.uint8))
    Image.fromarray(np.zeros((8, 10, 3), np.uint8)).save(only_ignored / "images" / "z.png")
    assert FolderSegmentationDataset(only_ignored / "images", only_ignored / "masks", 3, 255).max_class_id is None


def test_tensor_dataset_names_reach_the_items_and_bad_names_are_named():
    images, masks = torch.rand(2, 3, 4, 4), torch.zeros(2, 4, 4, dtype=torch.long)
    ds = TensorSegmentationDataset(images, masks, names=["left", "right"])
    assert [ds[i]["name"] for i in range(2)] == ["left", "right"] and "name" not in TensorSegmentationDataset(
        images, masks
    )[0]
    for bad in ("ab", ["only one"], [1, 2]):
        with pytest.raises(ValueError, match="`names` must be a sequence of 2 strings"):
            TensorSegmentationDataset(images, masks, names=bad)
