"""Spectral clustering of the kNN graph, without importing scikit-learn.

The same algorithm as scikit-learn's ``SpectralClustering(affinity="nearest_neighbors",
assign_labels="cluster_qr")``: the symmetrised 0/1 k-nearest-neighbour graph (self
included), the eigenvectors of its normalised Laplacian nearest 0 by ARPACK in shift-invert
mode, and labels by QR pivoting of those eigenvectors (Damle, Minden & Ying, 2019). Written
out here (faiss for the neighbours, SciPy for the eigenvectors) because importing
``sklearn.cluster`` alone costs about a second, most of a small run's clustering time.
``tests/test_algorithms.py`` checks it against scikit-learn's labels.
"""

from __future__ import annotations

import numpy as np


def nearest_neighbours(x: np.ndarray, k: int) -> np.ndarray:
    """``(n, k)`` indices of each row's ``k`` nearest rows by exact L2 (itself among them),
    nearest first; ``k`` at most ``n``."""
    import faiss

    index = faiss.IndexFlatL2(x.shape[1])
    index.add(np.ascontiguousarray(x, dtype=np.float32))
    _, idx = index.search(np.ascontiguousarray(x, dtype=np.float32), k)
    return idx


def knn_affinity(x: np.ndarray, n_neighbors: int) -> object:
    """``0.5 (C + Cᵀ)`` of the 0/1 kNN connectivity ``C`` (self included), CSR float64."""
    from scipy.sparse import csr_matrix

    n = len(x)
    nn = min(n_neighbors, n)
    idx = nearest_neighbours(x, nn)
    c = csr_matrix((np.ones(n * nn), idx.ravel(), np.arange(0, n * nn + 1, nn)), shape=(n, n))
    c.sum_duplicates()
    c.data[:] = 1.0
    return 0.5 * (c + c.T)


def spectral_embedding(affinity: object, n_components: int, random_state: int) -> np.ndarray:
    """The ``(n, n_components)`` spectral embedding of a symmetric affinity matrix."""
    from scipy.sparse import csgraph, csr_matrix
    from scipy.sparse.linalg import eigsh, lobpcg

    laplacian, dd = csgraph.laplacian(affinity, normed=True, return_diag=True)
    laplacian = csr_matrix(laplacian)
    laplacian.setdiag(1.0)  # normed: an isolated node still gets 1 on the diagonal
    n = laplacian.shape[0]
    v0 = np.random.RandomState(random_state).uniform(-1, 1, n)
    try:
        # The eigenvalues nearest 0 by shift-invert just below 0 (L is singular at 0).
        _, vectors = eigsh(laplacian, k=n_components, sigma=-1e-5, which="LM", tol=0, v0=v0)
        embedding = vectors.T[:n_components] / dd
    except RuntimeError:  # an exactly singular factorisation: LOBPCG does not factorise
        x0 = np.random.RandomState(random_state).standard_normal((n, n_components + 1))
        x0[:, 0] = dd.ravel()
        _, vectors = lobpcg(laplacian, x0, tol=1e-5, largest=False, maxiter=2000)
        embedding = (vectors / dd[:, None]).T
    # Each vector's sign fixed by its largest entry, so the result does not depend on ARPACK.
    signs = np.sign(embedding[np.arange(len(embedding)), np.abs(embedding).argmax(axis=1)])
    return (embedding * signs[:, None])[:n_components].T


def cluster_qr(vectors: np.ndarray) -> np.ndarray:
    """Labels from spectral vectors by column-pivoted QR: deterministic, no k-means."""
    from scipy.linalg import qr, svd

    k = vectors.shape[1]
    _, _, piv = qr(vectors.T, pivoting=True)
    ut, _, v = svd(vectors[piv[:k], :].T)
    return np.abs(vectors @ (ut @ v.conj())).argmax(axis=1)


def spectral_labels(
    x: np.ndarray, n_clusters: int, *, n_neighbors: int = 10, random_state: int = 0
) -> np.ndarray:
    """Cluster the rows of ``x`` (float32, contiguous) into ``n_clusters`` groups."""
    affinity = knn_affinity(x, n_neighbors)
    return cluster_qr(spectral_embedding(affinity, n_clusters, random_state))
