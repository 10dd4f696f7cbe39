"""The planar-arm task family (l2l/tasks/arm.py): kinematics, trajectories, files, clock, loss, plot."""

import numpy as np
import pytest

from small.errors import SmallError
from l2l.tasks.arm import (ArmParams, Trajectories, TrajectoryFileError, clock_input, forward_kinematics,
                           integrate_velocities, load_trajectories, loss, plot, random_trajectories,
                           save_trajectories)

PARAMS = ArmParams()
STEPS = PARAMS.steps


@pytest.fixture(scope="module")
def trajectories():
    return random_trajectories(200, PARAMS, np.random.default_rng(7))


# -- kinematics ------------------------------------------------------------------------------------

@pytest.mark.parametrize("angles, xy", [
    ((0.0, 0.0), (1.0, 0.0)),                # straight along x
    ((np.pi / 2, 0.0), (0.0, 1.0)),          # straight up
    ((0.0, np.pi / 2), (0.5, 0.5)),          # elbow bent 90 deg
    ((np.pi / 2, np.pi / 2), (-0.5, 0.5)),
    ((0.0, np.pi), (0.0, 0.0)),              # folded back onto the shoulder
])
def test_forward_kinematics_known_poses(angles, xy):
    np.testing.assert_allclose(forward_kinematics(angles, PARAMS), xy, atol=1e-12)


def test_forward_kinematics_uses_link_lengths_and_broadcasts():
    params = ArmParams(link_lengths=(0.3, 0.2))
    angles = np.array([[[0.0, 0.0], [0.0, np.pi / 2]]])  # [1, 2, 2]
    np.testing.assert_allclose(forward_kinematics(angles, params), [[[0.5, 0.0], [0.3, 0.2]]], atol=1e-12)


# -- random trajectories ---------------------------------------------------------------------------

def test_trajectories_stay_within_joint_limits(trajectories):
    assert trajectories.angles.shape == trajectories.velocities.shape == trajectories.xy.shape == (200, STEPS, 2)
    assert np.all(trajectories.angles > PARAMS.lower) and np.all(trajectories.angles < PARAMS.upper)
    # and they do move: a task family of near-still arms would teach nothing
    assert np.ptp(trajectories.angles, axis=1).mean() > 0.1


def test_trajectories_are_smooth_and_start_at_rest(trajectories):
    np.testing.assert_array_equal(trajectories.velocities[:, 0], 0.0)
    acceleration = np.diff(trajectories.angles, n=2, axis=1) / PARAMS.dt**2
    # filtered noise has accelerations of order sigma_v / tau; a kink from a hard clip would be ~ sigma_v / dt
    assert np.abs(acceleration).max() < 10 * PARAMS.velocity_scale / PARAMS.tau_smooth


def test_trajectories_reproducible_by_seed():
    a = random_trajectories(5, PARAMS, np.random.default_rng(3))
    b = random_trajectories(5, PARAMS, np.random.default_rng(3))
    c = random_trajectories(5, PARAMS, np.random.default_rng(4))
    np.testing.assert_array_equal(a.angles, b.angles)
    assert not np.allclose(a.angles, c.angles)


def test_velocities_integrate_back_to_angles(trajectories):
    rebuilt = integrate_velocities(trajectories.velocities, trajectories.angles[:, 0], PARAMS.dt)
    np.testing.assert_allclose(rebuilt, trajectories.angles, atol=1e-12)
    np.testing.assert_allclose(trajectories.xy, forward_kinematics(trajectories.angles), atol=1e-12)


def test_random_trajectories_refuses_bad_arguments():
    with pytest.raises(ValueError, match="rng is required"):
        random_trajectories(2, PARAMS, None)
    with pytest.raises(ValueError, match="n must be"):
        random_trajectories(0, PARAMS, np.random.default_rng(0))
    with pytest.raises(ValueError, match="joint_limits"):
        ArmParams(joint_limits=((1.0, -1.0), (0.0, 1.0)))
    with pytest.raises(ValueError, match="link_lengths"):
        ArmParams(link_lengths=(0.5, -0.5))


# -- loss ------------------------------------------------------------------------------------------

def test_loss_is_zero_for_a_perfect_prediction(trajectories):
    np.testing.assert_allclose(loss(trajectories.velocities, trajectories), 0.0, atol=1e-20)


def test_loss_grows_with_error(trajectories):
    noise = np.random.default_rng(1).standard_normal(trajectories.velocities.shape)
    losses = [loss(trajectories.velocities + scale * noise, trajectories).mean() for scale in (0.1, 0.5, 1.0, 2.0)]
    assert np.all(np.diff(losses) > 0)


def test_loss_position_term_sees_drift(trajectories):
    # a small constant velocity bias barely moves the velocity error but walks the hand away
    biased = trajectories.velocities + 0.5
    with_position = loss(biased, trajectories)
    velocity_only = loss(biased, trajectories, position_weight=0.0)
    np.testing.assert_allclose(velocity_only, 0.25)
    assert np.all(with_position > velocity_only)


def test_loss_broadcasts_one_target_and_checks_shapes(trajectories):
    one = trajectories[0]
    assert one.n == 1
    preds = np.stack([one.velocities[0], np.zeros((STEPS, 2))])
    result = loss(preds, one)
    assert result.shape == (2,) and result[0] < 1e-20 and result[1] > 0
    with pytest.raises(ValueError, match=r"\[B, 250, 2\]"):
        loss(np.zeros((2, 100, 2)), trajectories)
    with pytest.raises(ValueError, match="3 predictions for 200 target"):
        loss(np.zeros((3, STEPS, 2)), trajectories)


