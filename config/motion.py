"""Motion settings per camera: ignore masks (polygons) and sensitivity, validated.

Polygon points are normalized ``[x, y]`` in 0..1 of the picture (0,0 top left),
so one mask fits the main and the sub stream alike. A mask given in pixels names
its reference size (``ref_width``/``ref_height``) and is normalized on the way in.
Points outside the frame and self-intersecting polygons are refused with the reason.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

Point = tuple[float, float]


def _orient(a: Point, b: Point, c: Point) -> float:
    return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])


def _segments_cross(p1: Point, p2: Point, q1: Point, q2: Point) -> bool:
    """True when the closed segments p1p2 and q1q2 touch or cross."""
    d1, d2 = _orient(q1, q2, p1), _orient(q1, q2, p2)
    d3, d4 = _orient(p1, p2, q1), _orient(p1, p2, q2)
    if ((d1 > 0) != (d2 > 0)) and ((d3 > 0) != (d4 > 0)) and 0 not in (d1, d2, d3, d4):
        return True

    def on(a: Point, b: Point, c: Point) -> bool:
        return min(a[0], b[0]) <= c[0] <= max(a[0], b[0]) and min(a[1], b[1]) <= c[1] <= max(a[1], b[1])

    return (d1 == 0 and on(q1, q2, p1)) or (d2 == 0 and on(q1, q2, p2)) or \
        (d3 == 0 and on(p1, p2, q1)) or (d4 == 0 and on(p1, p2, q2))


def self_intersection(points: list[Point]) -> tuple[int, int] | None:
    """The first pair of non-adjacent edges (by index) that touch or cross, or None."""
    n = len(points)
    edges = [(points[i], points[(i + 1) % n]) for i in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            if j == i + 1 or (i == 0 and j == n - 1):
                continue  # adjacent edges share a vertex by construction
            if _segments_cross(*edges[i], *edges[j]):
                return i, j
    return None


class MotionMask(BaseModel):
    """One region to ignore (trees, a road): a simple polygon of 3+ points."""

    model_config = ConfigDict(extra="forbid")

    points: list[Point] = Field(min_length=3, max_length=64)
    # When set, ``points`` are pixels of a ref_width x ref_height picture.
    ref_width: int | None = Field(None, ge=16, le=16384)
    ref_height: int | None = Field(None, ge=16, le=16384)

    @model_validator(mode="after")
    def _check(self) -> "MotionMask":
        if (self.ref_width is None) != (self.ref_height is None):
            raise ValueError("give both ref_width and ref_height (pixel points) or neither (points in 0..1)")
        w, h = (self.ref_width, self.ref_height) if self.ref_width and self.ref_height else (1, 1)
        for i, (x, y) in enumerate(self.points):
            if not (0 <= x <= w and 0 <= y <= h):
                unit = f"{w}x{h} pixels" if self.ref_width else "0..1 (normalized)"
                raise ValueError(f"mask point {i} ({x:g}, {y:g}) is outside the frame: use coordinates within {unit}")
        points = [(x / w, y / h) for x, y in self.points]
        if len(set(points)) != len(points):
            raise ValueError("mask polygon repeats a point; give each corner once")
        crossing = self_intersection(points)
        if crossing is not None:
            raise ValueError(f"mask polygon is self-intersecting (edges {crossing[0]} and {crossing[1]} cross); "
                             "list the corners in order around the shape")
        self.points, self.ref_width, self.ref_height = points, None, None
        return self


class MotionSettings(BaseModel):
    """A camera's motion analysis settings."""

    model_config = ConfigDict(extra="forbid")

    masks: list[MotionMask] = Field(default_factory=list, max_length=32)
    # 1 (only big changes) .. 100 (any change); sets the foreground threshold.
    sensitivity: int = Field(50, ge=1, le=100)
