#!/usr/bin/env python3
"""scipy/sklearn baseline for `semcorr bench geodesic`, run on the same cloud as the Rust side.

Usage: bench_geodesic_scipy.py POINTS_TXT [K [NUM_SOURCES [REPEATS]]]

POINTS_TXT holds one "x y z" line per point. Times (median, ms) the k-NN graph
(sklearn kneighbors_graph, mode='distance'), all-pairs Dijkstra and Dijkstra from
NUM_SOURCES sources (indices i * N // NUM_SOURCES, as on the Rust side), both with
scipy.sparse.csgraph.dijkstra(directed=False), i.e. the symmetric k-NN graph. Prints one
JSON object, including checksums (means over finite entries) to compare with ours.
"""
import json
import sys
import time

import numpy as np
from scipy.sparse.csgraph import dijkstra
from sklearn.neighbors import kneighbors_graph


def median_ms(fn, repeats):
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times)), result


def main():
    path = sys.argv[1]
    k = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    num_sources = int(sys.argv[3]) if len(sys.argv) > 3 else 16
    repeats = int(sys.argv[4]) if len(sys.argv) > 4 else 5
    points = np.loadtxt(path, dtype=np.float64, ndmin=2)
    n = len(points)
    sources = [i * n // num_sources for i in range(num_sources)]

    graph_ms, graph = median_ms(
        lambda: kneighbors_graph(points, k, mode="distance", include_self=False), repeats
    )
    all_ms, dist = median_ms(lambda: dijkstra(graph, directed=False), repeats)
    src_ms, src_dist = median_ms(
        lambda: dijkstra(graph, directed=False, indices=sources), repeats
    )
    finite = np.isfinite(dist)
    print(
        json.dumps(
            {
                "num_points": n,
                "k": k,
                "num_sources": num_sources,
                "knn_graph_ms": graph_ms,
                "all_pairs_ms": all_ms,
                "sources_ms": src_ms,
                "mean_all_pairs": float(dist[finite].mean()) if finite.any() else 0.0,
                "mean_sources": float(src_dist[np.isfinite(src_dist)].mean()),
                "unreachable_pairs": int((~finite).sum()),
            }
        )
    )


if __name__ == "__main__":
    main()
