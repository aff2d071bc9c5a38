"""What is clustered: the stored logits/embeddings turned into the chosen feature space.

* ``embedding``: the pooled penultimate embedding, L2-normalised (the default; see README).
* ``embedding-centred``: the L2-normalised embedding minus the collection's mean, then
  L2-normalised again (what every photo shares is taken out before comparing directions).
* ``logits``: the 1000 ImageNet logits as they are.
* ``scores``: softmax class scores, as in the original method.
* ``sqrt-scores``: square root of the scores (Hellinger); rows have unit L2 norm.
"""

from __future__ import annotations

import numpy as np

from ..config import FEATURE_KINDS


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float32, stable for float16 input."""
    z = logits.astype(np.float32)
    z -= z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero), float32."""
    x = x.astype(np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def centre_and_normalize(x: np.ndarray, centre: np.ndarray | None = None) -> np.ndarray:
    """Rows minus ``centre`` (default: their own mean), scaled to unit L2 norm, float32."""
    if centre is None:
        centre = x.mean(axis=0, dtype=np.float64).astype(np.float32)
    return l2_normalize(x.astype(np.float32) - centre)


def make_features(
    kind: str, *, logits: np.ndarray, embedding: np.ndarray, centre: np.ndarray | None = None
) -> np.ndarray:
    """Build the float32 feature matrix of ``kind`` (see the module docstring).

    ``centre``: for ``embedding-centred``, the mean to take out, that of the collection the
    rows are compared with (a clustered collection's, from its saved state); ``None`` takes
    these rows' own mean.
    """
    if kind == "embedding":
        return l2_normalize(embedding)
    if kind == "embedding-centred":
        return centre_and_normalize(l2_normalize(embedding), centre)
    if kind == "logits":
        return logits.astype(np.float32)
    if kind == "scores":
        return softmax(logits)
    if kind == "sqrt-scores":
        return np.sqrt(softmax(logits))
    raise ValueError(f"unknown feature kind {kind!r}")


def feature_source(kind: str) -> str:
    """The stored array ``kind`` is made from: ``"embedding"`` or ``"logits"``."""
    if kind not in FEATURE_KINDS:
        raise ValueError(f"unknown feature kind {kind!r}")
    return "embedding" if kind in ("embedding", "embedding-centred") else "logits"


def row_features(kind: str, rows: np.ndarray) -> np.ndarray:
    """``kind``'s features of some rows of its :func:`feature_source` (float32).

    Exact for every kind but ``embedding-centred``, which also needs the collection's mean:
    here its rows are only normalised, and :func:`finish_features` centres them.
    """
    if kind == "embedding-centred":
        return l2_normalize(rows)
    return make_features(kind, logits=rows, embedding=rows)


def finish_features(kind: str, features: np.ndarray, *, rows: int = 65536) -> np.ndarray | None:
    """Complete, in place, a matrix filled by :func:`row_features` (centring, if ``kind``
    needs it), ``rows`` at a time: no second full-size copy.

    Returns the centre taken out (float32), which new images need to join this feature
    space (see :func:`make_features`), or ``None`` when ``kind`` has none.
    """
    if kind != "embedding-centred":
        return None
    total = np.zeros(features.shape[1], dtype=np.float64)
    for start in range(0, len(features), rows):
        total += features[start : start + rows].sum(axis=0, dtype=np.float64)
    mean = (total / max(len(features), 1)).astype(np.float32)
    for start in range(0, len(features), rows):
        part = slice(start, start + rows)
        features[part] = centre_and_normalize(features[part], mean)
    return mean


def make_features_lowmem(
    kind: str, *, logits: np.ndarray, embedding: np.ndarray, rows: int = 65536
) -> np.ndarray:
    """:func:`make_features` built ``rows`` at a time into a float16 matrix.

    Half the memory of the float32 result and never a whole float32 copy: what keeps a
    million-image run within a few GB. Clusters do not change (features are stored as
    float16 already). A run streams the store straight into such a matrix instead (see
    :func:`row_features`); this is the same for arrays already in memory.
    """
    source = embedding if feature_source(kind) == "embedding" else logits
    out = np.empty(source.shape, dtype=np.float16)
    for start in range(0, len(source), rows):
        out[start : start + rows] = row_features(kind, source[start : start + rows])
    finish_features(kind, out, rows=rows)
    return out
