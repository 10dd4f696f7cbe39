"""The outer-loop optimisers converge, survive failed evaluations and resume bit-identically."""

import json

import numpy as np
import pytest

from l2l.optimizers import OPTIMIZERS, CMAES, EvolutionStrategy, Optimizer, make


def sphere(X):
    return np.sum(X**2, axis=1)


def rosenbrock(X):
    return np.sum(100 * (X[:, 1:] - X[:, :-1] ** 2) ** 2 + (1 - X[:, :-1]) ** 2, axis=1)


# name -> settings that solve the benchmarks; every optimiser runs with seed 0.
SETTINGS = {
    "cmaes": {},
    "cross-entropy": {"popsize": 50, "smoothing": 0.5, "sigma_min": 0.01},
    "ga": {"popsize": 50, "sigma_decay": 0.97, "mutation_rate": 0.3},
    "es": {"popsize": 20, "learning_rate": 0.1, "learning_rate_decay": 0.98, "sigma_decay": 0.98},
}

# name -> (generations, best loss to reach) on the 10-D sphere from x0 = 1, sigma0 = 0.5.
SPHERE = {
    "cmaes": (150, 1e-6),
    "cross-entropy": (150, 1e-3),
    "ga": (200, 1e-3),
    "es": (300, 1e-3),
}

# name -> (generations, best loss to reach, overrides) on the 4-D Rosenbrock from x0 = 0.
ROSENBROCK = {
    "cmaes": (300, 1e-4, {}),
    "cross-entropy": (400, 0.5, {}),
    "ga": (300, 0.5, {"sigma0": 0.3, "sigma_decay": 0.98, "mutation_rate": 0.5}),
    "es": (1000, 1e-2, {"sigma0": 0.1, "learning_rate": 0.02, "learning_rate_decay": 0.997, "sigma_decay": 0.997}),
}

# The ES on a 2,000-parameter sphere: the loss at the mean falls by this factor in this many generations.
ES_SCALE = {"n": 2000, "generations": 100, "factor": 5.0}


def build(name, **changes):
    kwargs = {"x0": np.ones(10), "sigma0": 0.5, "seed": 0, **SETTINGS[name], **changes}
    return make(name, **kwargs)


def run(opt, loss, generations, fail_every=None):
    for g in range(generations):
        X = opt.ask()
        f = loss(X)
        if fail_every:
            f[g % fail_every :: fail_every] = np.inf
        opt.tell(X, f)
    return opt


def roundtrip(opt):
    return Optimizer.from_state(json.loads(json.dumps(opt.state(), allow_nan=False)))


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_sphere(name):
    generations, tolerance = SPHERE[name]
    opt = run(build(name), sphere, generations)
    assert opt.best[1] < tolerance
    assert opt.generation == generations


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_rosenbrock(name):
    generations, tolerance, overrides = ROSENBROCK[name]
    opt = run(build(name, x0=np.zeros(4), **overrides), rosenbrock, generations)
    assert opt.best[1] < tolerance


def test_es_scales_to_thousands_of_parameters():
    n = ES_SCALE["n"]
    opt = EvolutionStrategy(np.ones(n), 0.2, popsize=100, seed=0, step="sgd", learning_rate=0.5)
    run(opt, sphere, ES_SCALE["generations"])
    assert sphere(opt.mean[None])[0] < sphere(np.ones((1, n)))[0] / ES_SCALE["factor"]


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_failed_evaluations_are_tolerated(name):
    generations, _ = SPHERE[name]
    opt = run(build(name), sphere, generations, fail_every=4)
    assert np.isfinite(opt.best[1]) and opt.best[1] < 1e-2
    assert np.all(np.isfinite(opt.ask()))


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_generation_where_everything_failed_changes_nothing_but_the_count(name):
    opt = run(build(name), sphere, 3)
    X = opt.ask()
    before = opt.state()["internal"]
    opt.tell(X, np.full(opt.popsize, np.nan))
    assert opt.generation == 4 and opt.state()["internal"] == before


@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("pending", [False, True], ids=["after-tell", "between-ask-and-tell"])
def test_resume_from_checkpoint_is_bit_identical(name, pending):
    total, stop = 40, 13
    reference = run(build(name), sphere, total, fail_every=5)
    trace = []

    opt = build(name)
    for g in range(total):
        if g == stop and pending:
            opt.ask()
        if g == stop:
            opt = roundtrip(opt)
        X = opt.ask()
        f = sphere(X)
        f[g % 5 :: 5] = np.inf
        opt.tell(X, f)
    assert type(opt) is type(reference)
    assert opt.generation == reference.generation
    assert opt.best[1] == reference.best[1]
    assert np.array_equal(opt.best[0], reference.best[0])
    assert np.array_equal(opt.ask(), reference.ask())
    assert opt.state() == reference.state()


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_same_seed_same_run(name):
    a, b = run(build(name), sphere, 20), run(build(name), sphere, 20)
    assert np.array_equal(a.ask(), b.ask()) and a.best[1] == b.best[1]
    c = run(build(name, seed=1), sphere, 20)
    assert not np.array_equal(a.ask(), c.ask())


