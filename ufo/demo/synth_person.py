"""Procedural pedestrians for the synthetic person re-id demo (Market-1501 sized: 128 x 64).

An identity is a fixed outfit and body: skin, hair or hat, top colour + pattern (stripes, colour block,
chest logo seen only from the front), sleeves, bottom colour + kind (trousers, shorts, skirt), shoes, bag
(backpack: a big block from behind but only straps from the front; shoulder bag; handbag), height and build.
A frame draws it from the camera's preferred viewpoint (front, back, side facing left or right) in a walking
pose, over the camera's scene, sometimes partly occluded, then applies the camera's optics.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageOps

from ufo.demo.synth_common import (
    RGB,
    CameraStyle,
    apply_camera,
    draw_background,
    pick_colour,
    pick_view,
)

PERSON_SIZE = (64, 128)  # (W, H) as Market-1501
PERSON_VIEWS = ("front", "back", "side")
_SUPERSAMPLE = 2
_SKIN = ((236, 200, 170), (205, 160, 120), (160, 110, 75), (100, 70, 50))
_HAIR = ("black", "brown", "yellow", "grey", "orange")
_TOPS = ("white", "black", "grey", "red", "blue", "navy", "green", "yellow", "pink", "purple", "beige", "teal")
_BOTTOMS = ("black", "navy", "blue", "grey", "beige", "brown", "white")
_PATTERNS = ("plain", "hstripes", "vstripes", "block", "logo")
_BOTTOM_KINDS = ("trousers", "trousers", "shorts", "skirt")
_BAGS = ("none", "none", "backpack", "shoulder", "hand")


@dataclass(frozen=True)
class PersonLook:
    skin: RGB
    hair: RGB
    long_hair: bool
    hat: RGB | None
    top: RGB
    pattern: str
    pattern_colour: RGB
    long_sleeves: bool
    bottom: RGB
    bottom_kind: str
    shoes: RGB
    bag: str
    bag_colour: RGB
    bag_side: int  # -1 left, +1 right (seen from the front)
    height: float  # fraction of the frame's subject height
    build: float  # width factor


def random_person(rng: np.random.Generator) -> PersonLook:
    def choose(options: tuple) -> object:
        return options[int(rng.integers(len(options)))]

    return PersonLook(
        skin=choose(_SKIN),  # type: ignore[arg-type]
        hair=pick_colour(rng, _HAIR),
        long_hair=bool(rng.random() < 0.35),
        hat=pick_colour(rng) if rng.random() < 0.15 else None,
        top=pick_colour(rng, _TOPS),
        pattern=str(choose(_PATTERNS)),
        pattern_colour=pick_colour(rng, _TOPS),
        long_sleeves=bool(rng.random() < 0.5),
        bottom=pick_colour(rng, _BOTTOMS),
        bottom_kind=str(choose(_BOTTOM_KINDS)),
        shoes=pick_colour(rng, ("black", "white", "brown", "grey", "red")),
        bag=str(choose(_BAGS)),
        bag_colour=pick_colour(rng, ("black", "brown", "navy", "red", "grey", "beige")),
        bag_side=int(choose((-1, 1))),  # type: ignore[call-overload]
        height=float(rng.uniform(0.84, 1.0)),
        build=float(rng.uniform(0.85, 1.15)),
    )


def _draw_pattern(draw: ImageDraw.ImageDraw, box: list[float], look: PersonLook, view: str) -> None:
    x0, y0, x1, y1 = box
    colour = look.pattern_colour
    if look.pattern == "hstripes":
        step = (y1 - y0) / 6
        for i in range(1, 6, 2):
            draw.rectangle([x0, y0 + i * step, x1, y0 + (i + 1) * step], fill=colour)
    elif look.pattern == "vstripes":
        step = (x1 - x0) / 5
        for i in range(1, 5, 2):
            draw.rectangle([x0 + i * step, y0, x0 + (i + 1) * step, y1], fill=colour)
    elif look.pattern == "block":
        draw.rectangle([x0, y0, x1, y0 + 0.45 * (y1 - y0)], fill=colour)
    elif look.pattern == "logo" and view == "front":
        cx, cy, r = (x0 + x1) / 2, y0 + 0.35 * (y1 - y0), 0.2 * (x1 - x0)
        draw.rectangle([cx - r, cy - r, cx + r, cy + r], fill=colour)


def _draw_figure(look: PersonLook, view: str, size: tuple[int, int], scale: float,
                 rng: np.random.Generator) -> Image.Image:
    """RGBA layer with the person facing the camera (front/back) or to the right (side)."""
    width, height = size
    layer = Image.new("RGBA", size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    fig_h = height * scale * look.height * float(rng.uniform(0.96, 1.03))
    feet = height * float(rng.uniform(0.95, 0.99))
    top = feet - fig_h
    cx = width / 2 + float(rng.uniform(-0.06, 0.06)) * width
    side = view == "side"
    half_w = fig_h * 0.13 * look.build * (0.6 if side else 1.0)
    head_r = fig_h * 0.075
    neck = top + 2 * head_r
    hip = neck + fig_h * 0.34
    knee = hip + (feet - hip) * 0.5
    ankle = feet - fig_h * 0.035
    stride = float(rng.uniform(-1, 1)) * fig_h * (0.09 if side else 0.025)

    # bag behind the body
    if look.bag == "backpack" and side:
        draw.rectangle([cx - half_w * 2.1, neck + 2, cx - half_w * 0.6, hip - fig_h * 0.06], fill=look.bag_colour)
    # legs
    leg_w = half_w * (0.42 if not side else 0.75)
    for sign in (-1, 1):
        lx = cx + sign * (half_w * 0.5 if not side else 0) + sign * stride
        low = look.skin if look.bottom_kind != "trousers" else look.bottom
        draw.polygon([(cx + sign * half_w * 0.5 - leg_w, hip), (cx + sign * half_w * 0.5 + leg_w, hip),
                      (lx + leg_w, ankle), (lx - leg_w, ankle)], fill=low)
        if look.bottom_kind == "shorts":
            draw.polygon([(cx + sign * half_w * 0.5 - leg_w, hip), (cx + sign * half_w * 0.5 + leg_w, hip),
                          ((cx + lx) / 2 + sign * half_w * 0.25 + leg_w, knee),
                          ((cx + lx) / 2 + sign * half_w * 0.25 - leg_w, knee)], fill=look.bottom)
        draw.rectangle([lx - leg_w * 1.1 + (leg_w * 0.5 if side else 0), ankle, lx + leg_w * 1.1 +
                        (leg_w * 0.8 if side else 0), feet], fill=look.shoes)
    if look.bottom_kind == "skirt":
        draw.polygon([(cx - half_w, hip - 2), (cx + half_w, hip - 2), (cx + half_w * 1.5, knee),
                      (cx - half_w * 1.5, knee)], fill=look.bottom)
    else:  # waistband
        draw.rectangle([cx - half_w, hip - 2, cx + half_w, hip + fig_h * 0.04], fill=look.bottom)
    # torso and its pattern
    torso = [cx - half_w, neck, cx + half_w, hip]
    draw.rectangle(torso, fill=look.top)
    _draw_pattern(draw, torso, look, view)
    if look.bag == "backpack" and view == "back":
        draw.rectangle([cx - half_w * 0.75, neck + fig_h * 0.04, cx + half_w * 0.75, hip - fig_h * 0.04],
                       fill=look.bag_colour)
    elif look.bag == "backpack" and view == "front":
        for sign in (-1, 1):
            draw.line([(cx + sign * half_w * 0.55, neck), (cx + sign * half_w * 0.55, hip - fig_h * 0.08)],
                      fill=look.bag_colour, width=max(2, int(half_w * 0.18)))
    elif look.bag == "shoulder":
        draw.line([(cx - half_w, neck), (cx + half_w, hip - fig_h * 0.05)], fill=look.bag_colour,
                  width=max(2, int(half_w * 0.12)))
    # arms
    arm_w = half_w * 0.28
    arm_swing = -stride * 0.6
    for sign in ((1,) if side else (-1, 1)):
        ax = cx + (sign * (half_w + arm_w) if not side else 0)
        hand = (ax + (arm_swing if side else 0), hip + fig_h * 0.02)
        sleeve_end = hip if look.long_sleeves else neck + (hip - neck) * 0.4
        draw.line([(ax, neck + arm_w), hand], fill=look.skin, width=int(arm_w * 2))
        frac = (sleeve_end - neck) / (hand[1] - neck)
        draw.line([(ax, neck + arm_w), (ax + (hand[0] - ax) * frac, sleeve_end)], fill=look.top,
                  width=int(arm_w * 2.2))
    # bags at the hip, on the identity's side (mirrored when seen from behind)
    bag_sign = look.bag_side if view == "front" else -look.bag_side
    if look.bag in ("shoulder", "hand") and (not side or look.bag == "hand"):
        bx = cx + (bag_sign * (half_w + arm_w * 2) if not side else arm_swing)
        by = hip - fig_h * 0.02 if look.bag == "shoulder" else hip + fig_h * 0.04
        size_b = fig_h * (0.07 if look.bag == "shoulder" else 0.055)
        draw.rectangle([bx - size_b, by - size_b * 0.8, bx + size_b, by + size_b * 0.8], fill=look.bag_colour)
    # head, hair, hat
    head = [cx - head_r * (0.85 if side else 1), top, cx + head_r * (0.85 if side else 1), top + 2 * head_r]
    draw.ellipse(head, fill=look.hair if view == "back" else look.skin)
    if view != "back":
        hair_box = [head[0], head[1], head[2], head[1] + head_r * 0.8]
        draw.rectangle(hair_box, fill=look.hair)
        if side:
            draw.rectangle([head[0], head[1], cx, top + head_r * 1.5], fill=look.hair)
    if look.long_hair and view != "front":
        right = cx if side else cx + head_r * 0.9
        draw.rectangle([cx - head_r * 0.9, top + head_r, right, neck + fig_h * 0.08], fill=look.hair)
    if look.hat is not None:
        draw.rectangle([head[0] - 1, top - head_r * 0.25, head[2] + 1, top + head_r * 0.6], fill=look.hat)
    return layer


def render_person(look: PersonLook, style: CameraStyle, rng: np.random.Generator) -> Image.Image:
    """One camera frame of `look`, Market-1501 size (64 x 128)."""
    big = (PERSON_SIZE[0] * _SUPERSAMPLE, PERSON_SIZE[1] * _SUPERSAMPLE)
    frame = draw_background(style, big, rng)
    view = PERSON_VIEWS[pick_view(style, rng)]
    figure = _draw_figure(look, view, big, style.scale, rng)
    if view == "side" and rng.random() < 0.5:
        figure = ImageOps.mirror(figure)
    frame.paste(figure, (0, 0), figure)
    if rng.random() < 0.12:  # a passer-by or object hides part of the person
        draw = ImageDraw.Draw(frame)
        w, h = big
        if rng.random() < 0.5:
            draw.rectangle([0, h * rng.uniform(0.65, 0.8), w, h], fill=pick_colour(rng, jitter=30))
        else:
            x = w * rng.uniform(0.55, 0.7) if rng.random() < 0.5 else 0
            draw.rectangle([x, 0, x + w * rng.uniform(0.3, 0.45), h], fill=pick_colour(rng, jitter=30))
    return apply_camera(frame.reduce(_SUPERSAMPLE), style, rng)
