"""MoTHer (Horwitz, Shul & Hoshen; arXiv 2405.18432, ICLR 2025), re-implemented as a baseline.

Written from a reading of the authors' released code (github eliahuhorwitz/MoTHer:
``MoTHer_FullFT.py``, ``MDST.py``, ``utils.py``, ``clustering.py``,
``get_vit_layers_statistics.py``, ``test_llama_and_sd.py``); none of it is copied.

What it does, per architecture group (the caller groups models by architecture):

1. **Families.** Ward linkage on, for every pair, the sum over the square 2-D weight
   matrices of mean |W_a - W_b|; the tree is cut into ``n_families`` clusters (MoTHer
   needs the number of families by hand; the bench passes the true K).
2. **Distance inside a family** (``distance=``):

   - ``"minmax-max"`` (default): the authors' full fine-tuning code at commit 9ac0d5d and
     the only distance their Llama-2 and Stable Diffusion scripts use. Models are taken in
     a fixed order (sorted ids); for each layer and each pair a < b, Delta = W_a - W_b.
     Over all pairs of the family, m = the smallest entry of any Delta and M = the largest.
     The layer's distance is max((Delta - m) / (M - m)) = (max Delta - m) / (M - m), a
     number in [0, 1]. The model distance is the **maximum** over layers. (The value is
     signed: it uses max(W_a - W_b), not max |W_a - W_b|, with a before b.)
   - ``"rms-mean"``: the newer ICLR-2025 copy of ``MoTHer_FullFT.py``: per layer
     sqrt(mean(Delta^2)), averaged over layers. No normalisation.

   Layers: the square matrices among the per-block kinds the authors list (ViT
   ``attention.attention.{query,key,value}`` and ``attention.output.dense``; Llama
   ``self_attn.{q,k,v,o}_proj`` and ``mlp.{gate,up,down}_proj``, whose MLP matrices are
   never square in practice); for other architectures every square 2-D matrix (what their
   Stable Diffusion script does).
3. **Kurtosis.** scipy's excess kurtosis (Fisher, biased) of each flattened matrix,
   **summed** over the attention output projections only: llama-style
   ``...self_attn.o_proj.weight``, ViT/BERT ``...attention.output.dense.weight`` (the
   authors' ``'output.dense'`` substring plus their square filter selects exactly these),
   and a few other spellings of the same layer (see ``ATTENTION_OUTPUT_SUFFIXES``).
   Without attention (our MLP zoo) every square 2-D matrix is used, as the authors do for
   the Stable Diffusion UNet (``calc_ku`` with no layer kind); if a model has no square
   matrix at all (not a case the authors meet) every 2-D matrix is used.
4. **Tree.** Cost of edge parent i -> child j:
   C[i, j] = D[i, j] + lambda * mean(D) * T[i, j], lambda = 0.3, mean(D) over the whole
   n x n matrix including its zero diagonal, T binary:

   - ``direction="decreasing"`` (the authors' default, ``rev=False``; ViT and Llama-2):
     T[i, j] = 1 when kurtosis_j > kurtosis_i, i.e. fine-tuning is assumed to lower
     kurtosis;
   - ``direction="increasing"`` (their ``rev=True``, used for Stable Diffusion):
     T[i, j] = 1 when kurtosis_j < kurtosis_i.

   The tree is the minimum spanning arborescence (Chu-Liu/Edmonds) of the complete
   directed graph, root free. The authors call NetworkX's ``Edmonds`` class, removed in
   NetworkX 3.4; ``nx.minimum_spanning_arborescence`` is the same algorithm. Edges are
   added in the authors' order (labels sorted descending), which only matters for ties.

What it outputs: one ``nx.DiGraph`` per direction over all input models, a forest with
one tree per family (n - K edges). Every edge is ``relation="finetune"``. Nodes carry
``family`` and ``kurtosis``; edges ``distance`` (D), ``cost`` (C), ``confidence`` (1.0: a
placeholder, MoTHer gives none) and ``method``. ``graph.graph`` records the method,
direction, distance kind, lambda, and ``relations = ("finetune",)``.

What it does not output: MoTHer has no notion of merges (one parent per model), of
duplicates or of quantized / re-saved copies (they become ordinary fine-tune edges,
typically with the direction decided by a kurtosis coin), nor of adapters, nor of
confidence. A benchmark should print "n/a" for merge recall, copies found, relation
accuracy and calibration (``MotherResult.detects_merges`` / ``detects_copies`` are False).

Inputs: ``{model id: {tensor name: 2-D array}}`` (full weights, as the authors use) or
``{model id: Fingerprint}``. A fingerprint holding every entry of a matrix is used as the
full matrix; a sampled one contributes its sampled entries only, an approximation the
authors never make. Only tensors present in every model of the group with the same shape
are compared. Nothing here depends on model names or ids except the fixed pair order of
``"minmax-max"`` and tie-breaking.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import networkx as nx
import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform
from scipy.stats import kurtosis as _scipy_kurtosis

from heritage.fingerprint import Fingerprint
from heritage.lineage.types import Relation

__all__ = [
    "ATTENTION_OUTPUT_SUFFIXES",
    "DIRECTIONS",
    "DISTANCES",
    "LAMBDA",
    "METHOD",
    "RELATIONS",
    "TREE_LAYER_SUFFIXES",
    "DistanceKind",
    "KurtosisDirection",
    "MotherResult",
    "arborescence",
    "family_distances",
    "kurtosis_layers",
    "kurtosis_score",
    "mother",
    "mother_both",
    "square_matrices",
    "tree_distances",
    "tree_layers",
]

METHOD = "mother"
LAMBDA = 0.3
"""The authors' lambda in every script."""

