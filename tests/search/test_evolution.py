"""Evolutionary search mechanics with a cheap deterministic score: reproducible, within budget, honest
Pareto fronts, and clear errors for impossible budgets."""

import random

import pytest

from ufo.model.config import ConfigError, validate_config
from ufo.model.cost import subnet_cost
from ufo.model.presets import get_arch
from ufo.search.budget import Budget, BudgetError
from ufo.search.evolution import Candidate, EvolutionSearch, EvolutionSettings, crossover, mutate, pareto_front

ARCH = get_arch("demo")
TASK = "person"


def toy_score(cfg):
    """Bigger is better, with a preference for the task's own FFN in the last blocks: a landscape where
    the budget binds and paths matter."""
    own = sum(cfg.path_for(TASK)[-2:])
    return subnet_cost(ARCH, cfg).params / 1e6 + 0.05 * own - 0.01 * cfg.depth


def run(budget, seed=0, **settings):
    return EvolutionSearch(ARCH, TASK, toy_score, budget, EvolutionSettings(seed=seed, **settings),
                           progress=False).run()


def test_search_is_reproducible_with_a_seed():
    budget = Budget(max_params=800_000)
    a, b = run(budget, seed=3), run(budget, seed=3)
    assert [c.config for c in a.history] == [c.config for c in b.history]
    assert a.best.config == b.best.config
    c = run(budget, seed=4)
    assert [x.config for x in c.history] != [x.config for x in a.history]


def test_budget_is_honoured_and_search_improves_on_random():
    budget = Budget(max_params=700_000, max_flops=90_000_000)
    result = run(budget, population=12, generations=5)
    for cand in result.history:
        assert cand.params <= 700_000 and cand.flops <= 90_000_000
        validate_config(ARCH, cand.config, (TASK,))
    first_gen = max(c.metric for c in result.history if c.generation == 0)
    assert result.best.metric >= first_gen
    assert result.best.metric == max(c.metric for c in result.history)


def test_latency_budget_uses_the_measurement():
    fake_latency = lambda cfg: cfg.depth * 1.0 + cfg.embed_dim / 100  # noqa: E731
    search = EvolutionSearch(ARCH, TASK, toy_score, Budget(max_latency_ms=5.5), EvolutionSettings(generations=3),
                             latency=fake_latency, progress=False)
    result = search.run()
    assert all(c.latency_ms <= 5.5 for c in result.history)
    assert all(c.config.depth == 4 for c in result.history)


@pytest.mark.parametrize("budget, words", [
    (Budget(max_params=1000), ["max_params=1,000", "nearest feasible limit: 316,920"]),
    (Budget(max_flops=10), ["max_flops=10", "nearest feasible limit"]),
])
def test_infeasible_budget_names_the_limit_and_nearest_feasible_value(budget, words):
    with pytest.raises(BudgetError) as err:
        run(budget)
    for word in words:
        assert word in str(err.value)


def test_infeasible_latency_budget_terminates_with_a_clear_error():
    search = EvolutionSearch(ARCH, TASK, toy_score, Budget(max_latency_ms=0.5), EvolutionSettings(max_tries=50),
                             latency=lambda cfg: 3.0 + cfg.depth, progress=False)
    with pytest.raises(BudgetError, match="fastest of those measured took 7.00 ms"):
        search.run()


def test_pareto_front_is_non_dominated_and_covers_the_best():
    result = run(Budget(), population=10, generations=3)
    front = pareto_front(result.history, "params")
    for f in front:
        for c in result.history:
            dominates = c.metric >= f.metric and c.params <= f.params and (c.metric > f.metric or c.params < f.params)
            assert not dominates, (c, f)
    assert max(c.metric for c in front) == result.best.metric


def test_pareto_front_hand_made():
    cands = [Candidate(None, m, p, 0, None, 0) for m, p in [(0.5, 10), (0.6, 20), (0.55, 30), (0.7, 40), (0.4, 5)]]
    for i, c in enumerate(cands):
        c.config = i  # distinct keys
    assert [(c.metric, c.params) for c in pareto_front(cands)] == [(0.4, 5), (0.5, 10), (0.6, 20), (0.7, 40)]


def test_mutation_and_crossover_stay_in_the_space():
    rng = random.Random(0)
    from ufo.model.config import sample_config

    for _ in range(200):
        a, b = sample_config(ARCH, rng, (TASK,)), sample_config(ARCH, rng, (TASK,))
        for child in (mutate(ARCH, a, TASK, 0.5, rng), crossover(ARCH, a, b, TASK, rng)):
            try:
                validate_config(ARCH, child, (TASK,))
            except ConfigError as exc:  # pragma: no cover - the assertion message is the point
                pytest.fail(f"child outside the space: {exc}")
