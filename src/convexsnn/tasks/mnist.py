"""MNIST: canonical IDX loader (checksummed) and the sequential-MNIST task.

:func:`load_mnist_idx` reads the four canonical gzipped IDX files from a
directory the user names, checks each file's sha256 against
:data:`MNIST_SHA256`, parses the IDX headers and returns ``uint8`` arrays.
Decoded arrays are cached in memory per directory (keyed by the files' size
and modification time, so a replaced file is re-read).  With
``download=True`` missing files are fetched from :data:`MNIST_MIRRORS`
(written atomically, checksum verified); an unreachable network gives a
``ConnectionError`` listing every URL tried.

:func:`sequential_mnist` builds the task: each image is flattened row-major
to 784 pixels, optionally permuted by a seeded fixed permutation, scaled by
1/255 and cut into ``T`` consecutive chunks of ``784 / T`` pixels (``T = 4``:
196 pixels a step; ``T = 28``: one row a step).  The digit label is a
sequence label, read at the last step.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import os
import struct
import tempfile
import urllib.request
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .base import (
    STREAM_PERMUTATION,
    STREAM_TEST,
    STREAM_TRAIN,
    STREAM_VAL,
    Split,
    TaskData,
    check_int,
    check_seed,
    json_safe,
    logger,
    rng_for,
)

#: canonical file names, in the order returned by :func:`load_mnist_idx`
MNIST_FILES: tuple[str, ...] = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)

#: sha256 of the canonical gzipped files
MNIST_SHA256: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}

#: public mirrors serving the canonical files (tried in order)
MNIST_MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)

_EXPECTED_SHAPES = {
    "train-images-idx3-ubyte.gz": (60000, 28, 28),
    "train-labels-idx1-ubyte.gz": (60000,),
    "t10k-images-idx3-ubyte.gz": (10000, 28, 28),
    "t10k-labels-idx1-ubyte.gz": (10000,),
}

N_PIXELS = 784


# ---------------------------------------------------------------------------
# files
# ---------------------------------------------------------------------------


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk_size), b""):
            h.update(block)
    return h.hexdigest()


def read_idx_gz(path: str | os.PathLike, expected_ndim: int | None = None) -> np.ndarray:
    """Parse a gzipped IDX file of unsigned bytes.

    IDX layout: two zero bytes, a type byte (``0x08`` = unsigned byte, the
    only type MNIST uses), the number of dimensions ``k``, then ``k``
    big-endian ``uint32`` sizes, then the data in C order.

    Parameters
    ----------
    path : path-like
        The ``.gz`` file.
    expected_ndim : int, optional
        Required number of dimensions (3 for images, 1 for labels).

    Returns
    -------
    numpy.ndarray
        ``uint8`` array of the stored shape.

    Raises
    ------
    ValueError
        If the file is not valid gzip or the header / payload is malformed.
    """
    path = Path(path)
    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise ValueError(f"{path}: not a valid gzip file ({exc})") from exc
    if len(data) < 4:
        raise ValueError(f"{path}: malformed IDX header (file has {len(data)} bytes)")
    zero0, zero1, dtype_code, ndim = data[0], data[1], data[2], data[3]
    magic = struct.unpack(">I", data[:4])[0]
    if zero0 != 0 or zero1 != 0:
        raise ValueError(f"{path}: malformed IDX header, bad magic number 0x{magic:08x}")
    if dtype_code != 0x08:
        raise ValueError(
            f"{path}: malformed IDX header, data type 0x{dtype_code:02x} (magic 0x{magic:08x}); "
            "only unsigned byte (0x08) is supported"
        )
    if ndim < 1 or (expected_ndim is not None and ndim != expected_ndim):
        want = "" if expected_ndim is None else f", expected {expected_ndim}"
        raise ValueError(
            f"{path}: malformed IDX header, {ndim} dimensions{want} (magic 0x{magic:08x})"
        )
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise ValueError(f"{path}: malformed IDX header, truncated dimension list")
    dims = struct.unpack(">" + "I" * ndim, data[4:header_len])
    n_items = int(np.prod(dims, dtype=np.int64))
    if len(data) - header_len != n_items:
        raise ValueError(
            f"{path}: malformed IDX file, header dims {dims} need {n_items} bytes of data, "
            f"found {len(data) - header_len}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_len).reshape(dims)


def _download_file(name: str, directory: Path, mirrors: Sequence[str], timeout: float) -> None:
    """Fetch one file from the first mirror that serves it with the right checksum."""
    directory.mkdir(parents=True, exist_ok=True)
    errors = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + name
        tmp_name = None
        try:
            logger.info("downloading %s", url)
            h = hashlib.sha256()
            with (
                urllib.request.urlopen(url, timeout=timeout) as resp,
                tempfile.NamedTemporaryFile(
                    dir=directory, prefix=f".{name}.", suffix=".part", delete=False
                ) as tmp,
            ):
                tmp_name = tmp.name
                for block in iter(lambda: resp.read(1 << 20), b""):
                    h.update(block)
                    tmp.write(block)
                tmp.flush()
                os.fsync(tmp.fileno())
            got = h.hexdigest()
            if got != MNIST_SHA256[name]:
                raise ValueError(
                    f"checksum mismatch: expected sha256 {MNIST_SHA256[name]}, got {got}"
                )
            os.replace(tmp_name, directory / name)
            tmp_name = None
            return
        except (OSError, ValueError) as exc:
            errors.append(f"{url}: {exc}")
        finally:
            if tmp_name is not None and os.path.exists(tmp_name):
                os.unlink(tmp_name)
    raise ConnectionError(
        f"could not download {name} into {directory}; tried:\n  "
        + "\n  ".join(errors)
        + f"\nPlace the canonical file {name} (sha256 {MNIST_SHA256[name]}) in {directory} by hand."
    )


def download_mnist(
    directory: str | os.PathLike,
    *,
    mirrors: Sequence[str] = MNIST_MIRRORS,
    timeout: float = 30.0,
) -> None:
    """Download the missing canonical MNIST files into ``directory``.

    Files already present are left alone (they are checked by
    :func:`load_mnist_idx`).  Each download goes to a temporary file in
    ``directory``, is checked against :data:`MNIST_SHA256` and then renamed
    into place, so a failed download never leaves a partial file.

    Raises
    ------
    ConnectionError
        If a file cannot be fetched with the right checksum from any mirror.
    """
    directory = Path(directory)
    if isinstance(mirrors, str):
        mirrors = (mirrors,)
    for name in MNIST_FILES:
        if not (directory / name).is_file():
            _download_file(name, directory, tuple(mirrors), float(timeout))


@functools.lru_cache(maxsize=4)
def _load_cached(
    directory: str, stamps: tuple[tuple[str, int, int], ...], verify: bool
) -> tuple[np.ndarray, ...]:
    """Verify and decode the four files; ``stamps`` (name, size, mtime) key the cache."""
    del stamps  # part of the cache key only
    root = Path(directory)
    arrays = []
    for name in MNIST_FILES:
        path = root / name
        if verify:
            got = sha256_file(path)
            expected = MNIST_SHA256[name]
            if got != expected:
                raise ValueError(
                    f"checksum mismatch for {path}: expected sha256 {expected}, got {got}"
                )
        arr = read_idx_gz(path, expected_ndim=len(_EXPECTED_SHAPES[name]))
        if arr.shape != _EXPECTED_SHAPES[name]:
            raise ValueError(
                f"{path}: unexpected shape {arr.shape}, expected {_EXPECTED_SHAPES[name]}"
            )
        if arr.ndim == 1 and arr.size and arr.max() > 9:
            raise ValueError(f"{path}: labels must lie in 0..9, found {int(arr.max())}")
        arr = np.array(arr)  # own the memory
        arr.setflags(write=False)
        arrays.append(arr)
    logger.debug("decoded MNIST from %s", directory)
    return tuple(arrays)


def load_mnist_idx(
    directory: str | os.PathLike,
    *,
    download: bool = False,
    verify: bool = True,
    mirrors: Sequence[str] = MNIST_MIRRORS,
    timeout: float = 30.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Load the canonical MNIST IDX files from ``directory``.

    Parameters
    ----------
    directory : path-like
        Folder holding the four ``*.gz`` files named in :data:`MNIST_FILES`.
    download : bool
        Fetch missing files from ``mirrors`` first (needs network access).
    verify : bool
        Check each file's sha256 against :data:`MNIST_SHA256` (default True).
    mirrors : sequence of str
        Base URLs tried in order when downloading (any scheme ``urllib``
        understands, including ``file://``).
    timeout : float
        Per-request timeout in seconds when downloading.

    Returns
    -------
    train_images : numpy.ndarray
        ``uint8`` ``(60000, 28, 28)``.
    train_labels : numpy.ndarray
        ``uint8`` ``(60000,)``.
    test_images : numpy.ndarray
        ``uint8`` ``(10000, 28, 28)``.
    test_labels : numpy.ndarray
        ``uint8`` ``(10000,)``.

    The arrays are shared with an in-memory cache and therefore read-only;
    copy them before modifying.

    Raises
    ------
    FileNotFoundError
        A file is missing (and ``download`` is False); the message names the
        file and the directory.
    ValueError
        A checksum mismatch (naming the file, expected and actual sha256) or a
        malformed IDX file.
    ConnectionError
        ``download=True`` and a file could not be fetched.
    """
    root = Path(directory).expanduser().resolve()
    if download:
        download_mnist(root, mirrors=mirrors, timeout=timeout)
    stamps = []
    for name in MNIST_FILES:
        path = root / name
        if not path.is_file():
            raise FileNotFoundError(
                f"MNIST file {name} not found in directory {root} "
                "(pass download=True to fetch it, or copy the canonical files there)"
            )
        st = path.stat()
        stamps.append((name, int(st.st_size), int(st.st_mtime_ns)))
    return _load_cached(str(root), tuple(stamps), bool(verify))  # type: ignore[return-value]


