"""Procedural vehicles for the synthetic vehicle re-id demo (VeRi-like frames, 128 x 128).

An identity is a fixed vehicle: body colour (optionally a contrasting roof), type (sedan, hatchback, SUV,
van, pickup, bus: proportions and cabin shape), racing stripes (none, one, two), side-window count and tint,
roof rack, rim colour, grille and headlight style, plate colour, windshield sticker, spare wheel on the back.
A frame shows it from the camera's preferred viewpoint (front, rear, side facing left or right) on the
camera's road scene, then applies the camera's optics. Side views show stripes along the body and the
windows; front and rear views show stripes over hood and roof, lights, grille, plate, sticker, spare wheel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageOps

from ufo.demo.synth_common import RGB, CameraStyle, apply_camera, draw_background, pick_colour, pick_view, shade

VEHICLE_SIZE = (128, 128)
VEHICLE_VIEWS = ("front", "rear", "side")
_SUPERSAMPLE = 2
_BODY = ("white", "black", "silver", "grey", "red", "blue", "navy", "green", "yellow", "brown", "orange")
# type: (side length, body height, cabin start, cabin end, cabin height, front width) as frame fractions
_KINDS: dict[str, tuple[float, float, float, float, float, float]] = {
    "sedan": (0.92, 0.16, 0.28, 0.70, 0.14, 0.70),
    "hatchback": (0.78, 0.17, 0.25, 0.88, 0.15, 0.66),
    "suv": (0.88, 0.21, 0.22, 0.90, 0.17, 0.76),
    "van": (0.90, 0.26, 0.12, 0.98, 0.20, 0.74),
    "pickup": (0.95, 0.20, 0.22, 0.52, 0.17, 0.76),
    "bus": (0.98, 0.30, 0.03, 0.99, 0.22, 0.86),
}
_KIND_NAMES = ("sedan", "sedan", "hatchback", "suv", "suv", "van", "pickup", "bus")


@dataclass(frozen=True)
class VehicleLook:
    body: RGB
    roof: RGB
    kind: str
    stripes: int  # 0, 1 or 2
    stripe_colour: RGB
    windows: int  # side windows
    tint: RGB
    roof_rack: bool
    rims: RGB
    grille: int  # 0 bars, 1 mesh, 2 slot
    lights: int  # 0 round, 1 rectangular, 2 slim
    plate: RGB
    sticker: RGB | None
    spare_wheel: bool


def random_vehicle(rng: np.random.Generator) -> VehicleLook:
    body = pick_colour(rng, _BODY, jitter=12)
    return VehicleLook(
        body=body,
        roof=pick_colour(rng, ("black", "white")) if rng.random() < 0.2 else body,
        kind=_KIND_NAMES[int(rng.integers(len(_KIND_NAMES)))],
        stripes=int(rng.choice(3, p=[0.55, 0.25, 0.2])),
        stripe_colour=pick_colour(rng, ("white", "black", "red", "yellow", "blue")),
        windows=int(rng.integers(2, 5)),
        tint=shade(pick_colour(rng, ("black", "navy", "grey"), jitter=10), float(rng.uniform(0.6, 1.6))),
        roof_rack=bool(rng.random() < 0.25),
        rims=pick_colour(rng, ("silver", "black", "yellow"), jitter=8),
        grille=int(rng.integers(3)),
        lights=int(rng.integers(3)),
        plate=pick_colour(rng, ("yellow", "white", "blue"), jitter=6),
        sticker=pick_colour(rng, ("green", "yellow", "red", "blue")) if rng.random() < 0.3 else None,
        spare_wheel=bool(rng.random() < 0.2),
    )


def _draw_side(draw: ImageDraw.ImageDraw, look: VehicleLook, cx: float, ground: float, s: float) -> None:
    """Side view facing right; `s` = frame width in pixels times the camera's scale."""
    length, body_h, c0, c1, cabin_h, _ = _KINDS[look.kind]
    x0, x1 = cx - length * s / 2, cx + length * s / 2
    wheel_r = s * 0.065 * (1.25 if look.kind == "bus" else 1.0)
    body_bottom = ground - wheel_r * 0.9
    body_top = body_bottom - body_h * s
    roof_y = body_top - cabin_h * s
    cx0, cx1 = x0 + c0 * length * s, x0 + c1 * length * s
    slant = 0.0 if look.kind in ("van", "bus") else 0.12 * length * s
    draw.polygon([(cx0, body_top), (cx0 + slant, roof_y), (cx1 - slant * 0.6, roof_y), (cx1, body_top)],
                 fill=look.roof)
    pad = s * 0.012
    span = (cx1 - slant * 0.6 - pad) - (cx0 + slant + pad)
    count = look.windows * (3 if look.kind == "bus" else 1)
    for i in range(count):
        wx0 = cx0 + slant + pad + span * i / count
        wx1 = wx0 + span / count - pad
        draw.polygon([(wx0 - (slant if i == 0 else 0), body_top - pad), (wx0, roof_y + pad * 1.5),
                      (wx1, roof_y + pad * 1.5), (wx1 + (slant * 0.6 if i == count - 1 else 0), body_top - pad)],
                     fill=look.tint)
    draw.rectangle([x0, body_top, x1, body_bottom], fill=look.body)
    for i in range(look.stripes):
        y = body_top + body_h * s * (0.42 + 0.2 * i)
        draw.rectangle([x0, y, x1, y + s * 0.018], fill=look.stripe_colour)
    draw.rectangle([x1 - s * 0.025, body_top + s * 0.02, x1, body_top + s * 0.05], fill=(250, 240, 200))
    draw.rectangle([x0, body_top + s * 0.02, x0 + s * 0.02, body_top + s * 0.05], fill=(200, 20, 20))
    if look.roof_rack:
        draw.rectangle([cx0 + slant, roof_y - s * 0.025, cx1 - slant * 0.6, roof_y - s * 0.012], fill=(40, 40, 40))
    for wx in (x0 + length * s * 0.18, x1 - length * s * 0.18):
        draw.ellipse([wx - wheel_r, ground - 2 * wheel_r, wx + wheel_r, ground], fill=(25, 25, 25))
        draw.ellipse([wx - wheel_r * 0.5, ground - wheel_r * 1.5, wx + wheel_r * 0.5, ground - wheel_r * 0.5],
                     fill=look.rims)


