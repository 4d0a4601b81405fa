"""The split names of every data set the paper uses, defined once (folder names under the data root).

DIS5K: the training split, the validation split and the four test splits of rising structural
complexity; Table I also reports DIS-TE(ALL), the mean of the four. Table II: the zero-shot sets, and
ALL, their images pooled as one set. Procedural data (tiny and smoke profiles) uses the same names.
"""
from __future__ import annotations

TRAIN_SPLIT = "DIS-TR"
VAL_SPLIT = "DIS-VD"
TEST_SPLITS = ("DIS-TE1", "DIS-TE2", "DIS-TE3", "DIS-TE4")
DIS5K_SPLITS = (TRAIN_SPLIT, VAL_SPLIT, *TEST_SPLITS)
TE_ALL = "DIS-TE(ALL)"  # Table I: the mean of the four DIS-TE data-set values

ZERO_SHOT_SETS = ("COIFT", "HRSOD", "ThinObject5K-TE")
ZERO_SHOT_ALL = "ALL"  # Table II: the images of the zero-shot sets pooled as one set