def clear_mnist_cache() -> None:
    """Drop the decoded arrays held in memory."""
    _load_cached.cache_clear()


# ---------------------------------------------------------------------------
# the task
# ---------------------------------------------------------------------------


def stratified_subset(
    labels: np.ndarray, n: int, rng: np.random.Generator, candidates: np.ndarray | None = None
) -> np.ndarray:
    """Seeded stratified sample of ``n`` indices (without replacement).

    Class ``c`` gets ``floor(n * m_c / m)`` indices (``m_c`` candidates of class
    ``c`` out of ``m``), the remaining ones go to the classes with the largest
    fractional parts (ties: lower class first).  Returned in random order.
    """
    labels = np.asarray(labels)
    cand = (
        np.arange(labels.shape[0]) if candidates is None else np.asarray(candidates, dtype=np.int64)
    )
    m = cand.size
    if not 0 <= n <= m:
        raise ValueError(f"cannot draw {n} of {m} candidates")
    cand_labels = labels[cand]
    classes, counts = np.unique(cand_labels, return_counts=True)
    exact = n * counts / m if m else counts * 0.0
    quota = np.floor(exact).astype(np.int64)
    remainder = n - int(quota.sum())
    if remainder:
        order = np.lexsort((classes, -(exact - quota)))
        quota[order[:remainder]] += 1
    chosen = [
        rng.choice(cand[cand_labels == c], size=int(q), replace=False)
        for c, q in zip(classes, quota)
        if q
    ]
    out = np.concatenate(chosen) if chosen else np.zeros(0, dtype=np.int64)
    return out[rng.permutation(out.size)].astype(np.int64)


