"""A sweep's PNG figures: the paper's Figures 2-3 (ZFP's CR and mean Dice per rate or
tolerance), Dice against CR per codec, and PSNR against bits/voxel per codec.
matplotlib is imported only when a figure is drawn (the `figures` extra)."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np

from vesselzip.errors import NotFoundError, NotInstalledError
from vesselzip.sweeps.aggregate import SweepResults
from vesselzip.sweeps.grid import number_text
from vesselzip.sweeps.report import SweepNotReadyError
from vesselzip.sweeps.rows import SettingRow

if TYPE_CHECKING:
    from matplotlib.axes import Axes

FIGURES = ("fixed_rate", "tolerance", "dice_vs_cr", "psnr_vs_bpv")


def figure_png(summary: SweepResults, name: str) -> bytes:
    """One of FIGURES as PNG: the paper's dual-axis CR / mean Dice plots for fixed
    rate (Figure 2) and tolerance (Figure 3), and PSNR against bits/voxel."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise NotInstalledError(
            "figures need matplotlib, which this installation leaves out: "
            "install vesselzip[figures]"
        ) from None

    if name not in FIGURES:
        raise NotFoundError(f"no figure {name!r}; figures: {', '.join(FIGURES)}")
    rows = summary.settings
    figure = Figure(figsize=(6.4, 4.2), dpi=120, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    if name == "psnr_vs_bpv":
        _psnr_plot(axes, rows)
    elif name == "dice_vs_cr":
        _dice_vs_cr_plot(axes, rows)
    else:
        _dual_axis_plot(axes, rows, "fixed_rate" if name == "fixed_rate" else "tolerance")
    figure.suptitle(
        f"{summary.model} on {summary.n_volumes} volumes "
        f"({summary.progress.done}/{summary.progress.total} jobs done)",
        fontsize=8,
        color="0.4",
    )
    out = io.BytesIO()
    figure.savefig(out, format="png")
    return out.getvalue()


def _finished(rows: list[SettingRow], group: str, what: str) -> list[SettingRow]:
    chosen = [r for r in rows if r.group == group]
    if not chosen:
        raise NotFoundError(f"the sweep has no {what} settings")
    done = [r for r in chosen if r.n_finished]
    if not done:
        raise SweepNotReadyError(f"no {what} job has finished yet")
    return done


def _dual_axis_plot(axes: Axes, rows: list[SettingRow], group: str) -> None:
    fixed_rate = group == "fixed_rate"
    what = "fixed-rate" if fixed_rate else "tolerance"
    chosen = sorted(
        _finished(rows, group, what), key=lambda r: r.parameter or 0.0, reverse=fixed_rate
    )
    labels = [number_text(r.codec.get("value")) for r in chosen]
    x = np.arange(len(chosen))
    cr = [r.cr_pooled or 0.0 for r in chosen]  # a finished setting has blobs
    axes.plot(x, cr, "o-", color="tab:blue", label="compression ratio (pooled)")
    for xi, value in zip(x, cr, strict=True):
        axes.annotate(
            f"{value:.2f}",
            (xi, value),
            textcoords="offset points",
            xytext=(0, 6),
            ha="center",
            fontsize=7,
            color="tab:blue",
        )
    axes.set_xticks(x, labels)
    axes.set_xlabel("rate (bits/voxel)" if fixed_rate else "absolute error tolerance")
    axes.set_ylabel("compression ratio (Σraw / Σblob)", color="tab:blue")
    axes.set_ylim(0, max(cr) * 1.15)  # room for the labels above the points

    dice_axes = axes.twinx()
    dice = [r.dice_mean for r in chosen]
    if any(d is not None for d in dice):
        dice_axes.plot(
            x, [np.nan if d is None else d for d in dice], "s-", color="tab:red", label="mean Dice"
        )
        baseline = next((r for r in rows if r.group == "baseline"), None)
        if baseline and baseline.dice_mean is not None:
            base = baseline.dice_mean
            dice_axes.axhline(
                base,
                color="tab:red",
                linestyle=":",
                linewidth=1,
                label=f"uncompressed mean Dice {base:.4f}",
            )
            # The paired CI, shifted onto the Dice axis: uncompressed mean + [low, high].
            intervals = [
                (r.dice_mean, r.delta_dice_ci_low, r.delta_dice_ci_high)
                for r in chosen
                if r.dice_mean
                and r.delta_dice_ci_low is not None
                and r.delta_dice_ci_high is not None
            ]
            if len(intervals) == len(chosen):
                means = [m for m, _, _ in intervals]
                low = [base + lo for _, lo, _ in intervals]
                high = [base + hi for _, _, hi in intervals]
                dice_axes.errorbar(
                    x,
                    means,
                    yerr=[
                        [max(0.0, m - lo) for m, lo in zip(means, low, strict=True)],
                        [max(0.0, hi - m) for m, hi in zip(means, high, strict=True)],
                    ],
                    fmt="none",
                    ecolor="tab:red",
                    alpha=0.5,
                    capsize=3,
                    label="95% CI of paired ΔDice (+ uncompressed mean)",
                )
        dice_axes.set_ylabel("mean Dice", color="tab:red")
    # One legend under the plot, where it hides no point of either axis.
    handles, labels = axes.get_legend_handles_labels()
    more_handles, more_labels = dice_axes.get_legend_handles_labels()
    axes.legend(
        handles + more_handles,
        labels + more_labels,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.14),
        ncol=2,
        fontsize=7,
        frameon=False,
    )
    axes.set_title(
        f"ZFP {what} mode: compression ratio and mean Dice"
        + (" (paper Figure 2)" if fixed_rate else " (paper Figure 3)"),
        fontsize=10,
    )