KurtosisDirection = Literal["decreasing", "increasing"]
DistanceKind = Literal["minmax-max", "rms-mean"]
DIRECTIONS: tuple[KurtosisDirection, ...] = ("decreasing", "increasing")
DISTANCES: tuple[DistanceKind, ...] = ("minmax-max", "rms-mean")

RELATIONS: tuple[str, ...] = (str(Relation.FINETUNE),)
"""The only relation MoTHer outputs."""

ATTENTION_OUTPUT_SUFFIXES: tuple[str, ...] = (
    "self_attn.o_proj.weight",  # Llama, Mistral, Qwen (the authors' 'self_attn.o_proj')
    "attention.output.dense.weight",  # HF ViT / BERT (the authors' 'output.dense', square)
    "self_attn.out_proj.weight",  # CLIP, OPT, BART
    "attn.c_proj.weight",  # GPT-2
    "self_attention.dense.weight",  # Falcon, BLOOM
    "attention.dense.weight",  # GPT-NeoX
)
"""Name endings of the attention output projection, the layer MoTHer's kurtosis reads."""

TREE_LAYER_SUFFIXES: tuple[str, ...] = (
    # ViT (the authors' _get_layer_kinds(vit=True) under 'encoder.layer.{i}.attention.')
    "attention.attention.query.weight",
    "attention.attention.key.weight",
    "attention.attention.value.weight",
    "attention.output.dense.weight",
    # Llama (_get_layer_kinds(llama=True); norms are 1-D and MLP matrices are not square)
    "self_attn.q_proj.weight",
    "self_attn.k_proj.weight",
    "self_attn.v_proj.weight",
    "self_attn.o_proj.weight",
    "mlp.gate_proj.weight",
    "mlp.up_proj.weight",
    "mlp.down_proj.weight",
)
"""Name endings of the layers the authors' tree distance reads (square ones only)."""

Matrix = np.ndarray
ModelWeights = Mapping[str, np.ndarray] | Fingerprint