def mnist_split_indices(
    train_labels: np.ndarray, *, n_train: int | None = None, n_val: int = 5000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Indices into the 60k training set for the train and validation splits.

    The validation set (``n_val`` images) is a seeded stratified sample of the
    whole training set; the train split is a seeded stratified sample of
    ``n_train`` of the remaining images (all of them, in random order, if
    ``n_train`` is None).  The two are disjoint.
    """
    seed = check_seed(seed)
    m = int(np.asarray(train_labels).shape[0])
    n_val = check_int("n_val", n_val, minimum=0)
    if n_val > m:
        raise ValueError(f"n_val must be <= {m}, got {n_val}")
    val_idx = stratified_subset(train_labels, n_val, rng_for(seed, STREAM_VAL))
    mask = np.ones(m, dtype=bool)
    mask[val_idx] = False
    remaining = np.flatnonzero(mask)
    if n_train is None:
        rng = rng_for(seed, STREAM_TRAIN)
        train_idx = remaining[rng.permutation(remaining.size)]
    else:
        n_train = check_int("n_train", n_train, minimum=0)
        if n_train > remaining.size:
            raise ValueError(f"n_train must be <= {remaining.size} (60000 - n_val), got {n_train}")
        train_idx = stratified_subset(train_labels, n_train, rng_for(seed, STREAM_TRAIN), remaining)
    return train_idx.astype(np.int64), val_idx.astype(np.int64)


def pixel_permutation(seed: int) -> np.ndarray:
    """The fixed pixel permutation used by ``sequential_mnist(permute=True, seed=seed)``."""
    return rng_for(check_seed(seed), STREAM_PERMUTATION).permutation(N_PIXELS).astype(np.int64)


def _to_split(
    images: np.ndarray, labels: np.ndarray, idx: np.ndarray | None, T: int, perm: np.ndarray | None
) -> Split:
    imgs = images if idx is None else images[idx]
    flat = imgs.reshape(imgs.shape[0], N_PIXELS)
    if perm is not None:
        flat = flat[:, perm]
    X = flat.astype(np.float32) / np.float32(255.0)
    X = X.reshape(X.shape[0], T, N_PIXELS // T)
    y = (labels if idx is None else labels[idx]).astype(np.int64)
    return Split(torch.from_numpy(np.ascontiguousarray(X)), torch.from_numpy(y))


def sequential_mnist(
    directory: str | os.PathLike | None = None,
    *,
    T: int = 4,
    n_train: int | None = None,
    n_val: int = 5000,
    n_test: int | None = None,
    permute: bool = False,
    seed: int = 0,
    download: bool = False,
) -> TaskData:
    """Sequential MNIST.

    Parameters
    ----------
    directory : path-like
        Folder with the canonical IDX files (see :func:`load_mnist_idx`).
    T : int
        Number of steps; must divide 784 (1, 2, 4, 7, 8, 14, 16, 28, 49, 56,
        98, 112, 196, 392, 784).  Step ``t`` holds pixels
        ``t * 784/T .. (t+1) * 784/T - 1`` of the (permuted) flattened image.
    n_train : int, optional
        Training images (e.g. 6000 for the paper's subset), a seeded stratified
        sample of the images not used for validation; default all of them
        (``60000 - n_val``).
    n_val : int
        Validation images split off the 60k training set (seeded, stratified;
        default 5000).
    n_test : int, optional
        Seeded stratified subset of the 10k test set; default the whole test
        set in its canonical order.
    permute : bool
        Apply the seeded fixed pixel permutation :func:`pixel_permutation`
        (permuted sequential MNIST).
    seed : int
        Seed for the splits and the permutation.
    download : bool
        Passed to :func:`load_mnist_idx`.

    Returns
    -------
    TaskData
        ``X`` ``(n, T, 784 / T)`` float32 in ``[0, 1]`` (pixels / 255), ``y``
        ``(n,)`` int64 digits, ``n_classes=10``, ``label_mode="sequence"``.
    """
    if directory is None:
        raise ValueError("directory must name the folder with the MNIST IDX files")
    T = check_int("T", T, minimum=1)
    if N_PIXELS % T:
        divisors = [d for d in range(1, N_PIXELS + 1) if N_PIXELS % d == 0]
        raise ValueError(f"T must divide 784 (one of {divisors}), got {T}")
    n_val = check_int("n_val", n_val, minimum=0)
    if n_train is not None:
        n_train = check_int("n_train", n_train, minimum=0)
    if n_test is not None:
        n_test = check_int("n_test", n_test, minimum=0)
        if n_test > 10000:
            raise ValueError(f"n_test must be <= 10000, got {n_test}")
    seed = check_seed(seed)
    permute = bool(permute)

    train_images, train_labels, test_images, test_labels = load_mnist_idx(
        directory, download=download
    )
    train_idx, val_idx = mnist_split_indices(train_labels, n_train=n_train, n_val=n_val, seed=seed)
    test_idx = (
        None
        if n_test is None
        else stratified_subset(test_labels, n_test, rng_for(seed, STREAM_TEST))
    )
    perm = pixel_permutation(seed) if permute else None

    train = _to_split(train_images, train_labels, train_idx, T, perm)
    val = _to_split(train_images, train_labels, val_idx, T, perm)
    test = _to_split(test_images, test_labels, test_idx, T, perm)
    meta = {
        "name": "mnist",
        "T": T,
        "pixels_per_step": N_PIXELS // T,
        "n_train": int(train.n),
        "n_val": int(val.n),
        "n_test": int(test.n),
        "permute": permute,
        "seed": seed,
        "directory": str(Path(directory).expanduser().resolve()),
        "subsets": "seeded stratified",
        "scaling": "pixels/255",
        "sha256": dict(MNIST_SHA256),
    }
    return TaskData(
        train=train,
        val=val,
        test=test,
        n_classes=10,
        label_mode="sequence",
        name="mnist",
        meta=json_safe(meta),
        ood={},
    )


__all__ = [
    "MNIST_FILES",
    "MNIST_SHA256",
    "MNIST_MIRRORS",
    "load_mnist_idx",
    "download_mnist",
    "read_idx_gz",
    "sha256_file",
    "clear_mnist_cache",
    "stratified_subset",
    "mnist_split_indices",
    "pixel_permutation",
    "sequential_mnist",
]