# -- files -----------------------------------------------------------------------------------------

def test_save_load_round_trip(tmp_path, trajectories):
    path = tmp_path / "trajectories.npz"
    save_trajectories(path, trajectories)
    first = path.read_bytes()
    loaded = load_trajectories(path)
    np.testing.assert_array_equal(loaded.angles, trajectories.angles)
    np.testing.assert_array_equal(loaded.velocities, trajectories.velocities)
    save_trajectories(path, loaded)
    assert path.read_bytes() == first  # byte-reproducible


def test_load_accepts_a_plain_user_file(tmp_path, trajectories):
    path = tmp_path / "mine.npz"
    np.savez(path, angles=trajectories.angles[:3].astype(np.float32), notes=np.arange(3))
    loaded = load_trajectories(path)
    assert loaded.n == 3
    np.testing.assert_allclose(loaded.angles, trajectories.angles[:3], atol=1e-6)


def _good(n=2):
    return random_trajectories(n, PARAMS, np.random.default_rng(0)).angles.copy()


def _with_nan():
    angles = _good()
    angles[1, 17, 0] = np.nan
    return angles


def _out_of_limits():
    angles = _good()
    angles[0, 5:9, 1] = -0.2
    return angles


@pytest.mark.parametrize("writer, message", [
    (lambda p: np.savez(p, angles=np.zeros((2, 100, 2))), r"shape \[2, 100, 2\]; expected \[n, 250, 2\]"),
    (lambda p: np.savez(p, angles=np.zeros((2, 250, 3))), r"shape \[2, 250, 3\]"),
    (lambda p: np.savez(p, angles=np.zeros((250, 2))), r"shape \[250, 2\]"),
    (lambda p: np.savez(p, angles=_with_nan()), "non-finite.*trajectory 1, step 17, joint 1"),
    (lambda p: np.savez(p, angles=np.where(np.arange(STEPS)[:, None] == 3, np.inf, _good())), "non-finite"),
    (lambda p: np.savez(p, angles=_out_of_limits()), "joint 2 .*outside its limits.*clip=True"),
    (lambda p: np.savez(p, angles=np.degrees(_good())), "degrees"),
    (lambda p: np.savez(p, angles=_good().astype(complex)), "real numbers"),
    (lambda p: np.savez(p, theta=_good()), r"no array 'angles' \(it has \['theta'\]\)"),
    (lambda p: np.savez(p, angles=_good(), dt=np.float64(2e-3)), "dt = "),
    (lambda p: p.write_text("not an archive\n"), r"not an \.npz archive"),
    (lambda p: np.save(open(p, "wb"), _good()), r"not an \.npz archive"),
])
def test_bad_trajectory_files_are_refused_by_name(tmp_path, writer, message):
    path = tmp_path / "user_trajectories.npz"
    writer(path)
    with pytest.raises(ValueError, match=message) as info:
        load_trajectories(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, TrajectoryFileError) and isinstance(info.value, SmallError)  # CLI: exit 2


def test_missing_trajectory_file(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_trajectories(tmp_path / "nowhere.npz")


def test_clip_brings_angles_into_limits(tmp_path):
    path = tmp_path / "over.npz"
    np.savez(path, angles=_out_of_limits())
    loaded = load_trajectories(path, clip=True)
    assert loaded.angles[0, 5:9, 1].tolist() == [0.0] * 4


# -- clock input -----------------------------------------------------------------------------------

def test_clock_input_rates_one_channel_per_step():
    rates = clock_input(STEPS, 20, rate=100.0)
    assert rates.shape == (STEPS, 20)
    np.testing.assert_array_equal(rates.sum(axis=1), 100.0)  # exactly one channel active at each step
    active = rates.argmax(axis=1)
    assert active[0] == 0 and active[-1] == 19 and np.all(np.diff(active) >= 0)  # the clock runs forward
    np.testing.assert_array_equal((rates > 0).sum(axis=0), [12, 13] * 10)  # bounds floor(k 250 / 20): 0, 12, 25, 37, ...


def test_clock_input_spikes_stay_in_their_windows():
    rates = clock_input(STEPS, 10, rate=200.0)
    spikes = clock_input(STEPS, 10, kind="spikes", rate=200.0, rng=np.random.default_rng(0))
    again = clock_input(STEPS, 10, kind="spikes", rate=200.0, rng=np.random.default_rng(0))
    assert spikes.shape == (STEPS, 10) and set(np.unique(spikes)) <= {0.0, 1.0}
    assert np.all(spikes[rates == 0] == 0) and spikes.sum() > 0
    np.testing.assert_array_equal(spikes, again)
    with pytest.raises(ValueError, match="rng"):
        clock_input(STEPS, 10, kind="spikes")
    with pytest.raises(ValueError, match="n_channels"):
        clock_input(STEPS, 0)


# -- plot ------------------------------------------------------------------------------------------

def test_plot_writes_a_png(tmp_path, trajectories):
    path = tmp_path / "arm.png"
    target = trajectories[:2]
    plot(target, np.zeros((2, STEPS, 2)), target.velocities * 0.9, path, index=1)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["arm.png"]  # no temporary left behind