def _draw_end(draw: ImageDraw.ImageDraw, look: VehicleLook, cx: float, ground: float, s: float, front: bool) -> None:
    """Front or rear view: body box, glass, lights, grille / spare wheel, plate, stripes over hood and roof."""
    _, body_h, _, _, cabin_h, width = _KINDS[look.kind]
    half = width * s / 2
    body_bottom = ground - s * 0.02
    body_top = body_bottom - body_h * s * 1.25
    roof_y = body_top - cabin_h * s * 1.15
    inset = 0.0 if look.kind in ("van", "bus") else half * 0.15
    draw.rectangle([cx - half * 0.92, ground - s * 0.05, cx - half * 0.62, ground], fill=(25, 25, 25))
    draw.rectangle([cx + half * 0.62, ground - s * 0.05, cx + half * 0.92, ground], fill=(25, 25, 25))
    draw.polygon([(cx - half * 0.95, body_top), (cx - half + inset, roof_y), (cx + half - inset, roof_y),
                  (cx + half * 0.95, body_top)], fill=look.roof)
    g = s * 0.02
    draw.polygon([(cx - half * 0.88 + g, body_top - g), (cx - half + inset + 2 * g, roof_y + g * 1.5),
                  (cx + half - inset - 2 * g, roof_y + g * 1.5), (cx + half * 0.88 - g, body_top - g)], fill=look.tint)
    draw.rectangle([cx - half, body_top, cx + half, body_bottom], fill=look.body)
    stripe_w = half * 0.12
    offsets = {0: (), 1: (0.0,), 2: (-1.2, 1.2)}[look.stripes]
    for off in offsets:
        draw.rectangle([cx + off * stripe_w - stripe_w / 2, roof_y, cx + off * stripe_w + stripe_w / 2,
                        body_bottom - body_h * s * 0.55], fill=look.stripe_colour)
    light_colour = (250, 245, 210) if front else (210, 25, 25)
    ly = body_top + body_h * s * 0.3
    lw, lh = {0: (0.09, 0.09), 1: (0.16, 0.08), 2: (0.2, 0.035)}[look.lights]
    for sign in (-1, 1):
        lx = cx + sign * half * 0.72
        box = [lx - lw * s / 2, ly - lh * s / 2, lx + lw * s / 2, ly + lh * s / 2]
        (draw.ellipse if look.lights == 0 else draw.rectangle)(box, fill=light_colour)
    plate_y = body_bottom - body_h * s * 0.35
    draw.rectangle([cx - s * 0.08, plate_y, cx + s * 0.08, plate_y + s * 0.045], fill=look.plate)
    if front:
        gy0, gy1 = ly - s * 0.035, ly + s * 0.04
        draw.rectangle([cx - half * 0.4, gy0, cx + half * 0.4, gy1], fill=(35, 35, 38))
        if look.grille == 0:
            for i in range(1, 4):
                y = gy0 + (gy1 - gy0) * i / 4
                draw.line([(cx - half * 0.4, y), (cx + half * 0.4, y)], fill=(150, 150, 155), width=2)
        elif look.grille == 1:
            for i in range(1, 8):
                x = cx - half * 0.4 + half * 0.8 * i / 8
                draw.line([(x, gy0), (x, gy1)], fill=(110, 110, 115), width=2)
        else:
            draw.rectangle([cx - half * 0.4, gy0 + (gy1 - gy0) * 0.4, cx + half * 0.4, gy1 - (gy1 - gy0) * 0.4],
                           fill=(170, 170, 175))
        if look.sticker is not None:
            draw.rectangle([cx + half * 0.45, body_top - s * 0.07, cx + half * 0.6, body_top - s * 0.035],
                           fill=look.sticker)
    elif look.spare_wheel:
        r = s * 0.07
        draw.ellipse([cx - r, ly - r * 0.4, cx + r, ly + r * 1.6], fill=(25, 25, 25))
        draw.ellipse([cx - r * 0.5, ly + r * 0.1, cx + r * 0.5, ly + r * 1.1], fill=look.rims)
    if look.roof_rack:
        draw.rectangle([cx - half * 0.7 + inset, roof_y - s * 0.03, cx + half * 0.7 - inset, roof_y - s * 0.01],
                       fill=(40, 40, 40))


