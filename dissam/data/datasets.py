"""The refiner's torch Dataset, and the seam to stage 1 (where coarse masks come from).

A *coarse source* is any callable ``source(stem, image, box) -> uint8 HxW`` mask at the image's size:
:class:`MaskFolderSource` reads saved masks, :class:`SegmenterSource` asks a live segmenter (anything with
``set_image`` and ``predict``), and the stage-1 cache (:mod:`dissam.coarse`) offers the same call.

:class:`RefinerDataset` turns an im/gt folder into samples: one per enriched GT component (training) or
one per image (``enrichment=None``, evaluation). Each sample's target is its own component (the GT's
values inside it); the other components are background. Targets stay soft, as in the references: the GT
is resized bilinearly and divided by 255, never re-binarised, so a 1-px wire survives a 3x shrink.
Every sample is two uint8 arrays at the network size, made by one function
(:func:`dissam.data.resized_cache.image_arrays`); where they live is the data set's ``storage``:
``memory`` (``preload=True``, the CPU profiles), ``disk`` (``cache_dir``: built once, in parallel, then
memory-mapped; DIS5K at 1024^2) or ``files`` (``preload=False``: computed per item from the originals).
All three give the same tensors, bit for bit.

Flips: training draws them in the main process (:func:`draw_flips`, from a generator the loop owns) and
asks :class:`TrainingItems` for ``(index, hflip, vflip)``, so they depend neither on the number of
DataLoader workers nor on where a run resumes. Indexing the data set itself (``dataset[i]``) draws them
from torch's global RNG (notebooks, figures). Training items stay uint8 until they reach the device
(:func:`network_tensors`): a quarter of the bytes through the workers' shared memory and the pinned copy.

A profile's split as such a data set: :func:`dissam.repro.stages.refiner_dataset`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence, runtime_checkable

import numpy as np
import torch
from torch.utils.data import Dataset

from .enrichment import ENRICHMENT_RULES, target_mask
from .folders import Pair, list_pairs
from .images import DataError, read_mask
from .prompts import Box
from .resized_cache import ArraySpec, coarse_masks, memory_arrays, open_disk_arrays, sample_arrays, sample_records

AUGMENTS = (None, "hflip", "hvflip")
ENRICHMENTS = (None, "none", *ENRICHMENT_RULES)


@runtime_checkable
class CoarseSource(Protocol):
    """Stage-1 masks for the refiner: ``(stem, image uint8 HxWx3, box xyxy) -> uint8 HxW``."""

    def __call__(self, stem: str, image: np.ndarray, box: Box) -> np.ndarray: ...


class MaskFolderSource:
    """Coarse masks saved as ``<folder>/<stem>.png`` (the same mask whatever the box)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def __call__(self, stem: str, image: np.ndarray, box: Box) -> np.ndarray:
        path = self.folder / f"{stem}.png"
        mask = read_mask(path)
        if mask.shape != image.shape[:2]:
            raise DataError(f"coarse mask {path} is {mask.shape[1]}x{mask.shape[0]}, "
                            f"its image is {image.shape[1]}x{image.shape[0]}")
        return mask

    def __repr__(self) -> str:
        return f"MaskFolderSource({str(self.folder)!r})"


class SegmenterSource:
    """A live stage-1 segmenter as a coarse source; the image is set once per stem, boxes reuse it."""

    def __init__(self, segmenter) -> None:
        self.segmenter = segmenter
        self._current: tuple | None = None

    def __call__(self, stem: str, image: np.ndarray, box: Box) -> np.ndarray:
        key = (stem, image.shape, hash(image[::7, ::7].tobytes()))
        if key != self._current:
            self.segmenter.set_image(image)
            self._current = key
        out = self.segmenter.predict(box)
        mask = np.asarray(getattr(out, "mask", out))
        return mask.astype(np.uint8) * 255 if mask.dtype == bool else mask.astype(np.uint8)


