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


def is_normalized(kind: str) -> bool:
    """Whether rows of ``kind`` lie on the unit sphere (then k-means is spherical)."""
    return kind in ("embedding", "embedding-centred", "sqrt-scores")
