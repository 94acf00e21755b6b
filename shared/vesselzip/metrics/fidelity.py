"""One pass over an original and its decoded volume that yields the sum of the 3D SSIM
map (definition in docs/metrics.md) together with the squared-error sum and the
largest absolute error.

How it is fast and lean:

* The volume is cut into tiles along the first two axes (whole rows along the last,
  or for a Fortran-ordered volume runs of 96 along it), each read with the
  window's 10-voxel halo, so the working set of a tile is a few MB whatever the
  volume size; tiles run on a small pool shared by every measurement in the process
  (numpy and BLAS release the GIL).
* Tiles can start before the decoded volume is complete (`FidelityPass.advance`):
  the codec decodes slab by slab along the array's first axis, and a tile whose
  inputs are in runs while later slabs are coded. Each voxel's value does not depend
  on when its tile ran, and the tiles' sums are added exactly (math.fsum), so the
  result is the same bit for bit whether or not it was streamed.
* SSIM needs four filtered quantities, not five, once written with s = x + y and
  d = y - x: mu_s, mu_d, E[s^2], E[d^2] (see `_ssim_of_moments`). Centering s by the
  original's max + min keeps float32 variances accurate, and the contrast term's
  sensitivity to var(s) is proportional to var(d), which is small when SSIM is near 1.
* The Gaussian filter along each axis is a product with a banded 16 x 26 matrix
  (BLAS), one block of 16 outputs at a time; every product is small enough that
  OpenBLAS runs it on the calling thread (M*N*K below its 262144 threading threshold),
  so the tile threads never compete with BLAS threads.
* The error sums are taken in float64 from the same tiles, each voxel counted once.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

#: The window: 11 taps of a Gaussian with sigma 1.5, normalised to sum to 1.
WIN_SIZE = 11
SIGMA = 1.5
HALO = WIN_SIZE - 1

# Valid outputs per tile along the first two axes (each read with the halo); along the
# last axis tiles span whole rows. 16 x 32 x 512 keeps a tile's buffers near 25 MB.
TILE_PLANES = 16
TILE_ROWS = 32
# A Fortran-ordered volume is measured through its transpose, whose last axis is the
# array's first, the one the codec decodes slab by slab: its rows are cut into runs of
# 96 outputs so that tiles can start as slabs arrive. Shorter rows leave room for more
# planes and rows per tile, which cuts the share of halo recomputed: 32 x 64 x 96
# outputs read 42 x 74 x 106 inputs (1.7 x) and take about 20 MB of buffers.
SHORT_ROW_TILE = (32, 64, 96)
# They only pay where the decoded volume arrives in several slabs (about 4 Mi voxels
# each, docs/format.md); a smaller volume is measured in whole rows, which recompute
# less halo (a 128 x 128 x 96 pair: about half the time of short rows).
SHORT_ROWS_FROM_VOXELS = 1 << 22
# Outputs per banded matrix product (each reads BLOCK + HALO inputs).
_BLOCK = 16
# Threads of the one pool every measurement in the process shares (the gateway measures
# a couple of uploads at once; more threads than cores would only add tile buffers).
THREADS = max(1, min(4, os.cpu_count() or 1))
# Voxel types float32 holds exactly, with sums and differences of two voxels exact
# too; anything wider is measured in float64.
_FLOAT32_EXACT = tuple(np.dtype(t) for t in ("bool", "uint8", "int8", "int16", "uint16"))


def gaussian_window() -> np.ndarray:
    offsets = np.arange(WIN_SIZE) - WIN_SIZE // 2
    weights = np.exp(-0.5 * (offsets / SIGMA) ** 2)
    return weights / weights.sum()


def work_dtype(*dtypes: np.dtype) -> np.dtype:
    """float32 when every input is a <= 16-bit integer or float32, else float64."""
    narrow = all(np.dtype(d) in _FLOAT32_EXACT or np.dtype(d) == np.float32 for d in dtypes)
    return np.dtype(np.float32 if narrow else np.float64)


@dataclass
class FidelitySums:
    squared_error_sum: float  # sum of (original - decoded)^2, float64
    max_abs_error: float
    ssim_sum: float  # sum of the SSIM map over the valid region (0.0 without SSIM)
    ssim_count: int  # voxels of the valid region (0 without SSIM)


def fidelity_sums(
    original: np.ndarray,
    decoded: np.ndarray,
    *,
    c1: float | None,
    c2: float | None,
    tile: tuple[int, int, int | None] | None = None,
    threads: int = THREADS,
) -> FidelitySums:
    """Error sums over every voxel and, unless c1 is None, the SSIM map's sum over
    the valid region, with constants C1, C2 (volumes of at least 11 voxels per axis).

    The arrays may have any memory layout; SSIM's window is the same along every axis,
    so a Fortran-ordered pair is measured through its transpose (rows contiguous).
    `tile` is (planes, rows, columns or None for whole rows) of valid outputs."""
    return FidelityPass(original, decoded, c1=c1, c2=c2, tile=tile, threads=threads).finish()


class FidelityPass:
    """`fidelity_sums` for a decoded volume that is still being filled along its first
    axis: `advance(planes)` says how many leading planes are in, and starts every tile
    whose inputs lie within them; `finish()` runs the rest and adds the sums up.

    With threads > 1, tiles run on the shared pool; `finish` (or `cancel`, on the way
    out of an error) returns only once none of this pass's tiles is left running."""

    def __init__(
        self,
        original: np.ndarray,
        decoded: np.ndarray,
        *,
        c1: float | None,
        c2: float | None,
        tile: tuple[int, int, int | None] | None = None,
        threads: int = THREADS,
    ):
        transposed = original.flags.f_contiguous and not original.flags.c_contiguous
        if transposed:
            original, decoded = original.T, decoded.T
        if tile is None:
            short_rows = transposed and original.size > SHORT_ROWS_FROM_VOXELS
            tile = SHORT_ROW_TILE if short_rows else _WHOLE_ROWS
        self._pass: _TiledErrors
        if c1 is not None and c2 is not None:
            # max + min, so that s - center spans [-peak, peak] (+- the errors).
            center = float(np.max(original)) + float(np.min(original))
            dtype = work_dtype(original.dtype, decoded.dtype)
            self._pass = _TiledSSIM(original, decoded, dtype, center, c1, c2, tile)
        else:
            self._pass = _TiledErrors(original, decoded, tile)
        # The array's first axis is the last of a transposed view; each tile needs the
        # planes of that axis up to the end of its inputs. Tiles go in that order.
        slab_axis = 2 if transposed else 0
        tiles = sorted(self._pass.tiles(), key=lambda t: t.input_end[slab_axis])
        self._waiting = [(t.input_end[slab_axis], t) for t in tiles]
        self._next = 0
        self._pool = shared_pool() if threads > 1 and len(tiles) > 1 else None
        self._started: list[Future[tuple[float, float, float]]] = []
        self._parts: list[tuple[float, float, float]] = []

    def advance(self, planes: int) -> None:
        """The first `planes` planes of `decoded` (along its first array axis) are final:
        start the tiles that read nothing beyond them (on the pool; inline without one,
        where only `finish` runs them)."""
        if self._pool is None:
            return
        while self._next < len(self._waiting) and self._waiting[self._next][0] <= planes:
            tile = self._waiting[self._next][1]
            self._started.append(self._pool.submit(self._pass.run, tile))
            self._next += 1

    def finish(self) -> FidelitySums:
        """Run what is left, wait for every tile, and add up their sums (a tile's error
        is raised here, after the other tiles have stopped)."""
        rest = [tile for _, tile in self._waiting[self._next :]]
        self._next = len(self._waiting)
        try:
            if self._pool is not None:
                self._started.extend(self._pool.submit(self._pass.run, t) for t in rest)
                self._parts.extend(f.result() for f in self._started)
            else:
                self._parts.extend(self._pass.run(t) for t in rest)
        except BaseException:
            self.cancel()
            raise
        parts = self._parts
        return FidelitySums(
            squared_error_sum=math.fsum(p[0] for p in parts),
            max_abs_error=max(p[1] for p in parts),
            ssim_sum=math.fsum(p[2] for p in parts),
            ssim_count=self._pass.ssim_count,
        )

    def cancel(self) -> None:
        """Drop the tiles not yet started and wait for the running ones to end."""
        self._next = len(self._waiting)
        for future in self._started:
            future.cancel()
        for future in self._started:
            if not future.cancelled():
                future.exception()  # waits; the error itself is the caller's to report


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def shared_pool() -> ThreadPoolExecutor:
    """The process's tile pool, started on first use (THREADS threads, kept idle)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(THREADS, thread_name_prefix="vesselzip-fidelity")
        return _pool


_WHOLE_ROWS = (TILE_PLANES, TILE_ROWS, None)


@dataclass(frozen=True)
class _Tile:
    """Where a tile starts, its valid outputs per axis and the part of its input whose
    errors it counts ("owned"; the tiles' owned parts partition the volume)."""

    start: tuple[int, int, int]
    valid: tuple[int, int, int]
    owned: tuple[int, int, int]
    halo: int

    @property
    def input_end(self) -> tuple[int, int, int]:
        return (
            self.start[0] + self.valid[0] + self.halo,
            self.start[1] + self.valid[1] + self.halo,
            self.start[2] + self.valid[2] + self.halo,
        )


def _ranges(n: int, halo: int, size: int | None) -> list[tuple[int, int, int]]:
    """(start, valid outputs, owned inputs) along one axis of n voxels."""
    if n <= halo:
        return [(0, n, n)]
    size = n - halo if size is None else size
    out = []
    for start in range(0, n - halo, size):
        valid = min(size, n - halo - start)
        owned = valid if start + valid + halo < n else n - start
        out.append((start, valid, owned))
    return out


def _tiles(shape: tuple[int, ...], halo: int, tile: tuple[int, int, int | None]) -> Iterator[_Tile]:
    axes = [_ranges(n, halo, size) for n, size in zip(shape, tile, strict=True)]
    for z, t, owned_t in axes[0]:
        for r, rr, owned_r in axes[1]:
            for c, cc, owned_c in axes[2]:
                yield _Tile((z, r, c), (t, rr, cc), (owned_t, owned_r, owned_c), halo)


class _Scratch:
    """Per-thread buffers, reused from tile to tile; every view is C-contiguous."""

    def __init__(self) -> None:
        self._buffers: dict[tuple[str, np.dtype], np.ndarray] = {}

    def take(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        size = math.prod(shape)
        key = (name, np.dtype(dtype))
        buffer = self._buffers.get(key)
        if buffer is None or buffer.size < size:
            buffer = self._buffers[key] = np.empty(size, dtype)
        return buffer[:size].reshape(shape)


class _TiledErrors:
    """Squared-error sum and max |error| in float64, tile by tile."""

    ssim_count = 0
    halo = 0

    def __init__(
        self, original: np.ndarray, decoded: np.ndarray, tile: tuple[int, int, int | None]
    ):
        self.x, self.y, self.tile = original, decoded, tile
        self._local = threading.local()

    def tiles(self) -> Iterator[_Tile]:
        return _tiles(self.x.shape, self.halo, self.tile)

    def scratch(self) -> _Scratch:
        if not hasattr(self._local, "scratch"):
            self._local.scratch = _Scratch()
        return self._local.scratch

    def errors(self, tile: _Tile) -> tuple[float, float]:
        index = tuple(slice(s, s + n) for s, n in zip(tile.start, tile.owned, strict=True))
        diff = self.scratch().take("diff", tile.owned, np.dtype(np.float64))
        np.subtract(self.x[index], self.y[index], out=diff, dtype=np.float64)
        flat = diff.reshape(-1)
        # einsum, not np.dot: BLAS would thread a dot this long and stall under load.
        return float(np.einsum("i,i->", flat, flat)), max(float(flat.max()), -float(flat.min()))

    def run(self, tile: _Tile) -> tuple[float, float, float]:
        return (*self.errors(tile), 0.0)


class _TiledSSIM(_TiledErrors):
    halo = HALO

    def __init__(
        self,
        original: np.ndarray,
        decoded: np.ndarray,
        dtype: np.dtype,
        center: float,
        c1: float,
        c2: float,
        tile: tuple[int, int, int | None],
    ):
        super().__init__(original, decoded, tile)
        self.dtype, self.center, self.c1, self.c2 = dtype, center, c1, c2
        window = gaussian_window()
        self.bands = [_band(n, window, dtype) for n in range(_BLOCK + 1)]
        self.ssim_count = math.prod(n - HALO for n in original.shape)
        # d = y - x is exact in the work type for integers (and in float64): the errors
        # then come from it; float32 voxels are subtracted again in float64.
        integers = original.dtype.kind in "biu" and decoded.dtype.kind in "biu"
        self.exact_d = integers or dtype == np.float64

    def run(self, tile: _Tile) -> tuple[float, float, float]:
        (t, rr, cc), scratch, dtype = tile.valid, self.scratch(), self.dtype
        index = tuple(slice(s, e) for s, e in zip(tile.start, tile.input_end, strict=True))
        # The four quantities, stacked so that each filter pass is one set of products.
        q = scratch.take("q", (4, t + HALO, rr + HALO, cc + HALO), dtype)
        np.add(self.x[index], self.y[index], out=q[0], dtype=dtype)
        q[0] -= self.center
        np.subtract(self.y[index], self.x[index], out=q[1], dtype=dtype)
        np.multiply(q[0], q[0], out=q[2])
        np.multiply(q[1], q[1], out=q[3])
        # Filter along axis 0, 1, 2 in turn (valid region only), largest cut first.
        a = scratch.take("a", (4, t, rr + HALO, cc + HALO), dtype)
        self._filter(q, 1, a)
        b = scratch.take("b", (4, t, rr, cc + HALO), dtype)
        self._filter(a, 2, b)
        moments = scratch.take("m", (4, t, rr, cc), dtype)
        self._filter(b, 3, moments)
        ssim_map = _ssim_of_moments(moments, self.center, self.c1, self.c2, scratch)
        ssim_sum = float(np.sum(ssim_map, dtype=np.float64))
        if not self.exact_d:
            return (*self.errors(tile), ssim_sum)
        d = q[1][: tile.owned[0], : tile.owned[1], : tile.owned[2]]
        squared = float(np.einsum("ijk,ijk->", d, d, dtype=np.float64))
        return squared, max(float(d.max()), -float(d.min())), ssim_sum

    def _filter(self, values: np.ndarray, axis: int, out: np.ndarray) -> None:
        """Gaussian-weighted means along `axis` (1-3 of a stack) where the window fits."""
        n_out = out.shape[axis]
        for start in range(0, n_out, _BLOCK):
            count = min(_BLOCK, n_out - start)
            band = self.bands[count]
            inputs = slice(start, start + count + HALO)
            outputs = slice(start, start + count)
            if axis == 1:  # one (count x count+10) @ (count+10 x n2) product per row
                src = values[:, inputs].transpose(0, 2, 1, 3)
                np.matmul(band, src, out=out[:, outputs].transpose(0, 2, 1, 3))
            elif axis == 2:  # one product per plane
                np.matmul(band, values[:, :, inputs], out=out[:, :, outputs])
            else:  # rows against the transposed band, one plane of rows at a time
                stack = values.reshape(-1, values.shape[2], values.shape[3])
                into = out.reshape(-1, out.shape[2], out.shape[3])
                np.matmul(stack[:, :, inputs], band.T, out=into[:, :, outputs])


def _band(count: int, window: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """The (count x count+10) matrix whose row i holds the window at columns i..i+10."""
    band = np.zeros((count, count + HALO), dtype)
    for i in range(count):
        band[i, i : i + WIN_SIZE] = window
    return band


def _ssim_of_moments(
    moments: np.ndarray, center: float, c1: float, c2: float, scratch: _Scratch
) -> np.ndarray:
    """The SSIM map from mu_s (of s - center), mu_d, E[(s - center)^2], E[d^2].

    With x = (s - d) / 2 and y = (s + d) / 2, multiplying every factor by 4:
    2 mu_x mu_y + C1 ~ mu_s^2 - mu_d^2 + 2 C1,  mu_x^2 + mu_y^2 + C1 ~ mu_s^2 + mu_d^2 + 2 C1,
    2 cov_xy + C2 ~ var_s - var_d + 2 C2,       var_x + var_y + C2 ~ var_s + var_d + 2 C2.
    Works in place on `moments`; returns a view of it."""
    mu_s, mu_d, var_s, var_d = moments
    mu_s2 = scratch.take("mu_s2", mu_s.shape, moments.dtype)
    mu_d2 = scratch.take("mu_d2", mu_s.shape, moments.dtype)
    np.multiply(mu_s, mu_s, out=mu_s2)
    var_s -= mu_s2  # var(s): shift-invariant, so the centred mean serves
    np.multiply(mu_d, mu_d, out=mu_d2)
    var_d -= mu_d2
    mu_s += center
    np.multiply(mu_s, mu_s, out=mu_s2)
    luminance_num, luminance_den = mu_s, mu_d
    np.subtract(mu_s2, mu_d2, out=luminance_num)
    luminance_num += 2 * c1
    np.add(mu_s2, mu_d2, out=luminance_den)
    luminance_den += 2 * c1
    contrast_num = mu_s2
    np.subtract(var_s, var_d, out=contrast_num)
    contrast_num += 2 * c2
    contrast_den = var_s
    contrast_den += var_d
    contrast_den += 2 * c2
    luminance_num *= contrast_num
    luminance_den *= contrast_den
    luminance_num /= luminance_den
    return luminance_num
