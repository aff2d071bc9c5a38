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


def make_features(kind: str, *, logits: np.ndarray, embedding: np.ndarray) -> np.ndarray:
    """Build the float32 feature matrix of ``kind`` (see the module docstring)."""
    if kind == "embedding":
        return l2_normalize(embedding)
    if kind == "embedding-centred":
        e = l2_normalize(embedding)
        return l2_normalize(e - e.mean(axis=0, dtype=np.float64).astype(np.float32))
    if kind == "logits":
        return logits.astype(np.float32)
    if kind == "scores":
        return softmax(logits)
    if kind == "sqrt-scores":
        return np.sqrt(softmax(logits))
    raise ValueError(f"unknown feature kind {kind!r}")


def make_features_lowmem(
    kind: str, *, logits: np.ndarray, embedding: np.ndarray, rows: int = 65536
) -> np.ndarray:
    """:func:`make_features` built ``rows`` at a time into a float16 matrix.

    Half the memory of the float32 result and never a whole float32 copy: what keeps a
    million-image run within a few GB. Clusters do not change (features are stored as
    float16 already).
    """
    uses_embedding = kind in ("embedding", "embedding-centred")
    source = embedding if uses_embedding else logits
    n, width = source.shape
    out = np.empty((n, width), dtype=np.float16)
    if kind == "embedding-centred":
        # The collection's mean direction, accumulated chunk by chunk, then removed from each.
        total = np.zeros(width, dtype=np.float64)
        for start in range(0, n, rows):
            total += l2_normalize(embedding[start : start + rows]).sum(axis=0, dtype=np.float64)
        mean = (total / max(n, 1)).astype(np.float32)
        for start in range(0, n, rows):
            part = slice(start, start + rows)
            out[part] = l2_normalize(l2_normalize(embedding[part]) - mean)
        return out
    for start in range(0, n, rows):
        part = slice(start, start + rows)
        out[part] = make_features(kind, logits=logits[part], embedding=embedding[part])
    return out


def is_normalized(kind: str) -> bool:
    """Whether rows of ``kind`` lie on the unit sphere (then k-means is spherical)."""
    return kind in ("embedding", "embedding-centred", "sqrt-scores")
