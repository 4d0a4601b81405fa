"""Procedural DIS-like data: scenes of thin, perforated and solid objects on textured backgrounds, with
exact GT masks, written in DIS5K layout (the CPU profiles' data; no download).

``scenes`` composes a scene and writes data sets (:func:`generate_dataset`); ``shapes`` and ``solids``
draw the objects, ``drawing`` holds the stroke primitives, ``textures`` the backgrounds.
"""
from __future__ import annotations

from .scenes import SCENES, generate_dataset, render_scene, scene_rng, solid_core_fraction, split_plan

__all__ = ["SCENES", "generate_dataset", "render_scene", "scene_rng", "solid_core_fraction", "split_plan"]
