"""性能基准：`make bench`。性能目标写在这里，而不是写成计时的测试。

每项取 3 次中最快的一次，与参考实现并列打印；未达到目标时退出码为 1。
目标按 2 核 CPU 设定，留有余量；它们检查的是复杂度（例如 AUC 的秩公式是 O(n log n)），而不是微秒级差异。
"""

from __future__ import annotations

import sys
import time

import numpy as np


def best_of(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> int:
    import torch
    import torch.nn.functional as F
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    results = []  # (名称, 我们的秒数, 参考秒数或 None, 目标秒数)

    from mlbook.chapters import softmax_cross_entropy as sm
    z = rng.normal(size=(4096, 1000))
    t = rng.integers(0, 1000, size=4096)
    zt, tt = torch.as_tensor(z), torch.as_tensor(t)
    results.append(("softmax (4096×1000, float64)", best_of(lambda: sm.softmax(z)),
                    best_of(lambda: torch.softmax(zt, -1)), 1.0))
    results.append(("cross_entropy (4096×1000)", best_of(lambda: sm.cross_entropy(z, t)),
                    best_of(lambda: F.cross_entropy(zt, tt)), 1.5))

    from mlbook.chapters import roc_pr_auc as roc
    for n in (2_000, 1_000_000):
        y = rng.integers(0, 2, size=n)
        s = np.round(rng.normal(size=n) + y, 2)  # 有大量并列
        results.append((f"roc_auc_score 秩公式 (n={n:,})", best_of(lambda y=y, s=s: roc.roc_auc_score(y, s)),
                        best_of(lambda y=y, s=s: roc_auc_score(y, s)), 3.0))
    y = rng.integers(0, 2, size=2_000)
    s = rng.normal(size=2_000) + y
    results.append(("auc_pairwise O(n²) (n=2,000)", best_of(lambda: roc.auc_pairwise(y, s), 1), None, 10.0))

    from mlbook.chapters import autograd_mlp as ag

    def deep_chain():
        x = ag.Value(0.5)
        y = x
        for _ in range(100_000):
            y = y + x * 0.0
        y.backward()

    results.append(("Value: 10⁵ 节点链的前向 + 反向", best_of(deep_chain, 1), None, 10.0))

    failed = 0
    print(f"{'基准':<36}{'本书实现':>12}{'参考实现':>12}{'目标':>10}")
    for name, ours, ref, target in results:
        ok = ours <= target
        failed += not ok
        ref_s = f"{ref * 1e3:9.1f} ms" if ref is not None else f"{'—':>12}"
        print(f"{name:<36}{ours * 1e3:9.1f} ms{ref_s}{'≤ ' + format(target, 'g') + ' s':>10} {'✓' if ok else '✗'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