def render_vehicle(look: VehicleLook, style: CameraStyle, rng: np.random.Generator) -> Image.Image:
    """One camera frame of `look`, 128 x 128."""
    size = (VEHICLE_SIZE[0] * _SUPERSAMPLE, VEHICLE_SIZE[1] * _SUPERSAMPLE)
    frame = draw_background(style, size, rng)
    draw = ImageDraw.Draw(frame)
    width, height = size
    horizon = style.horizon * height
    for x in np.linspace(0, width, 4)[1:-1]:  # lane markings seen by this camera
        draw.line([(x, horizon + 4), (x + (x - width / 2) * 0.6, height)], fill=shade(style.ground, 1.5), width=3)
    layer = Image.new("RGBA", size, (0, 0, 0, 0))
    view = VEHICLE_VIEWS[pick_view(style, rng)]
    s = width * style.scale * float(rng.uniform(0.92, 1.05))
    cx = width / 2 + float(rng.uniform(-0.05, 0.05)) * width
    ground = height * float(rng.uniform(0.86, 0.95))
    layer_draw = ImageDraw.Draw(layer)
    layer_draw.ellipse([cx - s * 0.48, ground - s * 0.03, cx + s * 0.48, ground + s * 0.02], fill=(15, 15, 15, 110))
    if view == "side":
        _draw_side(layer_draw, look, cx, ground, s)
        if rng.random() < 0.5:
            layer = ImageOps.mirror(layer)
    else:
        _draw_end(layer_draw, look, cx, ground, s * 1.05, front=view == "front")
    frame.paste(layer, (0, 0), layer)
    return apply_camera(_detection_crop(frame, layer, rng), style, rng)


def _detection_crop(frame: Image.Image, layer: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Crop to the vehicle's box plus a loose random margin, resized to VEHICLE_SIZE, as VeRi's crops are."""
    x0, y0, x1, y1 = layer.getchannel("A").getbbox() or (0, 0, *frame.size)
    w, h = x1 - x0, y1 - y0
    margins = rng.uniform(0.03, 0.12, 4) * np.array([w, h, w, h])
    box = (max(0, x0 - margins[0]), max(0, y0 - margins[1]), min(frame.width, x1 + margins[2]),
           min(frame.height, y1 + margins[3]))
    return frame.resize(VEHICLE_SIZE, Image.BICUBIC, box=box)
