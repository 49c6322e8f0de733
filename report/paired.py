"""The exact tests that decide whether two frameworks train alike, in NumPy and the standard library: McNemar's
test on the test images two models classify differently, a paired t-test on per-seed accuracies, a permutation test
of Gehan's statistic on steps to target (seeds that never reached the target censored), and Holm's correction."""

from __future__ import annotations

import math
from itertools import combinations
from statistics import NormalDist

import numpy as np

ALPHA = 0.05  # the level every verdict is taken at
POWER = 0.8  # the power at which a detectable difference is stated
EXACT_LIMIT = 200_000  # relabelings enumerated in full up to this many; Monte Carlo beyond
DRAWS = 20_000  # Monte Carlo relabelings
SEED = 0  # fixed: the same tables always give the same p-values


def mcnemar(only_first: int, only_second: int) -> float:
    """Two-sided exact McNemar p-value: of the images exactly one of two models classifies correctly,
    `only_first` are right by the first alone; under equal accuracy each such image is a fair coin."""
    discordant = only_first + only_second
    if discordant == 0:
        return 1.0
    tail = sum(math.comb(discordant, k) for k in range(min(only_first, only_second) + 1))
    return min(1.0, 2 * tail / 2**discordant)


def mcnemar_detectable(discordant_share: float, images: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """The smallest accuracy difference McNemar's test on `images` paired images finds with `power` at `alpha`,
    where `discordant_share` of them are classified differently (normal approximation: the difference of two
    accuracies is (b - c) / n, whose standard error under the null is sqrt(b + c) / n)."""
    normal = NormalDist()
    return (normal.inv_cdf(1 - alpha / 2) + normal.inv_cdf(power)) * math.sqrt(discordant_share / images)


def t_two_sided(t: float, df: int) -> float:
    """P(|T| >= |t|) for Student's t with `df` (a whole number) degrees of freedom, in closed form
    (Abramowitz and Stegun 26.7.3 and 26.7.4)."""
    theta = math.atan(abs(t) / math.sqrt(df))
    cos2 = math.cos(theta) ** 2
    if df % 2:
        term, series = math.cos(theta), 0.0
        for j in range((df - 1) // 2):
            series += term
            term *= cos2 * (2 * j + 2) / (2 * j + 3)
        inside = 2 / math.pi * (theta + math.sin(theta) * series)
    else:
        term, series = 1.0, 0.0
        for j in range(df // 2):
            series += term
            term *= cos2 * (2 * j + 1) / (2 * j + 2)
        inside = math.sin(theta) * series
    return min(1.0, max(0.0, 1 - inside))


def t_quantile(p: float, df: int) -> float:
    """The t at which `t_two_sided` is `p` (bisection: it falls as t grows)."""
    low, high = 0.0, 1e7
    for _ in range(200):
        middle = (low + high) / 2
        low, high = (middle, high) if t_two_sided(middle, df) > p else (low, middle)
    return (low + high) / 2


def paired_t(differences: np.ndarray, alpha: float = ALPHA, power: float = POWER) -> tuple[float, float]:
    """Two-sided paired t-test that the mean of per-seed `differences` is 0: its p-value, and the smallest
    mean difference it finds with `power` at `alpha` for their observed spread (nan with fewer than two)."""
    count = len(differences)
    if count < 2:
        return float("nan"), float("nan")
    mean, spread = float(np.mean(differences)), float(np.std(differences, ddof=1))
    df = count - 1
    detectable = (t_quantile(alpha, df) + t_quantile(2 * (1 - power), df)) * spread / math.sqrt(count)
    if spread == 0:  # every seed differs by the same amount: no spread to weigh it against
        return (1.0 if mean == 0 else 0.0), detectable
    return t_two_sided(mean / (spread / math.sqrt(count)), df), detectable


def gehan_scores(values: np.ndarray, reached: np.ndarray) -> np.ndarray:
    """Per observation, how many others it certainly exceeds minus how many certainly exceed it (Gehan's
    generalised Wilcoxon scores). A censored observation (not `reached`) is only known to exceed its value: it
    certainly exceeds a reached one at or below that value, and is certainly exceeded by none."""
    x, y = values[:, None], values[None, :]
    x_reached, y_reached = reached[:, None], reached[None, :]
    above = y_reached & ((x_reached & (x > y)) | (~x_reached & (x >= y)))
    return above.sum(axis=1) - above.sum(axis=0)


def gehan_permutation(first: np.ndarray, first_reached: np.ndarray, second: np.ndarray, second_reached: np.ndarray,
                      rng: np.random.Generator | None = None) -> float:
    """Two-sided permutation p-value that two sets of (possibly censored) values come from one distribution:
    the sum of the first set's Gehan scores among all values, against its sum over every relabeling of the
    pooled values into sets of the same sizes (all of them up to EXACT_LIMIT, else DRAWS random ones)."""
    scores = gehan_scores(np.concatenate([first, second]), np.concatenate([first_reached, second_reached]))
    total, size = len(scores), len(first)
    observed = abs(scores[:size].sum())
    if math.comb(total, size) <= EXACT_LIMIT:
        labelings = np.array(list(combinations(range(total), size)))
        return float(np.mean(np.abs(scores[labelings].sum(axis=1)) >= observed))
    rng = rng or np.random.default_rng(SEED)
    drawn = np.argsort(rng.random((DRAWS, total)), axis=1)[:, :size]
    return float((1 + np.sum(np.abs(scores[drawn].sum(axis=1)) >= observed)) / (1 + DRAWS))


def smallest_permutation_p(first: int, second: int) -> float:
    """The smallest two-sided p-value `gehan_permutation` can give with `first` and `second` distinct values: every
    one of a set beyond every one of the other (either way round where the sets are the same size)."""
    if not first or not second:
        return 1.0
    return min(1.0, (2 if first == second else 1) / math.comb(first + second, first))


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given: each is compared with the level itself."""
    order = sorted(range(len(p_values)), key=lambda index: p_values[index])
    adjusted, running = [0.0] * len(p_values), 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted
