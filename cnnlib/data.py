"""Datasets for the course: Fashion-MNIST / MNIST from IDX files, synthetic shapes, a photograph.

``load_fashion_mnist`` and ``load_mnist`` look for the four IDX files in, in this order,
``$CNNLIB_DATA/<dataset>/``, the user cache ``~/.cache/cnnlib/<dataset>/`` (``$XDG_CACHE_HOME``
is honoured) and, for Fashion-MNIST, ``/usr/share/datasets/fashion-mnist`` (Debian's
``dataset-fashion-mnist``). Missing files are downloaded into the cache and checked against a
SHA-256 before they are renamed into place, so the cache never holds a half-written file.
``make_shapes`` draws an offline dataset of coloured shapes; ``sample_image`` returns the
photograph that ships with matplotlib. Notebook 06 (``06_full_pipeline.ipynb``) uses all three.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import sys
import tempfile
import urllib.request
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from tqdm.auto import tqdm

from ._check import as_int
from ._malloc import without_huge_page_advice

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
MNIST_CLASSES = tuple(str(d) for d in range(10))
SHAPE_CLASSES = ("circle", "square", "triangle", "cross", "ring")

DATA_ENV = "CNNLIB_DATA"


class DatasetNotFoundError(FileNotFoundError):
    """No copy of a dataset anywhere, and it could not be downloaded."""


class CorruptFileError(ValueError):
    """A dataset file is truncated, corrupt, or does not match its published checksum."""


@dataclass(frozen=True)
class _Dataset:
    name: str
    mirrors: tuple[str, ...]  # base URLs, tried in order
    sha256: dict[str, str]  # gzip file name -> SHA-256 of the file as published
    system_dirs: tuple[str, ...]
    apt_package: str | None


# SHA-256 of the gzip files as served by the mirrors below, from TensorFlow Datasets' checksum
# files (github.com/tensorflow/datasets: tensorflow_datasets/url_checksums/fashion_mnist.txt and
# mnist.txt). Debian re-packed its Fashion-MNIST copies (a new gzip header without the original
# file name: each file is exactly len(name) + 1 bytes shorter), so their SHA-256 (and the MD5s in
# Zalando's README) cannot match them. Local copies are therefore checked by structure (gzip
# CRC-32, IDX header, sizes) and every download by SHA-256 before it enters the cache.
_FASHION_MNIST = _Dataset(
    name="fashion-mnist",
    mirrors=(
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
    ),
    sha256={
        "train-images-idx3-ubyte.gz": (
            "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"
        ),
        "train-labels-idx1-ubyte.gz": (
            "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"
        ),
        "t10k-images-idx3-ubyte.gz": (
            "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"
        ),
        "t10k-labels-idx1-ubyte.gz": (
            "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"
        ),
    },
    system_dirs=("/usr/share/datasets/fashion-mnist",),
    apt_package="dataset-fashion-mnist",
)
# yann.lecun.com often refuses downloads now; the mirrors used by TensorFlow Datasets and
# torchvision serve the same files (same SHA-256).
_MNIST = _Dataset(
    name="mnist",
    mirrors=(
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    sha256={
        "train-images-idx3-ubyte.gz": (
            "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"
        ),
        "train-labels-idx1-ubyte.gz": (
            "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"
        ),
        "t10k-images-idx3-ubyte.gz": (
            "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"
        ),
        "t10k-labels-idx1-ubyte.gz": (
            "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"
        ),
    },
    system_dirs=(),
    apt_package=None,
)

_SPLIT_PREFIX = {"train": "train", "test": "t10k"}

# IDX type codes (third byte of the magic number) -> big-endian NumPy dtype.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


# --------------------------------------------------------------------------- IDX files


def parse_idx(data: bytes, name: str = "<bytes>", limit: int | None = None) -> np.ndarray:
    """Decode the bytes of an (uncompressed) IDX file into an array.

    Layout: two zero bytes, a type code (0x08 = uint8, ... 0x0E = float64), the number of
    dimensions ``ndim``, ``ndim`` big-endian uint32 sizes, then the values in C order.
    ``name`` only appears in error messages. ``limit`` keeps the first ``limit`` items along
    the first axis (``data`` may then stop after them). Raises ``CorruptFileError`` when the
    header is invalid or the number of bytes does not match the sizes.
    """
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise CorruptFileError(f"{name} is not an IDX file (it does not start with 00 00)")
    code, ndim = data[2], data[3]
    if code not in _IDX_DTYPES:
        raise CorruptFileError(f"{name} has an unknown IDX type code 0x{code:02X}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise CorruptFileError(f"{name} ends inside its IDX header ({len(data)} bytes)")
    shape = tuple(int(s) for s in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    if limit is not None and ndim:
        shape = (min(shape[0], as_int(limit, "limit", 0)), *shape[1:])
    dtype = np.dtype(_IDX_DTYPES[code])
    count = int(np.prod(shape, dtype=np.int64))
    expected = header + count * dtype.itemsize
    if len(data) != expected and (limit is None or len(data) < expected):
        raise CorruptFileError(
            f"{name} should hold {expected} bytes for shape {shape}, but holds {len(data)}"
        )
    values = np.frombuffer(data, dtype=dtype, count=count, offset=header).reshape(shape)
    return values.astype(dtype.newbyteorder("="))


def read_idx(path: str | os.PathLike, limit: int | None = None) -> np.ndarray:
    """Read an IDX file, gzip-compressed (``.gz``) or not, into an array.

    ``limit`` reads only the first ``limit`` items along the first axis: a gzip file is then
    decompressed only as far as they go, so its checksum (which covers the whole file) is not
    checked. Raises ``CorruptFileError`` (naming the file and what to do) if it is truncated or
    corrupt.
    """
    path = Path(path)
    raw = path.read_bytes()
    try:
        if raw[:2] != b"\x1f\x8b":
            data = raw
        elif limit is None:
            data = gzip.decompress(raw)
        else:
            data = _gunzip_items(raw, as_int(limit, "limit", 0))
        return parse_idx(data, str(path), limit)
    except (OSError, EOFError, zlib.error, CorruptFileError) as exc:
        raise CorruptFileError(
            f"{path} is truncated or corrupt ({exc}). Delete it and load again: cnnlib then "
            "uses the next copy it finds, or downloads a fresh one into its cache."
        ) from None


def _gunzip_items(raw: bytes, limit: int) -> bytes:
    """The start of a gzip-compressed IDX file: its header and its first ``limit`` items."""
    stream = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # 16 +: a gzip header and trailer

    def more(n: int) -> bytes:  # up to n more bytes of the decompressed file
        return stream.decompress(stream.unconsumed_tail, n) if n > 0 else b""

    data = stream.decompress(raw, 4)
    if len(data) < 4 or data[2] not in _IDX_DTYPES:
        return data  # parse_idx says what is wrong
    data += more(4 * data[3])
    if len(data) < 4 + 4 * data[3]:
        return data
    shape = np.frombuffer(data, dtype=">u4", count=data[3], offset=4)
    item = int(np.prod(shape[1:], dtype=np.int64)) * np.dtype(_IDX_DTYPES[data[2]]).itemsize
    needed = len(data) + min(limit, int(shape[0]) if shape.size else 1) * item
    while len(data) < needed:
        chunk = more(needed - len(data))
        if not chunk:
            break  # the file ends early: parse_idx reports the missing bytes
        data += chunk
    return data


# --------------------------------------------------------------------------- finding the files


def cache_dir() -> Path:
    """Where downloads go: ``$XDG_CACHE_HOME/cnnlib`` (default ``~/.cache/cnnlib``)."""
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "cnnlib"
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "cnnlib" / "Cache"
    return Path.home() / ".cache" / "cnnlib"


def _search_dirs(ds: _Dataset) -> list[Path]:
    dirs = []
    if os.environ.get(DATA_ENV):
        root = Path(os.environ[DATA_ENV])
        if root.is_dir():
            dirs.append(root / ds.name)
        else:
            what = "a file" if root.exists() else "missing"
            warnings.warn(f"{DATA_ENV}={root} is {what}, not a folder, so it is ignored; set it "
                          f"to the folder that holds {ds.name}/ (the IDX files go in "
                          f"{root / ds.name}/)", stacklevel=4)
    dirs.append(cache_dir() / ds.name)
    dirs.extend(Path(d) for d in ds.system_dirs)
    return dirs


def _find(directory: Path, gz_name: str) -> Path | None:
    """The file ``gz_name`` in ``directory``, or its uncompressed twin, or None."""
    for candidate in (directory / gz_name, directory / gz_name.removesuffix(".gz")):
        if candidate.is_file():
            return candidate
    return None


def _open_url(url: str, timeout: float = 30.0) -> BinaryIO:
    """Open ``url`` for reading (the single place that touches the network; tests replace it)."""
    return urllib.request.urlopen(url, timeout=timeout)


def _download(url: str, dest: Path, sha256: str, progress: bool = True) -> None:
    """Stream ``url`` to a temporary file beside ``dest``; rename it only if the SHA-256 matches."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=".part")
    tmp = Path(tmp_name)
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out, _open_url(url) as response:
            length = getattr(response, "length", None)
            with tqdm(total=length, unit="B", unit_scale=True, desc=dest.name,
                      disable=not progress, leave=False) as bar:
                while chunk := response.read(1 << 16):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
        if digest.hexdigest() != sha256:
            raise CorruptFileError(
                f"the download of {url} has SHA-256 {digest.hexdigest()}, expected {sha256}; "
                "the file on the server or the connection is broken. Try again later, or fetch "
                f"it by hand into {dest.parent}"
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _not_found_message(ds: _Dataset, looked: list[Path], errors: list[str]) -> str:
    files = ", ".join(ds.sha256)
    where = ", ".join(str(d) for d in looked)
    if errors:
        first = f"The {ds.name} files are not on this computer and could not be downloaded:"
        lines = [first, *(f"  {e}" for e in errors)]
    else:
        lines = [f"The {ds.name} files are not on this computer (downloading is switched off)."]
    lines += [f"Looked in: {where}.", "To get them, do one of:"]
    if ds.apt_package:
        lines.append(f"  * on Debian/Ubuntu: sudo apt install {ds.apt_package}")
    lines.append(f"  * download {files} from {ds.mirrors[0]} into {cache_dir() / ds.name}")
    lines.append(
        f"  * put them in <dir>/{ds.name}/ and set the environment variable {DATA_ENV}=<dir>"
    )
    return "\n".join(lines)


def _locate(ds: _Dataset, split: str, download: bool, progress: bool) -> tuple[Path, Path]:
    """Paths of the image and label files of ``split``, downloading them if needed."""
    prefix = _SPLIT_PREFIX[split]
    names = (f"{prefix}-images-idx3-ubyte.gz", f"{prefix}-labels-idx1-ubyte.gz")
    looked = _search_dirs(ds)
    for directory in looked:
        found = [_find(directory, name) for name in names]
        if all(found):
            return found[0], found[1]
    errors: list[str] = []
    if download:
        target = cache_dir() / ds.name
        for name in names:
            if _find(target, name):
                continue
            for base in ds.mirrors:
                try:
                    _download(base + name, target / name, ds.sha256[name], progress)
                    break
                except (OSError, http.client.HTTPException, CorruptFileError) as exc:
                    errors.append(f"{base + name}: {exc}")
            else:
                raise DatasetNotFoundError(_not_found_message(ds, looked, errors))
        return target / names[0], target / names[1]
    raise DatasetNotFoundError(_not_found_message(ds, looked, errors))


@without_huge_page_advice
def _load(
    ds: _Dataset, split: str, download: bool, progress: bool, limit: int | None
) -> tuple[np.ndarray, np.ndarray]:
    if split not in _SPLIT_PREFIX:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    limit = None if limit is None else as_int(limit, "limit", 0)
    image_path, label_path = _locate(ds, split, download, progress)
    try:
        images, labels = read_idx(image_path, limit), read_idx(label_path, limit)
    except CorruptFileError as exc:
        if ds.apt_package and image_path.parent in {Path(d) for d in ds.system_dirs}:
            raise CorruptFileError(
                f"{exc} The system copy cannot be deleted by a user; repair it with "
                f"sudo apt install --reinstall {ds.apt_package}"
            ) from None
        raise
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
        raise CorruptFileError(
            f"{image_path} holds {images.dtype} data of shape {images.shape}, not (N, 28, 28) "
            "uint8 images; is it the right file?"
        )
    if labels.shape != (images.shape[0],) or labels.dtype != np.uint8 or labels.max(initial=0) > 9:
        raise CorruptFileError(
            f"{label_path} holds {labels.dtype} data of shape {labels.shape}; expected "
            f"{images.shape[0]} labels 0-9 to match {image_path.name}"
        )
    # (N, 28, 28) uint8 -> (N, 1, 28, 28) float32 in [0, 1], in one pass (no float32 copy in
    # between: the 60000 training images need 188 MB of fresh memory instead of 376 MB)
    x = np.divide(images[:, None], np.float32(255), dtype=np.float32)
    return x, labels.astype(np.int64)


def load_fashion_mnist(
    split: str = "train", download: bool = True, progress: bool = True,
    limit: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Zalando's Fashion-MNIST: 28×28 grey photos of clothes in 10 classes.

    Returns ``images`` float32 ``(N, 1, 28, 28)`` in [0, 1] and ``labels`` int64 ``(N,)``
    (names in ``FASHION_MNIST_CLASSES``); N = 60000 for ``split="train"``, 10000 for "test",
    or the first ``limit`` of them (only those are decompressed and converted: quicker).
    Search order and download: see the module docstring. Raises ``DatasetNotFoundError`` when
    no copy exists and none can be downloaded, ``CorruptFileError`` for a broken file.
    Notebook 06 trains on it.
    """
    return _load(_FASHION_MNIST, split, download, progress, limit)


def load_mnist(
    split: str = "train", download: bool = True, progress: bool = True,
    limit: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """LeCun's MNIST handwritten digits, in the same format as ``load_fashion_mnist``."""
    return _load(_MNIST, split, download, progress, limit)


# --------------------------------------------------------------------------- synthetic shapes


def _shape_mask(kind: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside-test of shape ``kind`` in coordinates scaled so the shape spans about [-1, 1]."""
    r2 = u * u + v * v
    if kind == 0:  # circle
        return r2 <= 1.0
    if kind == 1:  # square
        return np.maximum(np.abs(u), np.abs(v)) <= 0.8
    if kind == 2:  # triangle, apex up
        return (v <= 0.8) & (v >= 1.8 * np.abs(u) - 1.0)
    if kind == 3:  # cross
        return ((np.abs(u) <= 0.3) & (np.abs(v) <= 1.0)) | ((np.abs(v) <= 0.3) & (np.abs(u) <= 1.0))
    return (r2 <= 1.0) & (r2 >= 0.55**2)  # ring


@without_huge_page_advice
def make_shapes(n: int, size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic, offline dataset: one coloured shape per image on a dark, noisy background.

    Each image shows a shape of class ``labels[i]`` (names in ``SHAPE_CLASSES``: circle,
    square, triangle, cross, ring) with a random centre, radius (18-38% of ``size``), colour
    and background colour, plus a little Gaussian noise; classes are balanced in expectation.
    Returns ``images`` float32 ``(n, 3, size, size)`` in [0, 1] (the lecture's 32×32×3 input,
    NCHW) and ``labels`` int64 ``(n,)``. The same ``seed`` gives the same data.
    Notebook 06 trains its first network on it.
    """
    n = as_int(n, "n", minimum=1)
    size = as_int(size, "size", minimum=8)
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(SHAPE_CLASSES), size=n)
    radius = rng.uniform(0.18, 0.38, size=n) * size
    cy = rng.uniform(radius, size - 1 - radius)
    cx = rng.uniform(radius, size - 1 - radius)
    colour = rng.uniform(0.45, 1.0, size=(n, 3)).astype(np.float32)
    background = rng.uniform(0.0, 0.3, size=(n, 3)).astype(np.float32)

    grid = np.arange(size, dtype=np.float64)
    v = (grid[None, :, None] - cy[:, None, None]) / radius[:, None, None]  # (n, size, 1)
    u = (grid[None, None, :] - cx[:, None, None]) / radius[:, None, None]  # (n, 1, size)
    mask = np.zeros((n, size, size), dtype=bool)
    for kind in range(len(SHAPE_CLASSES)):
        sel = labels == kind
        mask[sel] = _shape_mask(kind, u[sel], v[sel])
    # (n, 3, size, size): the shape's colour where mask is set, the background elsewhere
    images = np.where(mask[:, None], colour[:, :, None, None], background[:, :, None, None])
    images += np.float32(0.04) * rng.standard_normal(images.shape, dtype=np.float32)
    np.clip(images, 0.0, 1.0, out=images)
    return images, labels.astype(np.int64)


# --------------------------------------------------------------------------- a photograph


def sample_image(gray: bool = False, size: int | None = None) -> np.ndarray:
    """The portrait of Grace Hopper that ships with matplotlib, as float32 in [0, 1].

    Returns ``(H, W, 3)`` RGB (600×512 at full size), or ``(H, W)`` luminance
    (0.299 R + 0.587 G + 0.114 B) with ``gray=True``: the layout ``plt.imshow`` expects.
    ``size`` scales the photo so that H = ``size`` (aspect kept), to keep notebooks fast.
    For the NCHW layout of the layers use ``img.transpose(2, 0, 1)[None]`` (colour) or
    ``img[None, None]`` (grey). Notebooks 01-03 filter it.
    """
    from matplotlib import cbook
    from PIL import Image

    with cbook.get_sample_data("grace_hopper.jpg") as f:
        photo = Image.open(f).convert("RGB")
        if size is not None:
            height = as_int(size, "size", minimum=1)
            width = max(1, round(photo.width * height / photo.height))
            photo = photo.resize((width, height), Image.Resampling.LANCZOS)
        img = np.asarray(photo, dtype=np.float32) / np.float32(255)
    if gray:
        img = img @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return np.clip(img, 0.0, 1.0)
