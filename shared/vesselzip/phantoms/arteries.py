"""The named arteries of a whole head: internal carotids with the siphon,
vertebrals, basilar, the Circle of Willis with its common variants, and the first
branches of the cerebral arteries, as tapered centrelines in millimetres of the
head frame (origin at the Circle of Willis, x right, y anterior, z superior).

Each vessel is a smooth curve through jittered control points, sampled about
every 0.8 mm into straight segments. Segments carry the territory class they
belong to (`TERRITORY_LABELS`, after the RSNA aneurysm locations) or 0 for
unlabelled branches; the cortical trees grown from their ends are unlabelled."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Label classes of the named arterial territories (the 13 RSNA locations).
TERRITORY_LABELS = {
    1: "left infraclinoid ICA",
    2: "right infraclinoid ICA",
    3: "left supraclinoid ICA",
    4: "right supraclinoid ICA",
    5: "left MCA",
    6: "right MCA",
    7: "ACom",
    8: "left ACA",
    9: "right ACA",
    10: "left PCom",
    11: "right PCom",
    12: "basilar tip",
    13: "other posterior circulation",
}
_CLASS = {name: number for number, name in TERRITORY_LABELS.items()}
SIDES = {"left": -1.0, "right": 1.0}


@dataclass
class Centreline:
    """A sampled vessel: points (n, 3) mm, radius (n,) mm, path length from the
    inflow (n,) mm, territory class per segment (n - 1,)."""

    name: str
    points: np.ndarray
    radius: np.ndarray
    path: np.ndarray
    classes: np.ndarray


def draw_circle_variant(rng) -> dict:
    """The Circle of Willis of one seed, at roughly the prevalences reported for
    adults: PCom hypoplastic or absent on one or both sides ~45 %, fetal PCA ~20 %,
    A1 hypoplastic or absent ~7 %, ACom absent ~6 % (or doubled ~5 %); about 35-40 %
    of circles come out complete."""
    pcom = {"left": "normal", "right": "normal"}
    if rng.random() < 0.45:
        sides = ["left", "right"] if rng.random() < 0.4 else [str(rng.choice(["left", "right"]))]
        for side in sides:
            pcom[side] = "absent" if rng.random() < 0.4 else "hypoplastic"
    if rng.random() < 0.2:
        sides = ["left", "right"] if rng.random() < 0.2 else [str(rng.choice(["left", "right"]))]
        for side in sides:
            pcom[side] = "fetal"
    a1 = {"left": "normal", "right": "normal"}
    if rng.random() < 0.07:
        a1[str(rng.choice(["left", "right"]))] = "absent" if rng.random() < 0.3 else "hypoplastic"
    acom_draw = rng.random()
    acom = "absent" if acom_draw < 0.06 else "double" if acom_draw < 0.11 else "normal"
    dominant = str(rng.choice(["left", "right", "left"]))  # the left is more often dominant
    hypoplastic_vertebral = bool(rng.random() < 0.1)
    complete = acom != "absent" and all(v == "normal" for v in (*pcom.values(), *a1.values()))
    changes = [f"{side} PCom {state}" for side, state in pcom.items() if state != "normal"]
    changes += [f"{side} A1 {state}" for side, state in a1.items() if state != "normal"]
    if acom != "normal":
        changes.append(f"ACom {acom}")
    return {
        "pcom": pcom,
        "a1": a1,
        "acom": acom,
        "dominant_vertebral": dominant,
        "hypoplastic_vertebral": hypoplastic_vertebral,
        "complete": complete,
        "summary": "complete" if complete else ", ".join(changes) if changes else "complete",
    }


def named_arteries(rng, variant: dict, scale: float, tortuosity: float) -> list[Centreline]:
    """All named arteries of one head, with the drawn variant; `scale` sizes the
    geometry and the calibres, `tortuosity` (mm) the jitter of control points."""
    jitter_mm = 1.0 + 3.0 * tortuosity

    def j(point, amount=1.0) -> np.ndarray:
        return scale * (np.asarray(point, float) + rng.normal(0.0, jitter_mm * amount, 3))

    calibre = scale * rng.uniform(0.9, 1.1)
    vessels: list[Centreline] = []
    anchors: dict[str, np.ndarray] = {}
    # Fixed junctions first, so that vessels meeting there meet exactly.
    anchors["tip"] = j((0.0, -8.0, -1.0), 0.5)
    anchors["vb"] = j((0.0, -12.0, -32.0), 1.0)
    anchors["basilar_upper"] = anchors["tip"] + scale * np.array([0.0, -1.0, -6.0])
    for side, s in SIDES.items():
        anchors[f"{side} terminus"] = j((s * 14.0, 9.0, 3.0), 0.6)
        anchors[f"{side} pcom origin"] = j((s * 14.0, 12.5, 0.5), 0.4)
        anchors[f"{side} acom"] = j((s * 1.3, 19.0, 6.0), 0.4)
        anchors[f"{side} p1p2"] = j((s * 8.0, -9.5, 0.0), 0.5)
        anchors[f"{side} m1 end"] = j((s * 38.0, 5.0, 8.0), 1.2)
        anchors[f"{side} clinoid"] = j((s * 14.0, 18.0, -4.0), 0.6)
    anchors["left acom"][0] = min(anchors["left acom"][0], anchors["right acom"][0] - 2.0 * scale)

    def add(name, points, radii, classes, path0=0.0):
        line = _sample(name, points, radii, classes, path0)
        vessels.append(line)
        return line

    def path_at(line: Centreline, point) -> float:
        return float(line.path[np.argmin(np.linalg.norm(line.points - point, axis=1))])

    carotid, vertebral, p1, a1 = {}, {}, {}, {}
    for side, s in SIDES.items():
        infra, supra = _CLASS[f"{side} infraclinoid ICA"], _CLASS[f"{side} supraclinoid ICA"]
        carotid[side] = add(
            f"{side} ICA",
            [
                j((s * 26.0, -8.0, -85.0)),
                j((s * 25.0, -6.0, -55.0)),
                j((s * 24.0, -3.0, -42.0)),
                j((s * 21.0, 4.0, -35.0), 0.7),
                j((s * 17.0, 11.0, -30.0), 0.7),
                j((s * 16.0, 8.0, -20.0), 0.7),  # posterior bend of the siphon
                j((s * 15.0, 17.0, -16.0), 0.7),
                j((s * 15.0, 22.0, -10.0), 0.7),  # anterior genu
                anchors[f"{side} clinoid"],
                anchors[f"{side} pcom origin"],
                anchors[f"{side} terminus"],
            ],
            calibre * np.array([2.5, 2.45, 2.4, 2.35, 2.3, 2.25, 2.2, 2.15, 2.0, 1.9, 1.8]),
            [infra] * 8 + [supra] * 2,
        )
        dominant = variant["dominant_vertebral"] == side
        thin = 0.9 if (variant["hypoplastic_vertebral"] and not dominant) else 1.5
        r_va = calibre * (1.85 if dominant else thin)
        vertebral[side] = add(
            f"{side} vertebral",
            [
                j((s * 28.0, -22.0, -85.0)),
                j((s * 26.0, -24.0, -62.0)),
                j((s * 18.0, -29.0, -52.0)),
                j((s * 10.0, -21.0, -46.0)),
                j((s * 5.0, -14.0, -38.0), 0.7),
                anchors["vb"],
            ],
            r_va * np.array([1.0, 1.0, 1.0, 0.97, 0.95, 0.93]),
            [_CLASS["other posterior circulation"]] * 5,
        )
    vb_path = max(path_at(v, anchors["vb"]) for v in vertebral.values())
    post, tip = _CLASS["other posterior circulation"], _CLASS["basilar tip"]
    basilar = add(
        "basilar",
        [
            anchors["vb"],
            j((0.0, -11.0, -20.0), 0.6),
            j((0.0, -10.0, -10.0), 0.5),
            anchors["basilar_upper"],
            anchors["tip"],
        ],
        calibre * np.array([1.65, 1.6, 1.55, 1.5, 1.45]),
        [post, post, post, tip],
        vb_path,
    )
    tip_path = float(basilar.path[-1])

    for side, s in SIDES.items():
        state = variant["pcom"][side]
        r_p1 = calibre * (0.45 if state == "fetal" else 1.0)
        p1[side] = add(
            f"{side} P1",
            [anchors["tip"], j((s * 4.0, -8.5, -0.5), 0.3), anchors[f"{side} p1p2"]],
            np.array([r_p1, r_p1, r_p1]),
            [post, post],
            tip_path,
        )
        if state != "absent":
            r_pcom = calibre * {"normal": 0.65, "hypoplastic": 0.35, "fetal": 1.05}[state]
            origin = anchors[f"{side} pcom origin"]
            add(
                f"{side} PCom",
                [origin, j((s * 12.0, 2.0, 0.0), 0.6), anchors[f"{side} p1p2"]],
                np.array([r_pcom, r_pcom, r_pcom * 0.95]),
                [_CLASS[f"{side} PCom"]] * 2,
                path_at(carotid[side], origin),
            )
        p2_path = float(p1[side].path[-1])
        add(
            f"{side} P2",
            [
                anchors[f"{side} p1p2"],
                j((s * 13.0, -15.0, 1.0), 0.6),
                j((s * 19.0, -24.0, 3.0)),
                j((s * 22.0, -35.0, 5.0)),
                j((s * 20.0, -47.0, 8.0)),
            ],
            calibre * np.array([1.0, 1.0, 0.95, 0.9, 0.85]),
            [post] * 4,
            p2_path,
        )
        terminus_path = float(carotid[side].path[-1])
        mca = _CLASS[f"{side} MCA"]
        m1 = add(
            f"{side} M1",
            [
                anchors[f"{side} terminus"],
                j((s * 20.0, 10.0, 3.0), 0.6),
                j((s * 28.0, 9.0, 4.0)),
                j((s * 34.0, 7.0, 6.0)),
                anchors[f"{side} m1 end"],
            ],
            calibre * np.array([1.45, 1.4, 1.35, 1.3, 1.25]),
            [mca] * 4,
            terminus_path,
        )
        for trunk, (up, back) in enumerate(((14.0, 10.0), (1.0, 12.0))):
            start = anchors[f"{side} m1 end"]
            add(
                f"{side} M2 {'superior' if trunk == 0 else 'inferior'}",
                [
                    start,
                    start + j((s * 3.0, -3.0 - 0.3 * back, 0.5 * up), 0.8),
                    start + j((s * 7.0, -back - 4.0, up), 1.2),
                    start + j((s * 9.0, -2.0 * back - 6.0, up * 1.6 + 2.0), 1.5),
                ],
                calibre * np.array([1.0, 0.95, 0.9, 0.8]),
                [mca] * 3,
                float(m1.path[-1]),
            )
        if variant["a1"][side] != "absent":
            other = "left" if side == "right" else "right"
            r_a1 = calibre * (
                0.5
                if variant["a1"][side] == "hypoplastic"
                else 1.2
                if variant["a1"][other] != "normal"
                else 1.0
            )
            a1[side] = add(
                f"{side} A1",
                [
                    anchors[f"{side} terminus"],
                    j((s * 8.0, 14.0, 5.0), 0.6),
                    anchors[f"{side} acom"],
                ],
                np.array([r_a1, r_a1, r_a1 * 0.95]),
                [_CLASS[f"{side} ACA"]] * 2,
                terminus_path,
            )
    acom_path = min(float(line.path[-1]) for line in a1.values())
    if variant["acom"] != "absent":
        r_acom = calibre * (1.0 if any(v != "normal" for v in variant["a1"].values()) else 0.75)
        ends = [anchors["left acom"], anchors["right acom"]]
        add("ACom", ends, np.array([r_acom, r_acom]), [_CLASS["ACom"]], acom_path)
        if variant["acom"] == "double":
            lift = scale * np.array([0.0, 0.5, 2.5])
            add(
                "ACom 2",
                [e + lift for e in ends],
                calibre * np.array([0.4, 0.4]),
                [_CLASS["ACom"]],
                acom_path,
            )
    for side, s in SIDES.items():
        start = anchors[f"{side} acom"]
        path0 = float(a1[side].path[-1]) if side in a1 else acom_path + 3.0
        add(
            f"{side} A2",
            [
                start,
                j((s * 2.0, 24.0, 14.0), 0.6),
                j((s * 2.5, 31.0, 24.0), 0.6),
                j((s * 3.0, 36.0, 33.0), 0.6),
            ],
            calibre * np.array([1.0, 0.95, 0.9, 0.85]),
            [_CLASS[f"{side} ACA"]] * 3,
            path0,
        )
    _add_small_named(add, j, calibre, anchors, basilar, vertebral, carotid, path_at, post)
    return vessels


def _add_small_named(add, j, calibre, anchors, basilar, vertebral, carotid, path_at, post):
    """Cerebellar arteries (other posterior circulation) and the unlabelled
    pericallosal and ophthalmic arteries."""
    for side, s in SIDES.items():
        upper = basilar.points[-4]
        add(
            f"{side} SCA",
            [
                upper,
                j((s * 6.0, -10.0, -5.0), 0.5),
                j((s * 12.0, -17.0, -6.0)),
                j((s * 17.0, -27.0, -4.0)),
                j((s * 15.0, -38.0, 0.0)),
            ],
            calibre * np.array([0.65, 0.62, 0.6, 0.55, 0.5]),
            [post] * 4,
            path_at(basilar, upper),
        )
        lower = basilar.points[len(basilar.points) // 4]
        add(
            f"{side} AICA",
            [
                lower,
                j((s * 8.0, -15.0, -26.0)),
                j((s * 16.0, -22.0, -26.0)),
                j((s * 22.0, -32.0, -24.0)),
            ],
            calibre * np.array([0.5, 0.48, 0.45, 0.4]),
            [post] * 3,
            path_at(basilar, lower),
        )
        va = vertebral[side]
        origin = va.points[
            np.argmin(np.linalg.norm(va.points - np.array([s * 8.0, -18.0, -43.0]), axis=1))
        ]
        add(
            f"{side} PICA",
            [
                origin,
                j((s * 11.0, -30.0, -47.0)),
                j((s * 7.0, -40.0, -41.0)),
                j((s * 10.0, -50.0, -33.0)),
            ],
            calibre * np.array([0.6, 0.55, 0.5, 0.45]),
            [post] * 3,
            path_at(va, origin),
        )
        clinoid = anchors[f"{side} clinoid"]
        add(
            f"{side} ophthalmic",
            [
                clinoid,
                j((s * 18.0, 30.0, -5.0)),
                j((s * 26.0, 45.0, -4.0)),
                j((s * 30.0, 58.0, -2.0)),
            ],
            calibre * np.array([0.7, 0.6, 0.5, 0.35]),
            [0] * 3,
            path_at(carotid[side], clinoid),
        )


def _sample(name, points, radii, classes, path0, step_mm=0.8) -> Centreline:
    """A Catmull-Rom curve through the control points, sampled about every
    `step_mm`; radii interpolate linearly between control points."""
    control = np.asarray(points, float)
    radii = np.asarray(radii, float)
    padded = np.vstack([2 * control[0] - control[1], control, 2 * control[-1] - control[-2]])
    curve, radius, span_class = [control[:1]], [radii[:1]], []
    for i in range(len(control) - 1):
        p0, p1, p2, p3 = padded[i : i + 4]
        n = max(2, int(np.ceil(np.linalg.norm(p2 - p1) / step_mm)))
        t = (np.arange(1, n + 1) / n)[:, None]
        piece = 0.5 * (
            2 * p1
            + (p2 - p0) * t
            + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2
            + (3 * p1 - p0 - 3 * p2 + p3) * t**3
        )
        curve.append(piece)
        radius.append(radii[i] + (radii[i + 1] - radii[i]) * t[:, 0])
        span_class += [classes[i]] * n
    line = np.vstack(curve)
    steps = np.linalg.norm(np.diff(line, axis=0), axis=1)
    path = path0 + np.concatenate([[0.0], np.cumsum(steps)])
    return Centreline(
        name, line, np.concatenate(radius), path, np.asarray(span_class, dtype=np.uint8)
    )
