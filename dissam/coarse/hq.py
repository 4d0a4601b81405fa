"""HQ-SAM's package, imported on first use: ``segment_anything_hq`` is an optional extra (``dissam[hq]``)."""
from __future__ import annotations

import warnings
from typing import Any

HQ_RELEASE = "https://github.com/SysCV/sam-hq (README, 'Model Checkpoints')"
HQ_INSTALL = ("HQ-SAM needs the optional package segment_anything_hq: pip install 'dissam[hq]' (or pip install "
              "segment-anything-hq timm: it imports timm without declaring it); its checkpoints "
              f"(sam_hq_vit_b.pth, ...) are listed at {HQ_RELEASE}")


def import_hq() -> Any:
    """segment_anything_hq, or an ImportError that says how to install it. Its import warnings are
    silenced: timm's notices that ``timm.models.layers`` / ``.registry`` moved, and that the package
    re-registers timm's ``tiny_vit_*`` model names with its own TinyViT (dissam uses neither name)."""
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"Importing from timm\.models\.(layers|registry) is deprecated")
            warnings.filterwarnings("ignore", message="Overwriting tiny_vit_")
            import segment_anything_hq
    except ImportError as err:
        raise ImportError(HQ_INSTALL) from err
    return segment_anything_hq
