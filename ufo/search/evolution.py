"""Seeded evolutionary search over subnet configs (depth, width, per-block heads / MLP ratio / FFN path)
for the best validation metric under a budget. Every loop is bounded: an infeasible budget raises
BudgetError instead of sampling forever."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from tqdm import tqdm

from ufo.model.config import OWN, SHARED, ArchSpec, SubnetConfig, sample_config
from ufo.model.cost import subnet_cost
from ufo.search.budget import Budget, BudgetError, check_static_budget, fits_static

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvolutionSettings:
    population: int = 16
    generations: int = 6
    parents: int = 6  # top-k survivors that breed the next generation
    mutation_prob: float = 0.3
    crossover_fraction: float = 0.5  # share of children made by crossover (the rest by mutation)
    max_tries: int = 2000  # bound on sampling attempts per generation
    seed: int = 0


@dataclass
class Candidate:
    config: SubnetConfig
    metric: float
    params: int
    flops: int
    latency_ms: float | None
    generation: int

    def to_dict(self) -> dict:
        return {**asdict(self), "config": self.config.to_dict()}


@dataclass
class SearchResult:
    best: Candidate
    history: list[Candidate] = field(default_factory=list)


def _resample_layers(arch: ArchSpec, cfg: SubnetConfig, task: str, depth: int, rng: random.Random) -> SubnetConfig:
    """Change depth keeping the existing per-block choices as a prefix; new blocks are drawn at random."""
    extra = max(0, depth - cfg.depth)
    heads = (cfg.num_heads + tuple(rng.choice(arch.choices("num_heads")) for _ in range(extra)))[:depth]
    ratios = (cfg.mlp_ratio + tuple(rng.choice(arch.choices("mlp_ratio")) for _ in range(extra)))[:depth]
    path = (cfg.path_for(task) + tuple(rng.choice((SHARED, OWN)) for _ in range(extra)))[:depth]
    return SubnetConfig(cfg.embed_dim, depth, heads, ratios).with_paths({task: path})


def mutate(arch: ArchSpec, cfg: SubnetConfig, task: str, prob: float, rng: random.Random) -> SubnetConfig:
    embed_dim = rng.choice(arch.choices("embed_dim")) if rng.random() < prob else cfg.embed_dim
    depth = rng.choice(arch.choices("depth")) if rng.random() < prob else cfg.depth
    cfg = _resample_layers(arch, SubnetConfig(embed_dim, cfg.depth, cfg.num_heads, cfg.mlp_ratio, cfg.paths),
                           task, depth, rng)
    pick = lambda old, choices: rng.choice(choices) if rng.random() < prob else old  # noqa: E731
    heads = tuple(pick(h, arch.choices("num_heads")) for h in cfg.num_heads)
    ratios = tuple(pick(r, arch.choices("mlp_ratio")) for r in cfg.mlp_ratio)
    path = tuple(pick(p, (SHARED, OWN)) for p in cfg.path_for(task))
    return SubnetConfig(cfg.embed_dim, depth, heads, ratios).with_paths({task: path})


def crossover(arch: ArchSpec, a: SubnetConfig, b: SubnetConfig, task: str, rng: random.Random) -> SubnetConfig:
    depth = rng.choice((a.depth, b.depth))
    layer = lambda i: (a if i >= b.depth else b if i >= a.depth else rng.choice((a, b)))  # noqa: E731
    sources = [layer(i) for i in range(depth)]
    return SubnetConfig(
        rng.choice((a.embed_dim, b.embed_dim)), depth,
        tuple(s.num_heads[i] for i, s in enumerate(sources)), tuple(s.mlp_ratio[i] for i, s in enumerate(sources)),
    ).with_paths({task: tuple(s.path_for(task)[i] for i, s in enumerate(sources))})


class EvolutionSearch:
    def __init__(self, arch: ArchSpec, task: str, score: Callable[[SubnetConfig], float], budget: Budget,
                 settings: EvolutionSettings, latency: Callable[[SubnetConfig], float] | None = None,
                 seeds: tuple[SubnetConfig, ...] = (), progress: bool = True) -> None:
        self.arch, self.task, self.score_fn, self.budget = arch, task, score, budget
        self.settings, self.latency_fn, self.seeds, self.progress = settings, latency, seeds, progress
        self.rng = random.Random(settings.seed)
        self._evaluated: dict[SubnetConfig, Candidate] = {}
        self._latency: dict[SubnetConfig, float] = {}
        self._min_latency = float("inf")

    def _measure(self, cfg: SubnetConfig) -> float | None:
        if self.latency_fn is None:
            return None
        if cfg not in self._latency:
            self._latency[cfg] = self.latency_fn(cfg)
            self._min_latency = min(self._min_latency, self._latency[cfg])
        return self._latency[cfg]

    def feasible(self, cfg: SubnetConfig) -> bool:
        if not fits_static(self.arch, cfg, self.budget):
            return False
        if self.budget.max_latency_ms is None:
            return True
        return self._measure(cfg) <= self.budget.max_latency_ms

    def _random(self) -> SubnetConfig:
        return sample_config(self.arch, self.rng, (self.task,))

    def _fill(self, make: Callable[[], SubnetConfig], want: int, pool: list[SubnetConfig]) -> None:
        """Add up to `want` new feasible configs to `pool`, within settings.max_tries attempts."""
        for _ in range(self.settings.max_tries):
            if want <= 0:
                return
            cfg = make()
            if cfg not in pool and cfg not in self._evaluated and self.feasible(cfg):
                pool.append(cfg)
                want -= 1

    def _evaluate(self, cfg: SubnetConfig, generation: int) -> Candidate:
        if cfg not in self._evaluated:
            cost = subnet_cost(self.arch, cfg)
            self._evaluated[cfg] = Candidate(cfg, float(self.score_fn(cfg)), cost.params, cost.flops,
                                             self._measure(cfg), generation)
        return self._evaluated[cfg]

    def _breed(self, parents: list[SubnetConfig]) -> list[SubnetConfig]:
        """Children by crossover and mutation of the survivors; random configs when breeding stalls."""
        s, pool = self.settings, []
        self._fill(lambda: crossover(self.arch, *self.rng.sample(parents * 2, 2), self.task, self.rng),
                   int(s.population * s.crossover_fraction), pool)
        self._fill(lambda: mutate(self.arch, self.rng.choice(parents), self.task, s.mutation_prob, self.rng),
                   s.population - len(pool), pool)
        self._fill(self._random, s.population - len(pool), pool)
        return pool

    def run(self) -> SearchResult:
        check_static_budget(self.arch, self.budget)
        s = self.settings
        pool = [c for c in self.seeds if self.feasible(c)]
        self._fill(self._random, s.population - len(pool), pool)
        if not pool:
            raise BudgetError(
                f"no config fits max_latency_ms={self.budget.max_latency_ms} at batch {self.budget.latency_batch}: "
                f"the fastest of those measured took {self._min_latency:.2f} ms (nearest feasible limit)")
        history: list[Candidate] = []
        bar = tqdm(total=s.generations * s.population, desc=f"search {self.task}", disable=not self.progress)
        for gen in range(s.generations):
            for cfg in pool:
                history.append(self._evaluate(cfg, gen))
                bar.update(1)
            ranked = sorted(self._evaluated.values(), key=lambda c: (-c.metric, c.params))
            parents = [c.config for c in ranked[: s.parents]]
            bar.set_postfix(best=f"{ranked[0].metric:.4f}")
            log.debug("generation %d best %.4f", gen, ranked[0].metric)
            if gen == s.generations - 1:
                break
            pool = self._breed(parents)
        bar.close()
        best = min(self._evaluated.values(), key=lambda c: (-c.metric, c.params))
        return SearchResult(best, history)


def pareto_front(candidates: list[Candidate], cost: str = "params") -> list[Candidate]:
    """Non-dominated candidates: no other has a metric >= and a cost <=, with one strictly better.
    Sorted by cost."""
    unique = {c.config: c for c in candidates if getattr(c, cost) is not None}.values()
    ordered = sorted(unique, key=lambda c: (getattr(c, cost), -c.metric))
    front, best_metric = [], float("-inf")
    for c in ordered:
        if c.metric > best_metric:
            front.append(c)
            best_metric = c.metric
    return front
