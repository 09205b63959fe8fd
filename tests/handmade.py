"""Hand-built thumbnail features for the verification rules' unit tests: unit vectors in the
shapes `attribute._Feats` holds (grey 32x16, gradients), so one rule is seen alone."""

from __future__ import annotations

import numpy as np

from camleak.attribute import AttributionParams, _check, _Feats

GREY, EDGES = 512, 96


def unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v)).astype(np.float32)


def named_own_view(feats: _Feats, **params):
    """`_check`'s problem (or None) for frame "x" of cam-src, where the log names cam-named, the
    recipient's own camera, and cam-named is the only rival."""
    return _check("x", "cam-src", {"cam-named"}, "cam-named", set(), feats, AttributionParams(**params),
                  own_view="cam-named")[0]
