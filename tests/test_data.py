"""cnnlib.data: the IDX parser, where the loaders look, downloads (faked), shapes, the photo.

No test touches the network: an autouse fixture replaces ``cnnlib.data._open_url`` with a fake
that refuses every URL unless a test serves files through it.
"""

import dataclasses
import gzip
import hashlib
import io
import struct
import urllib.error
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from cnnlib import data
from cnnlib.data import (
    SHAPE_CLASSES,
    CorruptFileError,
    DatasetNotFoundError,
    load_fashion_mnist,
    make_shapes,
    parse_idx,
    read_idx,
    sample_image,
)

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
NAMES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def idx_bytes(a: np.ndarray) -> bytes:
    """The IDX encoding of ``a``: 00 00, type code, ndim, big-endian sizes, big-endian values."""
    code = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C,
            np.float32: 0x0D, np.float64: 0x0E}[a.dtype.type]
    header = bytes([0, 0, code, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape)
    return header + a.astype(a.dtype.newbyteorder(">")).tobytes()


def tiny_split(n: int, label: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images whose pixel (0, 0) is 255 and the rest a ramp; every label equals ``label``."""
    images = np.tile(np.arange(28 * 28, dtype=np.uint8).reshape(28, 28) % 200, (n, 1, 1))
    images[:, 0, 0] = 255
    return images, np.full(n, label, dtype=np.uint8)


def write_split(directory: Path, split: str, n: int = 3, label: int = 1, gz: bool = True) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    images, labels = tiny_split(n, label)
    for name, a in zip(NAMES[split], (images, labels), strict=True):
        raw = idx_bytes(a)
        if gz:
            (directory / name).write_bytes(gzip.compress(raw))
        else:
            (directory / name.removesuffix(".gz")).write_bytes(raw)


class FakeNet:
    """Stands in for the network: serves ``files`` (URL → bytes), refuses everything else."""

    def __init__(self, files: dict[str, bytes] | None = None, fail_after: int | None = None):
        self.files, self.fail_after, self.requests = files or {}, fail_after, []

    def __call__(self, url: str, timeout: float = 30.0):
        self.requests.append(url)
        if url not in self.files:
            raise urllib.error.URLError("no network in tests")
        body = io.BytesIO(self.files[url])
        if self.fail_after is not None:
            limit = self.fail_after

            class Dropping(io.BytesIO):
                def read(self, size=-1):
                    if self.tell() >= limit:
                        raise ConnectionResetError("connection dropped")
                    return super().read(min(size, limit - self.tell()))

            body = Dropping(self.files[url])
        return body


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """No network, no $CNNLIB_DATA, a private cache, and a system directory we control."""
    net = FakeNet()
    monkeypatch.setattr(data, "_open_url", net)
    monkeypatch.delenv("CNNLIB_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    use_system_dir(monkeypatch, tmp_path / "system")
    return net


def use_system_dir(monkeypatch, directory: Path) -> None:
    """Make ``directory`` the one system-wide place the Fashion-MNIST loader looks in."""
    ds = dataclasses.replace(data._FASHION_MNIST, system_dirs=(str(directory),))
    monkeypatch.setattr(data, "_FASHION_MNIST", ds)


def serve(monkeypatch, split: str = "test", corrupt: bool = False) -> FakeNet:
    """Serve a tiny split from the first Fashion-MNIST mirror, with matching checksums."""
    images, labels = tiny_split(4, 7)
    blobs = {name: gzip.compress(idx_bytes(a))
             for name, a in zip(NAMES[split], (images, labels), strict=True)}
    sums = {name: hashlib.sha256(b).hexdigest() for name, b in blobs.items()}
    if corrupt:
        blobs = {name: b[:-1] + bytes([b[-1] ^ 1]) for name, b in blobs.items()}
    ds = dataclasses.replace(data._FASHION_MNIST, sha256=sums)
    monkeypatch.setattr(data, "_FASHION_MNIST", ds)
    net = FakeNet({ds.mirrors[0] + name: b for name, b in blobs.items()})
    monkeypatch.setattr(data, "_open_url", net)
    return net


def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache" / "cnnlib" / "fashion-mnist"


# --------------------------------------------------------------------------- IDX parser


def test_parse_idx_hand_made_bytes():
    # 2×3 uint8: magic 00 00 08 02, sizes 2 and 3, then the six values
    raw = bytes([0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 3, 4, 5, 255])
    a = parse_idx(raw)
    assert a.dtype == np.uint8
    assert_array_equal(a, [[1, 2, 3], [4, 5, 255]])


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_parse_idx_round_trips_every_type(dtype):
    a = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    b = parse_idx(idx_bytes(a))
    assert b.dtype == np.dtype(dtype) and b.dtype.isnative
    assert_array_equal(b, a)


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (b"\x01\x00\x08\x01\x00\x00\x00\x01\x05", "not an IDX file"),
        (b"\x00\x00\x07\x01\x00\x00\x00\x01\x05", "unknown IDX type code 0x07"),
        (b"\x00\x00\x08\x02\x00\x00\x00\x01", "ends inside its IDX header"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x03\x05", "should hold 11 bytes .* holds 9"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x01\x05\x06", "should hold 9 bytes .* holds 10"),
    ],
)
def test_parse_idx_rejects_bad_bytes(raw, match):
    with pytest.raises(CorruptFileError, match=match):
        parse_idx(raw, "demo.idx")


def test_read_idx_reads_gzip_and_plain_files(tmp_path):
    a = np.arange(12, dtype=np.uint8).reshape(3, 4)
    (tmp_path / "a.gz").write_bytes(gzip.compress(idx_bytes(a)))
    (tmp_path / "a").write_bytes(idx_bytes(a))
    assert_array_equal(read_idx(tmp_path / "a.gz"), a)
    assert_array_equal(read_idx(tmp_path / "a"), a)


@pytest.mark.parametrize("limit", [0, 1, 2, 3, 7])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_read_idx_limit_keeps_the_first_items(tmp_path, limit, dtype):
    a = (np.arange(3 * 5 * 4) * 7 % 251).astype(dtype).reshape(3, 5, 4)
    (tmp_path / "a.gz").write_bytes(gzip.compress(idx_bytes(a)))
    (tmp_path / "a").write_bytes(idx_bytes(a))
    for name in ("a.gz", "a"):
        b = read_idx(tmp_path / name, limit=limit)
        assert b.shape == a[:limit].shape and b.dtype == a.dtype and b.flags.writeable
        assert_array_equal(b, a[:limit])


def test_read_idx_limit_decompresses_only_what_it_needs(tmp_path, monkeypatch):
    # 2000 random images compress badly: the first 10 lie in the first few kB of the file
    a = np.random.default_rng(0).integers(0, 256, (2000, 28, 28), dtype=np.uint8)
    blob = gzip.compress(idx_bytes(a))
    (tmp_path / "a.gz").write_bytes(blob[: len(blob) // 10])  # the rest is missing
    assert_array_equal(read_idx(tmp_path / "a.gz", limit=10), a[:10])
    with pytest.raises(CorruptFileError, match=r"a\.gz is truncated or corrupt"):
        read_idx(tmp_path / "a.gz", limit=1000)  # the cut comes before image 1000


def test_loader_limit_equals_the_first_samples(tmp_path):
    write_split(tmp_path / "system", "train", n=5, label=6)
    x, y = load_fashion_mnist("train")
    x3, y3 = load_fashion_mnist("train", limit=3)
    assert x3.shape == (3, 1, 28, 28) and x3.dtype == np.float32 and y3.dtype == np.int64
    assert_array_equal(x3, x[:3])
    assert_array_equal(y3, y[:3])
    with pytest.raises(ValueError, match="limit"):
        load_fashion_mnist("train", limit=-1)


def test_truncated_gzip_names_the_file_and_the_fix(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    blob = gzip.compress(idx_bytes(np.zeros((5, 28, 28), np.uint8)))
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(CorruptFileError, match=r"train-images-idx3-ubyte\.gz is truncated.*Delete"):
        read_idx(path)


def test_flipped_byte_fails_the_gzip_crc(tmp_path):
    path = tmp_path / "labels.gz"
    blob = bytearray(gzip.compress(idx_bytes(np.arange(100, dtype=np.uint8))))
    blob[-8] ^= 0xFF  # the stored CRC-32 no longer matches the data
    path.write_bytes(bytes(blob))
    with pytest.raises(CorruptFileError, match=r"labels\.gz is truncated or corrupt"):
        read_idx(path)


# --------------------------------------------------------------------------- search order


def test_loader_converts_to_float_nchw_and_int64_labels(tmp_path):
    write_split(tmp_path / "system", "train", n=3, label=4)
    x, y = load_fashion_mnist("train")
    assert x.shape == (3, 1, 28, 28) and x.dtype == np.float32
    assert y.shape == (3,) and y.dtype == np.int64
    assert_array_equal(y, [4, 4, 4])
    assert x[0, 0, 0, 0] == 1.0  # 255 → 1
    assert_allclose(x[0, 0, 0, 1:4], np.array([1, 2, 3]) / 255, rtol=1e-6)
    assert 0.0 <= x.min() and x.max() <= 1.0


def test_search_order_env_then_cache_then_system(tmp_path, monkeypatch):
    write_split(tmp_path / "env" / "fashion-mnist", "test", label=1)
    write_split(cache(tmp_path), "test", label=2)
    write_split(tmp_path / "system", "test", label=3)
    monkeypatch.setenv("CNNLIB_DATA", str(tmp_path / "env"))
    assert load_fashion_mnist("test")[1][0] == 1
    monkeypatch.delenv("CNNLIB_DATA")
    assert load_fashion_mnist("test")[1][0] == 2
    for f in cache(tmp_path).iterdir():
        f.unlink()
    assert load_fashion_mnist("test")[1][0] == 3


def test_mnist_has_its_own_directory(tmp_path, monkeypatch):
    write_split(tmp_path / "env" / "fashion-mnist", "train", label=1)
    write_split(tmp_path / "env" / "mnist", "train", label=8)
    monkeypatch.setenv("CNNLIB_DATA", str(tmp_path / "env"))
    assert data.load_mnist("train")[1][0] == 8
    assert load_fashion_mnist("train")[1][0] == 1


@pytest.mark.parametrize("kind", ["missing", "file"])
def test_a_cnnlib_data_path_that_is_not_a_folder_is_named_in_a_warning(tmp_path, monkeypatch,
                                                                       kind):
    target = tmp_path / "typo"
    if kind == "file":
        target.write_text("not a folder")
    write_split(tmp_path / "system", "test", label=3)
    monkeypatch.setenv("CNNLIB_DATA", str(target))
    with pytest.warns(UserWarning, match=f"CNNLIB_DATA={target} is"):
        assert load_fashion_mnist("test")[1][0] == 3


def test_uncompressed_files_are_found(tmp_path):
    write_split(tmp_path / "system", "test", label=5, gz=False)
    assert load_fashion_mnist("test")[1][0] == 5


def test_a_directory_with_only_half_the_files_is_skipped(tmp_path, monkeypatch):
    write_split(tmp_path / "env" / "fashion-mnist", "test", label=1)
    (tmp_path / "env" / "fashion-mnist" / NAMES["test"][1]).unlink()
    write_split(tmp_path / "system", "test", label=3)
    monkeypatch.setenv("CNNLIB_DATA", str(tmp_path / "env"))
    assert load_fashion_mnist("test")[1][0] == 3


def test_cache_dir_defaults_to_dot_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert data.cache_dir() == tmp_path / ".cache" / "cnnlib"


def test_corrupt_local_file_is_reported_not_skipped(tmp_path):
    write_split(tmp_path / "system", "test")
    path = tmp_path / "system" / NAMES["test"][0]
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(CorruptFileError, match=str(path)) as info:
        load_fashion_mnist("test")
    assert "apt install --reinstall dataset-fashion-mnist" in str(info.value)


def test_corrupt_cache_file_says_delete_and_reload(tmp_path):
    write_split(cache(tmp_path), "test")
    path = cache(tmp_path) / NAMES["test"][1]
    path.write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(CorruptFileError, match="Delete it and load again") as info:
        load_fashion_mnist("test")
    assert str(path) in str(info.value) and "apt" not in str(info.value)


def test_mismatched_label_count_is_reported(tmp_path):
    write_split(tmp_path / "system", "test", n=3)
    (tmp_path / "system" / NAMES["test"][1]).write_bytes(
        gzip.compress(idx_bytes(np.zeros(2, np.uint8)))
    )
    with pytest.raises(CorruptFileError, match="expected 3 labels"):
        load_fashion_mnist("test")


def test_images_of_the_wrong_size_are_reported(tmp_path):
    write_split(tmp_path / "system", "test", n=3)
    (tmp_path / "system" / NAMES["test"][0]).write_bytes(
        gzip.compress(idx_bytes(np.zeros((3, 32, 32), np.uint8)))
    )
    with pytest.raises(CorruptFileError, match=r"not \(N, 28, 28\) uint8 images"):
        load_fashion_mnist("test")


def test_unknown_split_is_refused():
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        load_fashion_mnist("validation")


# --------------------------------------------------------------------------- downloads (faked)


def test_offline_without_a_copy_says_how_to_get_the_data(offline):
    with pytest.raises(DatasetNotFoundError) as info:
        load_fashion_mnist("test")
    message = str(info.value)
    assert "apt install dataset-fashion-mnist" in message
    assert "CNNLIB_DATA" in message
    assert "fashion-mnist.s3-website" in message  # where to download by hand
    assert "no network in tests" in message
    assert offline.requests, "the loader should have tried to download"


def test_download_false_never_touches_the_network(offline):
    with pytest.raises(DatasetNotFoundError, match="downloading is switched off"):
        load_fashion_mnist("test", download=False)
    assert offline.requests == []


def test_download_verifies_and_fills_the_cache(monkeypatch, tmp_path):
    net = serve(monkeypatch)
    x, y = load_fashion_mnist("test", progress=False)
    assert x.shape == (4, 1, 28, 28) and (y == 7).all()
    assert sorted(p.name for p in cache(tmp_path).iterdir()) == sorted(NAMES["test"])
    net.requests.clear()
    load_fashion_mnist("test", progress=False)
    assert net.requests == [], "the second load must come from the cache"


def test_checksum_mismatch_leaves_nothing_in_the_cache(monkeypatch, tmp_path):
    serve(monkeypatch, corrupt=True)
    with pytest.raises(DatasetNotFoundError, match="SHA-256"):
        load_fashion_mnist("test", progress=False)
    leftovers = list(cache(tmp_path).iterdir()) if cache(tmp_path).exists() else []
    assert leftovers == []


def test_dropped_connection_leaves_no_half_written_file(monkeypatch, tmp_path):
    net = serve(monkeypatch)
    net.fail_after = 10
    with pytest.raises(DatasetNotFoundError, match="connection dropped"):
        load_fashion_mnist("test", progress=False)
    assert list(cache(tmp_path).iterdir()) == []


def test_second_mirror_is_tried_when_the_first_fails(monkeypatch, tmp_path):
    net = serve(monkeypatch)
    ds = data._FASHION_MNIST
    net.files = {url.replace(ds.mirrors[0], ds.mirrors[1]): b for url, b in net.files.items()}
    x, _ = load_fashion_mnist("test", progress=False)
    assert x.shape[0] == 4
    assert any(url.startswith(ds.mirrors[0]) for url in net.requests)


def test_download_prefers_files_already_in_the_cache(monkeypatch, tmp_path):
    net = serve(monkeypatch)
    images, _ = tiny_split(4, 0)
    cache(tmp_path).mkdir(parents=True)
    (cache(tmp_path) / NAMES["test"][0]).write_bytes(gzip.compress(idx_bytes(images)))
    load_fashion_mnist("test", progress=False)
    assert [url.rsplit("/", 1)[1] for url in net.requests] == [NAMES["test"][1]]


def test_published_checksums_look_like_sha256():
    for ds in (data._FASHION_MNIST, data._MNIST):
        assert sorted(ds.sha256) == sorted(NAMES["train"] + NAMES["test"])
        assert all(len(h) == 64 and int(h, 16) >= 0 for h in ds.sha256.values())


# --------------------------------------------------------------------------- the real files


@pytest.mark.skipif(not (DEBIAN_DIR / NAMES["test"][0]).exists(),
                    reason="Fashion-MNIST is not installed (apt install dataset-fashion-mnist)")
def test_real_fashion_mnist_test_split(monkeypatch):
    use_system_dir(monkeypatch, DEBIAN_DIR)
    x, y = load_fashion_mnist("test", download=False)
    assert x.shape == (10000, 1, 28, 28) and x.dtype == np.float32
    assert_array_equal(np.bincount(y), np.full(10, 1000))
    assert x.min() == 0.0 and x.max() == 1.0
    assert 0.2 < x.mean() < 0.4  # mostly black backgrounds, brighter clothes


# --------------------------------------------------------------------------- shapes


def test_make_shapes_shapes_dtypes_and_range():
    x, y = make_shapes(200, size=24, seed=3)
    assert x.shape == (200, 3, 24, 24) and x.dtype == np.float32
    assert y.shape == (200,) and y.dtype == np.int64
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert set(np.unique(y)) == set(range(len(SHAPE_CLASSES)))


def test_make_shapes_is_deterministic_per_seed():
    a, la = make_shapes(50, seed=1)
    b, lb = make_shapes(50, seed=1)
    c, _ = make_shapes(50, seed=2)
    assert_array_equal(a, b)
    assert_array_equal(la, lb)
    assert not np.array_equal(a, c)


def test_every_image_shows_a_shape_of_plausible_area():
    x, y = make_shapes(300, size=32, seed=0)
    # the shape is at least 0.15 brighter than the background in some channel (noise σ = 0.04)
    background = np.median(x[:, :, :2, :2].reshape(300, 3, -1), axis=2)
    fg = (np.abs(x - background[:, :, None, None]) > 0.15).any(axis=1)
    area = fg.mean(axis=(1, 2))
    assert (area > 0.02).all() and (area < 0.6).all()
    # the cross and the ring cover less of their box than the square does
    assert area[y == 1].mean() > area[y == 3].mean()
    assert area[y == 0].mean() > area[y == 4].mean()


def test_shape_positions_vary():
    x, _ = make_shapes(200, seed=0)
    background = np.median(x[:, :, :2, :2].reshape(200, 3, -1), axis=2)
    fg = (np.abs(x - background[:, :, None, None]) > 0.15).any(axis=1)  # (200, 32, 32)
    grid = np.arange(32)
    rows = (fg.sum(axis=2) * grid).sum(axis=1) / fg.sum(axis=(1, 2))
    cols = (fg.sum(axis=1) * grid).sum(axis=1) / fg.sum(axis=(1, 2))
    for centre in (rows, cols):  # centres spread over the image, not stuck in the middle
        assert centre.max() - centre.min() > 12 and centre.std() > 3


def test_make_shapes_refuses_bad_arguments():
    with pytest.raises(ValueError, match="n must be at least 1"):
        make_shapes(0)
    with pytest.raises(TypeError, match="size must be an integer"):
        make_shapes(3, size=32.0)


# --------------------------------------------------------------------------- photo


def test_sample_image_layouts():
    rgb = sample_image()
    assert rgb.shape == (600, 512, 3) and rgb.dtype == np.float32
    assert 0.0 <= rgb.min() and rgb.max() <= 1.0 and rgb.std() > 0.1
    gray = sample_image(gray=True)
    assert gray.shape == (600, 512)
    assert_allclose(gray, rgb @ np.array([0.299, 0.587, 0.114], np.float32), atol=1e-6)
    small = sample_image(size=64)
    assert small.shape == (64, 55, 3)
    assert abs(float(small.mean()) - float(rgb.mean())) < 0.02