@dataclass(frozen=True)
class MotherResult:
    """Both kurtosis directions of one MoTHer run (shared families and distances).

    ``decreasing`` is the authors' default rule (fine-tuning lowers kurtosis),
    ``increasing`` their reversed rule. Each graph is a forest of ``finetune`` edges.
    """

    decreasing: nx.DiGraph
    increasing: nx.DiGraph
    families: dict[str, str]  # model id -> family label
    kurtosis: dict[str, float]  # model id -> summed excess kurtosis
    kurtosis_layers: tuple[str, ...]  # tensors the kurtosis read
    distance_layers: tuple[str, ...]  # tensors the tree distance read
    distance: DistanceKind
    lam: float
    relations: tuple[str, ...] = RELATIONS
    detects_merges: bool = False
    detects_copies: bool = False

    def graph(self, direction: KurtosisDirection) -> nx.DiGraph:
        """The forest built with ``direction``."""
        if direction == "decreasing":
            return self.decreasing
        if direction == "increasing":
            return self.increasing
        raise ValueError(f"direction must be one of {DIRECTIONS}, not {direction!r}")


# ----------------------------------------------------------------------------------------
# inputs and layer choice


@dataclass(frozen=True)
class _Tensor:
    shape: tuple[int, ...]  # the tensor's declared shape
    values: np.ndarray  # the full matrix, or the sampled entries of a fingerprint


def _as_tensors(model: ModelWeights) -> dict[str, _Tensor]:
    if isinstance(model, Fingerprint):
        out = {}
        for name, t in model.tensors.items():
            shape = tuple(int(s) for s in t.shape)
            if len(shape) != 2:
                continue
            full = t.values.size == shape[0] * shape[1]
            out[name] = _Tensor(shape, t.values.reshape(shape) if full else t.values)
        return out
    return {
        name: _Tensor(tuple(int(s) for s in np.shape(w)), np.asarray(w))
        for name, w in model.items()
        if np.ndim(w) == 2
    }


def _common(models: Sequence[Mapping[str, _Tensor]]) -> list[str]:
    """2-D tensors every model has with the same declared and stored shape."""
    first = models[0]
    return sorted(
        n
        for n, t in first.items()
        if all(
            n in m and m[n].shape == t.shape and m[n].values.shape == t.values.shape
            for m in models[1:]
        )
    )


def square_matrices(shapes: Mapping[str, tuple[int, ...]]) -> list[str]:
    """Names of the square 2-D tensors (the authors' filter), sorted."""
    return sorted(n for n, s in shapes.items() if len(s) == 2 and s[0] == s[1])


def _with_suffix(names: Iterable[str], suffixes: Sequence[str]) -> list[str]:
    return sorted(n for n in names if n.endswith(tuple(suffixes)))


def tree_layers(shapes: Mapping[str, tuple[int, ...]]) -> list[str]:
    """Tensors the tree distance reads: the authors' ViT/Llama layer kinds when present,
    else every square matrix (their Stable Diffusion rule), else every 2-D matrix."""
    square = square_matrices(shapes)
    return _with_suffix(square, TREE_LAYER_SUFFIXES) or square or _two_d(shapes)


def kurtosis_layers(shapes: Mapping[str, tuple[int, ...]]) -> list[str]:
    """Tensors the kurtosis reads: the square attention output projections when present,
    else every square matrix (the authors' UNet rule), else every 2-D matrix."""
    square = square_matrices(shapes)
    return _with_suffix(square, ATTENTION_OUTPUT_SUFFIXES) or square or _two_d(shapes)


def _two_d(shapes: Mapping[str, tuple[int, ...]]) -> list[str]:
    return sorted(n for n, s in shapes.items() if len(s) == 2)


def _cluster_layers(shapes: Mapping[str, tuple[int, ...]]) -> list[str]:
    return square_matrices(shapes) or _two_d(shapes)


# ----------------------------------------------------------------------------------------
# statistics


def kurtosis_score(matrices: Iterable[np.ndarray]) -> float:
    """Sum of scipy's excess kurtosis (Fisher, biased) of each flattened matrix.

    A constant matrix, whose kurtosis is undefined (NaN in the authors' code), adds 0.
    """
    total = 0.0
    for w in matrices:
        x = np.asarray(w, dtype=np.float64).ravel()
        if x.size > 1 and np.ptp(x) > 0:
            total += float(_scipy_kurtosis(x, fisher=True, bias=True))
    return total


