"""Random vessel trees: stretches of short straight segments with smoothly
wandering curvature, split by Murray's law until they are too thin to matter."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter

#: A vessel stretch waiting to grow: position and direction (mm), radius (mm), path
#: length from its tree's root (mm) and brightness gain.
Stretch = tuple[np.ndarray, np.ndarray, float, float, float]


@dataclass
class Growth:
    """What a forest grows into and how."""

    #: outside(points (n, 3), margin mm) -> bool (n,): where vessels must stop.
    outside: Callable[..., np.ndarray]
    #: The volume's extent in mm: a branch stopping inside it fades out.
    extent: np.ndarray
    #: brightness(path mm (n,), gain) -> inflow signal (n,).
    brightness: Callable[[np.ndarray, float], np.ndarray]
    target_volume: float  # mm^3 of vessel inside the view
    max_segments: int
    min_radius: float
    tortuosity: float
    branch_asymmetry: float
    #: new_tree(index) -> a new trunk when the queue runs dry, or None for no more.
    new_tree: Callable[[int], Stretch | None] | None = None
    max_trees: int = 80
    #: Length of a stretch between bifurcations, in radii (give or take half).
    stretch_radii: float = 12.0
    #: Fraction of the radius lost per mm along a stretch.
    taper_per_mm: float = 0.01


def grow_trees(rng, trunks: list[Stretch], growth: Growth) -> np.ndarray:
    """Grow vessel trees from `trunks` as short straight segments.

    Returns an (n, 10) array: start xyz, end xyz (mm), start/end radius (mm),
    start/end brightness. Each stretch splits by Murray's law (r^3 = r1^3 + r2^3)
    into asymmetric children until the radius falls below the smallest vessel.
    Stretches are grown breadth-first until the vessel volume target is met;
    branches still waiting then taper out rather than end bluntly.
    """
    min_radius = growth.min_radius
    extent = growth.extent

    def walk(position, direction, radius, path, gain, length, fade_out=False):
        """One unbranched stretch. Returns (segments, end state or None if it ended)."""
        step = min(max(2.0 * radius, 0.5), 2.0)
        n_steps = max(1, int(math.ceil(length / step)))
        # Curvature is itself a random walk (AR(1)), giving smooth loops rather
        # than jitter; wide arteries bend more gently than small ones.
        tortuosity = growth.tortuosity * rng.uniform(0.5, 1.5) / (0.5 + radius)
        curl = lfilter([tortuosity], [1.0, -0.8], rng.standard_normal((n_steps, 3)), axis=0)
        heading = direction + step * np.cumsum(curl, axis=0)
        heading /= np.linalg.norm(heading, axis=1, keepdims=True)
        points = position + step * np.vstack([np.zeros(3), np.cumsum(heading, axis=0)])
        if fade_out:
            radii = radius * np.linspace(1.0, 0.15, n_steps + 1)
        else:
            radii = radius * (1.0 - growth.taper_per_mm * step) ** np.arange(n_steps + 1)
        paths = path + step * np.arange(n_steps + 1)
        outside = growth.outside(points)
        ended = outside | (radii < min_radius)
        last = int(np.argmax(ended)) if ended.any() else n_steps
        if last == 0:
            return None, None
        points, radii, paths = points[: last + 1], radii[: last + 1], paths[: last + 1]
        if outside[last] and np.all((points[last] >= 0) & (points[last] <= extent)):
            # Stopped at the brain surface inside the image: fade out, not a stump.
            k = min(last + 1, 4)
            radii[-k:] *= np.linspace(1.0, 0.2, k)
        shine = growth.brightness(paths, gain)
        segments = np.column_stack(
            [points[:-1], points[1:], radii[:-1], radii[1:], shine[:-1], shine[1:]]
        )
        if ended[last] or fade_out:
            return segments, None
        return segments, (points[-1], heading[-1], radii[-1], paths[-1], gain)

    def volume_in_view(segments) -> float:
        in_view = ~growth.outside(segments[:, 3:6], margin=0.0)
        length = np.linalg.norm(segments[:, 3:6] - segments[:, 0:3], axis=1)
        return float(np.sum(math.pi * segments[:, 7] ** 2 * length * in_view))

    queue: deque[Stretch] = deque(trunks)
    n_trees = len(trunks)
    branches = []
    n_segments, vessel_volume = 0, 0.0
    while vessel_volume < growth.target_volume and n_segments < growth.max_segments:
        if not queue:
            # Trees that soon left the view leave it too empty: add another.
            if growth.new_tree is None or n_trees >= growth.max_trees:
                break
            trunk = growth.new_tree(n_trees)
            if trunk is None:
                break
            queue.append(trunk)
            n_trees += 1
        state = queue.popleft()
        length = rng.uniform(0.5, 1.5) * min(max(growth.stretch_radii * state[2], 2.0), 30.0)
        segments, end = walk(*state, length)
        if segments is None:
            continue
        branches.append(segments)
        n_segments += len(segments)
        vessel_volume += volume_in_view(segments)
        if end is None:
            continue
        # Bifurcation: the larger child bends less.
        position, direction, radius, path, gain = end
        alpha = rng.uniform(growth.branch_asymmetry * 0.4, 1.0)
        big = radius / (1.0 + alpha**3) ** (1.0 / 3.0)
        small = alpha * big
        side_angle = math.radians(rng.uniform(35.0, 80.0))
        main_angle = side_angle * alpha**2 * 0.8
        normal = random_perpendicular(rng, direction)
        for child_radius, angle in ((big, -main_angle), (small, side_angle)):
            if child_radius >= min_radius:
                child_dir = math.cos(angle) * direction + math.sin(angle) * normal
                queue.append((position.copy(), child_dir, child_radius, path, gain))
    for state in queue:
        length = rng.uniform(3.0, 8.0) * max(state[2], 0.5)
        segments, _ = walk(*state, length, fade_out=True)
        if segments is not None:
            branches.append(segments)
    if not branches:
        return np.zeros((0, 10))
    return np.vstack(branches)


def random_perpendicular(rng, direction) -> np.ndarray:
    v = rng.standard_normal(3)
    v -= v.dot(direction) * direction
    return v / np.linalg.norm(v)
