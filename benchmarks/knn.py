"""k-NN inference of `ours`: time per 1-way 1-shot episode at 129x129, in one run, beside
- the floor: one plain torch.mm of the same shapes (query pixels x support pixels x dim), and
- the naive version: torch.cdist + topk on the whole distance matrix,
checking that the chunked k-NN gives labels identical to the naive one. Goal: within 2x of the floor.
    python benchmarks/knn.py
Shapes: feature grid (33x33 = 1,089 query and support pixels, the default) and full image
(129x129 = 16,641, `knn_at="image"`), embedding dim 64, k = 5."""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from methods.ours import knn_votes


def per_call(fn, repeat: int) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t0) / repeat


def main():
    torch.manual_seed(0)
    for name, side, repeat in (("feature grid", 33, 200), ("full image", 129, 3)):
        n = side * side
        query, support = torch.randn(n, 64), torch.randn(n, 64)
        labels = torch.randint(0, 2, (n,))
        floor = per_call(lambda: torch.mm(query, support.T), repeat)
        ours = per_call(lambda: knn_votes(query, support, labels, 2, 5), repeat)

        def naive():
            idx = torch.cdist(query, support).topk(5, largest=False).indices
            return F.one_hot(labels[idx], 2).float().mean(1)

        naive_s = per_call(naive, repeat)
        same = torch.equal(knn_votes(query, support, labels, 2, 5).argmax(1), naive().argmax(1))
        print(f"{name:>12} ({n:,} x {n:,} pixels): chunked k-NN {ours * 1e3:8.2f} ms/episode = "
              f"{ours / floor:4.2f}x the torch.mm floor ({floor * 1e3:.2f} ms), naive cdist+topk "
              f"{naive_s * 1e3:8.2f} ms ({naive_s / ours:4.2f}x ours); labels identical to naive: {same}")


if __name__ == "__main__":
    main()