def _stack(models: Sequence[Mapping[str, _Tensor]], name: str) -> np.ndarray:
    return np.stack([np.asarray(m[name].values, dtype=np.float64).ravel() for m in models])


def family_distances(layers: Sequence[np.ndarray]) -> np.ndarray:
    """The authors' clustering distance: sum over layers of mean |W_a - W_b|.

    ``layers`` holds one (n models, entries) array per layer; returns n x n.
    """
    n = layers[0].shape[0] if layers else 0
    d = np.zeros((n, n))
    for x in layers:
        for a in range(n - 1):
            v = np.abs(x[a] - x[a + 1 :]).mean(axis=1)
            d[a, a + 1 :] += v
            d[a + 1 :, a] += v
    return d


def tree_distances(layers: Sequence[np.ndarray], kind: DistanceKind = "minmax-max") -> np.ndarray:
    """The authors' distance inside a family; models in the rows' order.

    ``layers`` holds one (n models, entries) array per layer; returns a symmetric n x n
    matrix with a zero diagonal. ``"minmax-max"``: for a < b and each layer,
    (max(W_a - W_b) - m) / (M - m) with m, M the smallest and largest entry of W_a - W_b
    over all pairs a < b of the family, then the maximum over layers (a layer whose
    differences are all equal, M == m, counts 0). ``"rms-mean"``: sqrt(mean((W_a -
    W_b)^2)) per layer, averaged over layers.
    """
    if kind not in DISTANCES:
        raise ValueError(f"distance must be one of {DISTANCES}, not {kind!r}")
    n = layers[0].shape[0] if layers else 0
    d = np.zeros((n, n))
    if n < 2 or not layers:
        return d
    upper = np.triu_indices(n, k=1)
    per_layer = []
    for x in layers:
        hi, lo, rms = np.zeros((n, n)), np.zeros((n, n)), np.zeros((n, n))
        for a in range(n - 1):
            delta = x[a] - x[a + 1 :]
            if kind == "minmax-max":
                hi[a, a + 1 :] = delta.max(axis=1)
                lo[a, a + 1 :] = delta.min(axis=1)
            else:
                rms[a, a + 1 :] = np.sqrt((delta**2).mean(axis=1))
        if kind == "minmax-max":
            m, big = lo[upper].min(), hi[upper].max()
            layer = np.zeros((n, n))
            if big > m:
                layer[upper] = (hi[upper] - m) / (big - m)
            per_layer.append(layer)
        else:
            per_layer.append(rms)
    stacked = np.stack(per_layer)
    upper_d = stacked.max(axis=0) if kind == "minmax-max" else stacked.mean(axis=0)
    d[upper] = upper_d[upper]
    return d + d.T