def curve_of(row: SettingRow) -> str:
    """The curve a setting is drawn on: one per codec and mode ("ZFP fixed rate",
    "SZ3 tolerance", "JPEG 2000 lossless")."""
    from vesselzip.sweeps.report import CODEC_NAMES

    codec = str(row.codec.get("id"))
    if codec == "zfp":
        return {"rate": "ZFP fixed rate", "tolerance": "ZFP tolerance"}.get(
            str(row.mode), f"ZFP {row.mode}"
        )
    name = CODEC_NAMES.get(codec, codec).removesuffix(" (lossless)")
    mode = row.codec.get("mode")
    if mode is None:  # jpegls near, lerc tolerance, the lossless floors
        mode = next((k for k in row.codec if k in ("near", "tolerance")), "lossless")
        if codec == "jpegls" and row.codec.get("near") == 0:
            mode = "lossless"
    return f"{name} {mode}"


def _curves(points: list[tuple[SettingRow, float, float]]):
    """(label, sorted points) per curve, in the grid's order."""
    curves: dict[str, list[tuple[SettingRow, float, float]]] = {}
    for point in points:
        curves.setdefault(curve_of(point[0]), []).append(point)
    return [(label, sorted(mine, key=lambda p: p[1])) for label, mine in curves.items()]


_STYLES = ("o-", "s-", "^-", "v-", "D-", "P-", "X-", "<-", ">-", "h-")


def _dice_vs_cr_plot(axes: Axes, rows: list[SettingRow]) -> None:
    """Mean Dice against the pooled CR, one curve per codec and mode, each with the
    95 % CI of the paired ΔDice added to the uncompressed mean as its band."""
    baseline = next((r for r in rows if r.group == "baseline"), None)
    points = [
        (r, r.cr_pooled, r.dice_mean)
        for r in rows
        if r.group != "baseline" and r.cr_pooled and r.dice_mean is not None
    ]
    if not points:
        if not any(r.group != "baseline" for r in rows):
            raise NotFoundError("the sweep has no compressed settings")
        if any(r.agreement_dice_mean is not None for r in rows):
            return _agreement_vs_cr_plot(axes, rows)
        raise SweepNotReadyError("no job of a compressed setting has finished yet")
    reference = baseline.dice_mean if baseline is not None else None
    for index, (label, mine) in enumerate(_curves(points)):
        band = []
        if reference is not None:
            band = [
                (x, reference + r.delta_dice_ci_low, reference + r.delta_dice_ci_high)
                for r, x, _ in mine
                if r.delta_dice_ci_low is not None and r.delta_dice_ci_high is not None
            ]
        _curve_with_band(axes, index, label, mine, band)
    if reference is not None:
        axes.axhline(reference, color="0.3", linestyle="--", linewidth=1, label="uncompressed")
    _against_cr(
        axes, "mean Dice", "Mean Dice against CR per codec (bands: 95% CI of the paired ΔDice)"
    )