def test_cmaes_leaves_numpy_global_random_state_alone():
    np.random.seed(123)
    expected = np.random.random()
    np.random.seed(123)
    run(CMAES(np.ones(5), 0.5, seed=0), sphere, 5)
    assert np.random.random() == expected


def test_ask_repeats_pending_candidates_and_tell_needs_ask():
    opt = build("es")
    with pytest.raises(RuntimeError, match="must follow ask"):
        opt.tell(np.zeros((opt.popsize, 10)), np.zeros(opt.popsize))
    assert np.array_equal(opt.ask(), opt.ask())


def test_es_samples_mirrored_pairs():
    opt = EvolutionStrategy(np.full(6, 3.0), 0.1, popsize=8, seed=0)
    X = opt.ask() - 3.0
    assert np.allclose(X[:4], -X[4:])


def test_unknown_name():
    with pytest.raises(ValueError, match=r"optimizer must be one of 'cmaes', 'cross-entropy', 'ga', 'es', not 'pso'"):
        make("pso", x0=[0.0], sigma0=1.0)


@pytest.mark.parametrize(
    "name, changes, message",
    [
        ("cmaes", {"x0": []}, "x0 must be a non-empty 1-D array"),
        ("cmaes", {"x0": [0.0, np.nan]}, "x0 must be finite"),
        ("cmaes", {"sigma0": 0.0}, "sigma0 must be > 0"),
        ("cmaes", {"sigma0": "1"}, "sigma0 must be a number"),
        ("cmaes", {"popsize": 1}, "popsize must be an integer >= 2"),
        ("cmaes", {"seed": -1}, "seed must be a non-negative integer or None"),
        ("cmaes", {"active": 1}, "active must be True or False"),
        ("cross-entropy", {"elite_fraction": 0.0}, r"elite_fraction must be in \(0, 1\]"),
        ("cross-entropy", {"smoothing": 1.5}, r"smoothing must be in \(0, 1\]"),
        ("cross-entropy", {"sigma_min": -1.0}, "sigma_min must be >= 0"),
        ("ga", {"n_elite": 50}, r"n_elite must be an integer in \[0, popsize=50\)"),
        ("ga", {"tournament_size": 0}, "tournament_size must be an integer >= 1"),
        ("ga", {"crossover": "one-point"}, "crossover must be one of 'blend', 'uniform'"),
        ("ga", {"mutation_rate": 2.0}, r"mutation_rate must be in \[0, 1\]"),
        ("es", {"popsize": 21}, "popsize must be even"),
        ("es", {"step": "rmsprop"}, "step must be one of 'adam', 'sgd'"),
        ("es", {"learning_rate": 0}, "learning_rate must be > 0"),
        ("es", {"beta1": 1.0}, r"beta1 must be in \[0, 1\)"),
        ("es", {"sigma_decay": 0.0}, r"sigma_decay must be in \(0, 1\]"),
    ],
)
def test_bad_arguments(name, changes, message):
    with pytest.raises(ValueError, match=message):
        build(name, **changes)


@pytest.mark.parametrize(
    "candidates, fitness, message",
    [
        (np.zeros((3, 10)), np.zeros(20), r"candidates must have shape \(20, 10\)"),
        (np.full((20, 10), np.inf), np.zeros(20), "candidates must be finite"),
        (None, np.zeros(19), r"fitness must have shape \(20,\)"),
        (None, np.full(20, -np.inf), "fitness must not be -inf"),
    ],
)
def test_bad_tell(candidates, fitness, message):
    opt = build("es")
    X = opt.ask()
    with pytest.raises(ValueError, match=message):
        opt.tell(X if candidates is None else candidates, fitness)


def test_bad_state():
    state = build("ga").state()
    with pytest.raises(ValueError, match="state format must be 1"):
        Optimizer.from_state({**state, "format": 99})
    with pytest.raises(ValueError, match="which is not a CMAES"):
        CMAES.from_state(state)
    with pytest.raises(ValueError, match="state must be a dict"):
        Optimizer.from_state([1, 2])