def arborescence(
    ids: Sequence[str],
    dist: np.ndarray,
    kurt: Sequence[float],
    lam: float = LAMBDA,
    direction: KurtosisDirection = "decreasing",
) -> tuple[list[tuple[str, str]], np.ndarray]:
    """The authors' MDST: (parent, child) edges and the cost matrix C.

    C[i, j] = D[i, j] + lam * mean(D) * T[i, j]; T[i, j] = [kurt_j > kurt_i] for
    ``"decreasing"``, [kurt_j < kurt_i] for ``"increasing"``; minimum spanning
    arborescence of the complete digraph, root free.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, not {direction!r}")
    k = np.asarray(kurt, dtype=np.float64)
    penalty = k[None, :] > k[:, None] if direction == "decreasing" else k[None, :] < k[:, None]
    cost = dist + lam * float(dist.mean()) * penalty
    n = len(ids)
    if n < 2:
        return [], cost
    g = nx.DiGraph()
    order = sorted(range(n), key=lambda i: ids[i], reverse=True)  # the authors' order
    g.add_nodes_from(order)
    for i in order:
        for j in order:
            if i != j:
                g.add_edge(i, j, cost=float(cost[i, j]))
    tree = nx.minimum_spanning_arborescence(g, attr="cost")
    return [(ids[u], ids[v]) for u, v in tree.edges], cost


# ----------------------------------------------------------------------------------------
# the method


def mother_both(
    models: Mapping[str, ModelWeights],
    n_families: int,
    lam: float = LAMBDA,
    prefix: str = "mother",
    *,
    distance: DistanceKind = "minmax-max",
) -> MotherResult:
    """MoTHer over models of one architecture, both kurtosis directions.

    ``models``: ``{id: {tensor name: 2-D array}}`` or ``{id: Fingerprint}``;
    ``n_families``: the number of families (the true K in the bench); family labels are
    ``f"{prefix}-{cluster}"``. See the module docstring for what is and is not output.
    """
    if n_families < 1:
        raise ValueError("n_families must be at least 1")
    if distance not in DISTANCES:
        raise ValueError(f"distance must be one of {DISTANCES}, not {distance!r}")
    ids = sorted(models)
    tensors = {i: _as_tensors(models[i]) for i in ids}
    graphs = {d: nx.DiGraph() for d in DIRECTIONS}
    for d, g in graphs.items():
        g.graph.update(method=METHOD, direction=d, distance=distance, lam=lam, relations=RELATIONS)
        g.add_nodes_from(ids)
    families: dict[str, str] = {}
    kurt: dict[str, float] = {}
    used_kurtosis: tuple[str, ...] = ()
    used_distance: tuple[str, ...] = ()
    if not ids:
        return MotherResult(
            graphs["decreasing"], graphs["increasing"], families, kurt, (), (), distance, lam
        )
    group = [tensors[i] for i in ids]
    common = _common(group)
    shapes = {n: group[0][n].shape for n in common}

    k_names = kurtosis_layers(shapes)
    used_kurtosis = tuple(k_names)
    for i in ids:
        kurt[i] = kurtosis_score(tensors[i][n].values for n in k_names)

    n = len(ids)
    if n == 1 or n_families == 1:
        labels = np.ones(n, dtype=int)
    else:
        fam_d = family_distances([_stack(group, name) for name in _cluster_layers(shapes)])
        z = linkage(squareform(fam_d, checks=False), method="ward")
        labels = fcluster(z, t=n_families, criterion="maxclust")
    for i, label in zip(ids, labels, strict=True):
        families[i] = f"{prefix}-{int(label)}"

    t_names = tree_layers(shapes)
    used_distance = tuple(t_names)
    for label in sorted(set(labels.tolist())):
        members = [i for i, lab in zip(ids, labels, strict=True) if lab == label]
        sub = [tensors[i] for i in members]
        dist = tree_distances([_stack(sub, name) for name in t_names], distance)
        for d, g in graphs.items():
            edges, cost = arborescence(members, dist, [kurt[i] for i in members], lam, d)
            pos = {m: p for p, m in enumerate(members)}
            for u, v in edges:
                g.add_edge(
                    u,
                    v,
                    relation=str(Relation.FINETUNE),
                    confidence=1.0,
                    distance=float(dist[pos[u], pos[v]]),
                    cost=float(cost[pos[u], pos[v]]),
                    method=METHOD,
                )
    for g in graphs.values():
        for i in ids:
            g.nodes[i]["family"] = families[i]
            g.nodes[i]["kurtosis"] = kurt[i]
    return MotherResult(
        graphs["decreasing"],
        graphs["increasing"],
        families,
        kurt,
        used_kurtosis,
        used_distance,
        distance,
        lam,
    )


def mother(
    models: Mapping[str, ModelWeights],
    n_families: int,
    lam: float = LAMBDA,
    prefix: str = "mother",
    *,
    direction: KurtosisDirection = "decreasing",
    distance: DistanceKind = "minmax-max",
) -> nx.DiGraph:
    """MoTHer over models of one architecture; ``n_families`` is the true K.

    Returns the forest for one kurtosis ``direction`` (default: the authors' default,
    fine-tuning lowers kurtosis). Use ``mother_both`` to get both directions at the cost
    of one run.
    """
    result = mother_both(models, n_families, lam, prefix, distance=distance)
    return result.graph(direction)