def _agreement_vs_cr_plot(axes: Axes, rows: list[SettingRow]) -> None:
    """Without truths: mean agreement Dice (each mask against the same model's mask of
    the uncompressed volume) against the pooled CR, one curve per codec and mode, each
    with a band down to its lowest volume."""
    points = [
        (r, r.cr_pooled, r.agreement_dice_mean)
        for r in rows
        if r.group != "baseline" and r.cr_pooled and r.agreement_dice_mean is not None
    ]
    for index, (label, mine) in enumerate(_curves(points)):
        band = [
            (x, r.agreement_dice_min, y) for r, x, y in mine if r.agreement_dice_min is not None
        ]
        _curve_with_band(axes, index, label, mine, band)
    axes.axhline(1.0, color="0.3", linestyle="--", linewidth=1, label="uncompressed")
    _against_cr(
        axes,
        "mean agreement Dice (not accuracy)",
        "No truth: agreement with the uncompressed volume's mask against CR\n"
        "(bands: down to the lowest volume)",
    )


def _curve_with_band(axes: Axes, index: int, label: str, mine: list, band: list) -> None:
    """One codec's (row, CR, value) points as a curve, with (CR, low, high) shaded."""
    (line,) = axes.plot(
        [p[1] for p in mine],
        [p[2] for p in mine],
        _STYLES[index % len(_STYLES)],
        label=label,
        markersize=4,
    )
    if band:
        axes.fill_between(
            [b[0] for b in band],
            [b[1] for b in band],
            [b[2] for b in band],
            color=line.get_color(),
            alpha=0.15,
            linewidth=0,
        )


def _against_cr(axes: Axes, ylabel: str, title: str) -> None:
    """The axes of a plot against the pooled CR (log scale)."""
    from matplotlib.ticker import ScalarFormatter

    axes.set_xscale("log")
    axes.xaxis.set_major_formatter(ScalarFormatter())
    axes.set_xlabel("compression ratio (pooled over volumes, log scale)")
    axes.set_ylabel(ylabel)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=6, ncol=2, loc="lower left")
    axes.set_title(title, fontsize=10)


def _psnr_plot(axes: Axes, rows: list[SettingRow]) -> None:
    from matplotlib.ticker import ScalarFormatter

    points = [
        (r, r.bits_per_voxel, r.psnr_mean_db)
        for r in rows
        if r.psnr_mean_db is not None and r.bits_per_voxel
    ]
    if not points:
        if not any(r.group != "baseline" for r in rows):
            raise NotFoundError("the sweep has no lossy settings")
        raise SweepNotReadyError("no lossy job has finished yet")
    curves = _curves(points)
    for index, (label, mine) in enumerate(curves):
        axes.plot(
            [p[1] for p in mine], [p[2] for p in mine], _STYLES[index % len(_STYLES)], label=label
        )
        if len(curves) <= 3:  # with a few curves there is room to name each point
            for r, xi, yi in mine:
                axes.annotate(
                    r.setting.removeprefix("zfp:"),
                    (xi, yi),
                    textcoords="offset points",
                    xytext=(4, -10),
                    fontsize=7,
                )
    axes.set_xscale("log", base=2)
    axes.xaxis.set_major_formatter(ScalarFormatter())
    axes.set_xlabel("bits/voxel (stored blob, pooled over volumes)")
    axes.set_ylabel("mean PSNR (dB)")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=7)
    axes.set_title("PSNR against bits/voxel per codec (lossless settings left out)", fontsize=10)