@dataclass
class Sample:
    """One training/evaluation target: a GT component of one image (``index`` -1 = the whole GT).

    ``box`` is the prompt box at the original resolution (the component's tight box, jittered when asked).
    Arrays are filled by :meth:`load` (lazily, unless the dataset preloads).
    """

    stem: str
    index: int
    box: Box
    pair: Pair
    hw: tuple[int, int]
    image: np.ndarray | None = None
    gt: np.ndarray | None = None
    coarse: np.ndarray | None = None


def _pairs(folder_or_pairs: str | Path | Sequence[Pair]) -> list[Pair]:
    if isinstance(folder_or_pairs, (str, Path)):
        return list_pairs(folder_or_pairs)
    return list(folder_or_pairs)


class RefinerDataset(Dataset):
    """Samples for the refiner: ``{"input": [in_ch,S,S], "gt": [1,S,S], "stem", "index", "box", "hw"}``.

    ``input`` = RGB/255 - 0.5, coarse mask/255, filled box/255 (:func:`transforms.make_input`); channels
    switched off by ``use_mask``/``use_box`` are zeros (Table III). ``augment``: ``"hflip"`` (paper: p=0.5)
    or ``"hvflip"`` (authors' code: 25% h, 25% v, 25% both), applied to input, GT and box alike.
    ``jitter`` > 0 moves each box side by up to that share of the box (fixed per sample, drawn from
    ``seed``), and the coarse source is asked with that same box, so stage-1 masks stay cacheable.
    ``cache_dir``: keep the arrays on disk there (built by ``workers`` threads where missing, reused
    after; the coarse source then needs a ``key``, e.g. the stage-1 cache's reader).
    """

    def __init__(self, folder_or_pairs: str | Path | Sequence[Pair], coarse: CoarseSource | None, size: int,
                 enrichment: str | None = "filtered", augment: str | None = "hflip", use_box: bool = True,
                 use_mask: bool = True, in_ch: int = 5, preload: bool = True, jitter: float = 0.0,
                 seed: int = 0, verbose: bool = False, cache_dir: str | Path | None = None,
                 workers: int | None = None) -> None:
        if enrichment not in ENRICHMENTS:
            raise ValueError(f"enrichment must be one of {ENRICHMENTS}, not {enrichment!r}")
        if augment not in AUGMENTS:
            raise ValueError(f"augment must be one of {AUGMENTS}, not {augment!r}")
        if in_ch not in (3, 5):
            raise ValueError(f"the refiner takes 3 or 5 input channels, not {in_ch}")
        self.use_mask = use_mask and in_ch == 5
        self.use_box = use_box and in_ch == 5
        if self.use_mask and coarse is None:
            raise ValueError("use_mask=True needs a coarse source (stage-1 masks); pass one, or use_mask=False")
        self.coarse, self.size, self.enrichment, self.augment = coarse, int(size), enrichment, augment
        self.in_ch, self.jitter, self.seed = in_ch, float(jitter), seed
        self.pairs = _pairs(folder_or_pairs)
        self.spec = ArraySpec(self.size, enrichment, self.jitter, seed, self.use_mask, self.use_box,
                              _stage1_key(coarse) if self.use_mask and cache_dir is not None else None)
        self.storage = "disk" if cache_dir is not None else "memory" if preload else "files"
        self.preload = self.storage != "files"
        self.cache_manifest: dict | None = None  # what the on-disk cache did (storage "disk")
        self._arrays, records, rows = self._open_storage(cache_dir, workers, verbose)
        self.samples: list[Sample] = []
        self._image_of: list[int] = []  # per sample: its image's rgb row (memory) or its image (disk, files)
        for pair, image_records, row in zip(self.pairs, records, rows):
            for index, box, hw in image_records:
                self.samples.append(Sample(pair.stem, index, box, pair, hw))
                self._image_of.append(row)
        if not self.samples:
            raise DataError(f"no sample: every GT mask is empty in {len(self.pairs)} image(s)")
        if verbose and enrichment not in (None, "none"):
            print(f"GT enrichment ({enrichment}) of {Path(self.pairs[0].gt_path).parent.parent.name}: "
                  f"{len(self.pairs)} images -> {len(self.samples)} samples")

    # ------------------------------------------------------------------ building
    def _open_storage(self, cache_dir: str | Path | None, workers: int | None, verbose: bool):
        """(storage, samples per image, rgb row per image): the arrays in memory, on disk (built or reused
        under ``cache_dir``), or none (``files``: each item is computed from the original files)."""
        if self.storage == "disk":
            arrays, records, rows, self.cache_manifest = open_disk_arrays(
                self.pairs, self.spec, self.coarse, cache_dir, workers=workers, progress=verbose)
            return arrays, records, rows
        if self.storage == "memory":
            return memory_arrays(self.pairs, self.spec, self.coarse)
        records = [sample_records(pair, k, self.spec) for k, pair in enumerate(self.pairs)]
        return None, records, list(range(len(self.pairs)))

    def _coarse(self, stem: str, image: np.ndarray, box: Box) -> np.ndarray:
        return coarse_masks(self.coarse, stem, image, [box])[0]

    def load(self, i: int) -> Sample:
        """The sample with its arrays at the original resolution (image, soft target GT 0..255, coarse mask)."""
        s = self.samples[i]
        image, gt = s.pair.load()
        target = target_mask(gt, self.enrichment, s.index)
        coarse = self._coarse(s.stem, image, s.box) if self.use_mask else None
        return Sample(s.stem, s.index, s.box, s.pair, s.hw, image, target, coarse)

    # ------------------------------------------------------------------ access
    def __len__(self) -> int:
        return len(self.samples)

    @property
    def counts(self) -> dict[str, int]:
        """Base images -> samples (what enrichment did)."""
        return {"images": len(self.pairs), "samples": len(self.samples)}

    def arrays(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample ``i`` as stored: uint8 RGB ``[3, S, S]`` and uint8 aux planes ``[C, S, S]``
        (``self.spec.channels``: stage-1 mask and box when switched on, the soft target GT last)."""
        if self._arrays is None:
            s = self.samples[i]
            rgb, aux = sample_arrays(s.pair, (s.index, s.box, s.hw), self.spec, self.coarse)
            return torch.from_numpy(rgb), torch.from_numpy(aux)
        return self._arrays.rgb(self._image_of[i]), self._arrays.aux(i)

    def network_tensors(self, rgb: torch.Tensor, aux: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """This data set's network input and target from stored arrays (:func:`network_tensors`)."""
        return network_tensors(rgb, aux, self.spec.channels, self.in_ch)

    def item(self, i: int, hflip: bool = False, vflip: bool = False) -> dict:
        """Sample ``i`` flipped as asked, as stored: uint8 ``rgb`` ``[3, S, S]`` and ``aux`` ``[C, S, S]``,
        with its ``box`` (xyxy, original pixels, flipped alike), ``hw``, ``stem`` and ``index``."""
        rgb, aux = self.arrays(i)
        s = self.samples[i]
        x0, y0, x1, y1 = s.box
        h, w = s.hw
        if hflip:
            rgb, aux = rgb.flip(-1), aux.flip(-1)
            x0, x1 = w - x1, w - x0
        if vflip:
            rgb, aux = rgb.flip(-2), aux.flip(-2)
            y0, y1 = h - y1, h - y0
        return {"rgb": rgb.contiguous(), "aux": aux.contiguous(), "stem": s.stem, "index": s.index,
                "box": torch.tensor([x0, y0, x1, y1], dtype=torch.int64), "hw": torch.tensor([h, w])}

    def __getitem__(self, i: int) -> dict:
        """Sample ``i`` as the network sees it: float32 ``input`` ``[in_ch, S, S]`` and ``gt`` ``[1, S, S]``
        (:func:`network_tensors`), flipped by a draw from torch's global RNG when the data set augments."""
        hflip, vflip = draw_flips(self.augment, 1)[0]
        sample = self.item(i, hflip, vflip)
        x, gt = self.network_tensors(sample.pop("rgb"), sample.pop("aux"))
        return {"input": x, "gt": gt, **sample}

    def __repr__(self) -> str:
        return (f"RefinerDataset({self.counts['images']} images -> {len(self)} samples, size={self.size}, "
                f"enrichment={self.enrichment!r}, augment={self.augment!r}, mask={self.use_mask}, "
                f"box={self.use_box}, storage={self.storage!r})")


def draw_flips(augment: str | None, n: int, generator: torch.Generator | None = None) -> list[tuple[bool, bool]]:
    """``n`` (hflip, vflip) draws: ``"hflip"`` (paper) flips horizontally with p=0.5; ``"hvflip"`` (authors'
    code) gives none, h, v or both with 25% each; ``None`` never flips. One draw per sample, in order, from
    ``generator`` (torch's global RNG when None): a block of ``n`` draws equals ``n`` single ones."""
    if augment == "hflip":
        return [(bool(h), False) for h in (torch.rand(n, generator=generator) < 0.5).tolist()]
    if augment == "hvflip":
        return [(bool(k & 1), bool(k & 2)) for k in torch.randint(0, 4, (n,), generator=generator).tolist()]
    return [(False, False)] * n


def network_tensors(rgb: torch.Tensor, aux: torch.Tensor, channels: Sequence[str],
                    in_ch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stored uint8 arrays -> float32 network input and target, on their device, with or without a
    leading batch dimension: ``rgb`` ``[..., 3, S, S]``, ``aux`` ``[..., C, S, S]`` (planes named by
    ``channels``, the soft GT last) -> input ``[..., in_ch, S, S]`` = RGB/255 - 0.5, then (5 channels)
    coarse mask/255 and box/255, zeros where switched off; target GT/255 ``[..., 1, S, S]``."""
    rgb = rgb.float() / 255.0 - 0.5
    aux = aux.float() / 255.0
    gt = aux[..., -1:, :, :]
    if in_ch == 3:
        return rgb, gt
    planes = {name: aux[..., c:c + 1, :, :] for c, name in enumerate(channels)}
    zeros = torch.zeros_like(gt)
    return torch.cat([rgb, planes.get("coarse", zeros), planes.get("box", zeros)], dim=-3), gt


class TrainingItems(Dataset):
    """A :class:`RefinerDataset` indexed by ``(index, hflip, vflip)``: the uint8 item of
    :meth:`RefinerDataset.item`, what DataLoader workers make; the caller draws the flips
    (:func:`draw_flips`) and turns a batch into network tensors on its device (:meth:`to_network`)."""

    def __init__(self, dataset: RefinerDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, bool, bool]) -> dict:
        index, hflip, vflip = key
        return self.dataset.item(index, hflip, vflip)

    def to_network(self, batch: dict, device: torch.device) -> dict:
        """A collated batch -> ``{"input": [B, in_ch, S, S], "gt": [B, 1, S, S]}`` float32 on ``device``
        (uint8 crosses to the device; the conversion runs there)."""
        x, gt = self.dataset.network_tensors(batch["rgb"].to(device, non_blocking=True),
                                             batch["aux"].to(device, non_blocking=True))
        return {"input": x, "gt": gt}


def _stage1_key(coarse) -> str:
    """The key that identifies a coarse source's masks on disk (the stage-1 cache reader has one)."""
    key = getattr(coarse, "key", None)
    if not isinstance(key, str):
        raise ValueError(f"an on-disk data set with the mask channel needs a coarse source with a key (str) that "
                         f"identifies its masks, such as dissam.coarse.CachedCoarse; {coarse!r} has none")
    return key
