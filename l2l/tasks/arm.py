"""Planar two-joint arm following smooth random trajectories: the learning-to-learn motor task family.

Each task is one trajectory of the arm's two joint angles ``theta = (theta_1, theta_2)`` over
``steps`` = 250 steps of ``dt`` = 1 ms. The network sees only a clock (:func:`clock_input`), so
it must store the movement in its weights; its two outputs are read as the joint velocities
``v_hat(t)`` (rad/s). :func:`loss` scores the velocities and the hand position they lead to.

**Arm** (:func:`forward_kinematics`): link lengths ``l1``, ``l2``; ``theta_1`` is the shoulder
angle from the x axis, ``theta_2`` the elbow angle relative to the upper arm::

    x = l1 cos(theta_1) + l2 cos(theta_1 + theta_2)
    y = l1 sin(theta_1) + l2 sin(theta_1 + theta_2)

**Trajectories** (:func:`random_trajectories`): the free joint velocity ``u(t)`` is white noise
``xi`` low-pass filtered twice with time constant ``tau`` (an Ornstein-Uhlenbeck process,
i.e. leaky Brownian motion, smoothed once more so that the angles have a continuous
acceleration), scaled to a stationary standard deviation ``sigma_v``; the arm starts at rest::

    z1(t) = a z1(t-1) + (1 - a) g xi(t),   z2(t) = a z2(t-1) + (1 - a) z1(t),   a = exp(-dt / tau)
    u(t)  = z2(t),   u(0) = 0,   phi(t) = phi(0) + dt sum_{s<=t} u(s)

The free angle ``phi`` is clipped softly into the joint limits ``[lo, hi]`` (centre ``c``,
half-range ``h``): ``theta = c + h tanh((phi - c) / h)``. A hard clip or a reflection would put
a kink in the angle (a jump in velocity); the soft clip keeps the path smooth and strictly
inside the limits. The target velocities are then those of the clipped angles.

**Velocities from angles**, the convention everywhere (generated and user-supplied)::

    v(0) = 0,   v(t) = (theta(t) - theta(t-1)) / dt,   so   theta(t) = theta(0) + dt sum_{s<=t} v(s)

The numbers in :class:`ArmParams` are this project's choices (a 1 m reach, limits that keep
the elbow away from the straight-arm singularity, 1-2 wiggles per 250 ms); the task's shape
(clock in, joint velocities out, loss on velocities and hand position) is that of the motor
tasks used with e-prop and learning to learn in recurrent spiking networks.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from small.errors import FileFormatError
from small.fileio import ARCHIVE_ERRORS, atomic_output, check_npz, write_npz
from small.limits import check_memory

__all__ = ["ArmParams", "TrajectoryFileError", "Trajectories", "clock_input", "forward_kinematics", "load_trajectories",
           "loss", "plot", "random_trajectories", "save_trajectories", "velocities_from_angles"]


class TrajectoryFileError(FileFormatError, ValueError):
    """A trajectory file that cannot be used: missing, not ``.npz``, no ``angles``, wrong shape or values.

    A :class:`~small.errors.FileFormatError` (the command line reports it as a user error,
    exit status 2) and a ``ValueError`` (for callers that catch bad values generically).
    """


@dataclass(frozen=True)
class ArmParams:
    """The arm, its trajectories and the loss weighting (defaults: this project's choices, see the module)."""

    link_lengths: tuple[float, float] = (0.5, 0.5)
    """Upper-arm and forearm lengths ``(l1, l2)`` (m): a 1 m reach."""
    joint_limits: tuple[tuple[float, float], tuple[float, float]] = ((-np.pi / 2, np.pi / 2), (0.0, 3 * np.pi / 4))
    """``((lo_1, hi_1), (lo_2, hi_2))`` (rad): shoulder -90..90 deg, elbow 0 (straight)..135 deg (bent)."""
    dt: float = 1e-3
    """Time step (s)."""
    steps: int = 250
    """Steps per trajectory (250 x 1 ms = 250 ms)."""
    tau_smooth: float = 0.05
    """Time constant ``tau`` of each of the two low-pass filters on the white noise (s)."""
    velocity_scale: float = 3.0
    """Stationary standard deviation ``sigma_v`` of the free joint velocity ``u`` (rad/s)."""
    start_fraction: float = 0.5
    """The start angle is uniform in the middle ``start_fraction`` of each joint's range."""
    position_weight: float = 100.0
    """``lambda`` in :func:`loss` ((rad/s)^2 per m^2): weighs the hand-position error against the velocity error."""

    def __post_init__(self):
        lengths = self.link_lengths
        if not (len(lengths) == 2 and all(_positive(v) for v in lengths)):
            raise ValueError(f"link_lengths must be two positive lengths in metres, not {lengths!r}")
        limits = self.joint_limits
        if not (len(limits) == 2 and all(len(pair) == 2 and all(_finite(v) for v in pair) and pair[0] < pair[1]
                                         for pair in limits)):
            raise ValueError(f"joint_limits must be ((lo_1, hi_1), (lo_2, hi_2)) in radians with lo < hi, "
                             f"not {limits!r}")
        for name in ("dt", "tau_smooth", "velocity_scale"):
            if not _positive(getattr(self, name)):
                raise ValueError(f"{name} must be a positive number, not {getattr(self, name)!r}")
        if not (isinstance(self.steps, (int, np.integer)) and self.steps >= 2):
            raise ValueError(f"steps must be a whole number >= 2, not {self.steps!r}")
        if not (_finite(self.start_fraction) and 0 <= self.start_fraction <= 1):
            raise ValueError(f"start_fraction must be in [0, 1], not {self.start_fraction!r}")
        if not (_finite(self.position_weight) and self.position_weight >= 0):
            raise ValueError(f"position_weight must be a number >= 0, not {self.position_weight!r}")

    @property
    def lower(self) -> np.ndarray:
        """Lower joint limits ``[2]`` (rad)."""
        return np.array([pair[0] for pair in self.joint_limits], dtype=float)

    @property
    def upper(self) -> np.ndarray:
        """Upper joint limits ``[2]`` (rad)."""
        return np.array([pair[1] for pair in self.joint_limits], dtype=float)


def _finite(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and bool(np.isfinite(value))


def _positive(value) -> bool:
    return _finite(value) and value > 0


@dataclass(frozen=True, eq=False)
class Trajectories:
    """A batch of arm trajectories (build with :meth:`from_angles`, which derives the rest)."""

    angles: np.ndarray
    """Joint angles ``[n, steps, 2]`` (rad); ``angles[:, 0]`` is the start pose."""
    velocities: np.ndarray
    """Joint velocities ``[n, steps, 2]`` (rad/s): ``v(0) = 0``, ``v(t) = (theta(t) - theta(t-1)) / dt``."""
    xy: np.ndarray
    """Hand (end-effector) position ``[n, steps, 2]`` (m), from :func:`forward_kinematics`."""
    params: ArmParams = field(default_factory=ArmParams)
    """The arm they belong to."""

    @classmethod
    def from_angles(cls, angles, params: ArmParams | None = None) -> Trajectories:
        """Trajectories with the given angles ``[n, steps, 2]`` (rad), which must lie within the joint limits."""
        params = ArmParams() if params is None else params
        angles = np.array(angles, dtype=float)  # a copy: the caller's array stays theirs
        problem = _angle_problem(angles, params)
        if problem:
            raise ValueError(f"angles {problem}")
        angles.setflags(write=False)
        velocities = velocities_from_angles(angles, params.dt)
        velocities.setflags(write=False)
        xy = forward_kinematics(angles, params)
        xy.setflags(write=False)
        return cls(angles, velocities, xy, params)

    @property
    def n(self) -> int:
        """Number of trajectories."""
        return self.angles.shape[0]

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index) -> Trajectories:
        """A sub-batch (an int keeps the batch axis: ``traj[3]`` has ``n = 1``)."""
        index = [index] if isinstance(index, (int, np.integer)) else index
        return Trajectories.from_angles(self.angles[index], self.params)


def forward_kinematics(angles, params: ArmParams | None = None) -> np.ndarray:
    """Hand position ``[..., 2]`` (m) of the arm at joint angles ``[..., 2]`` (rad).

    ``x = l1 cos(theta_1) + l2 cos(theta_1 + theta_2)``, ``y = l1 sin(theta_1) + l2 sin(theta_1 + theta_2)``.
    """
    params = ArmParams() if params is None else params
    angles = np.asarray(angles, dtype=float)
    if angles.ndim < 1 or angles.shape[-1] != 2:
        raise ValueError(f"angles must have a last axis of 2 joints, not shape {angles.shape}")
    l1, l2 = params.link_lengths
    t1, t12 = angles[..., 0], angles[..., 0] + angles[..., 1]
    return np.stack([l1 * np.cos(t1) + l2 * np.cos(t12), l1 * np.sin(t1) + l2 * np.sin(t12)], axis=-1)


def velocities_from_angles(angles, dt: float) -> np.ndarray:
    """Joint velocities (rad/s) of angles ``[..., steps, 2]`` (rad): ``v(0) = 0``, ``v(t) = (theta(t) - theta(t-1)) / dt``."""
    angles = np.asarray(angles, dtype=float)
    return np.diff(angles, axis=-2, prepend=angles[..., :1, :]) / dt


def integrate_velocities(velocities, start, dt: float) -> np.ndarray:
    """Angles ``[..., steps, 2]`` (rad) reached from ``start`` ``[..., 2]``: ``theta(t) = start + dt sum_{s<=t} v(s)``.

    The inverse of :func:`velocities_from_angles` (whose ``v(0)`` is 0). No joint limits are
    applied: a network's output may drive the arm anywhere, and the loss should see it.
    """
    velocities = np.asarray(velocities, dtype=float)
    return np.asarray(start, dtype=float)[..., None, :] + dt * np.cumsum(velocities, axis=-2)


def _filter_gain(a: float) -> float:
    """``g`` that gives two cascaded filters ``z <- a z + (1 - a) x`` on unit white noise a unit stationary std.

    The cascade's impulse response is ``h(k) = (1 - a)^2 (k + 1) a^k``, so
    ``sum h^2 = (1 - a)^4 (1 + a^2) / (1 - a^2)^3``.
    """
    return float(np.sqrt((1 - a**2) ** 3 / ((1 - a) ** 4 * (1 + a**2))))


def random_trajectories(n: int, params: ArmParams | None = None,
                        rng: np.random.Generator | None = None) -> Trajectories:
    """Draw ``n`` smooth random trajectories (the module docstring gives the process).

    Parameters
    ----------
    n
        Number of trajectories (tasks).
    params
        Arm and process parameters (default :class:`ArmParams`).
    rng
        Seeded generator; the same seed gives the same trajectories, bit for bit.

    Returns
    -------
    Trajectories
        Angles strictly within the joint limits, starting at rest (``v(0) = 0``).
    """
    params = ArmParams() if params is None else params
    if not (isinstance(n, (int, np.integer)) and n >= 1):
        raise ValueError(f"n must be a positive whole number of trajectories, not {n!r}")
    if rng is None:
        raise ValueError("rng is required: pass np.random.default_rng(seed) so the trajectories are reproducible")
    # about eight [n, steps, 2] arrays of float64 (noise, velocities, angles, positions) exist at once
    check_memory(n * params.steps * 2 * 64, f"{n} trajectories of {params.steps} steps")
    lower, upper = params.lower, params.upper
    centre, half = (lower + upper) / 2, (upper - lower) / 2
    phi0 = centre + half * params.start_fraction * rng.uniform(-1.0, 1.0, size=(n, 2))
    a = float(np.exp(-params.dt / params.tau_smooth))
    noise = rng.standard_normal((n, params.steps, 2)) * (params.velocity_scale * _filter_gain(a))
    u = np.zeros((n, params.steps, 2))
    z1 = np.zeros((n, 2))
    z2 = np.zeros((n, 2))
    for t in range(1, params.steps):  # u(0) = 0: the arm starts at rest
        z1 = a * z1 + (1 - a) * noise[:, t]
        z2 = a * z2 + (1 - a) * z1
        u[:, t] = z2
    phi = integrate_velocities(u, phi0, params.dt)
    angles = centre + half * np.tanh((phi - centre) / half)
    return Trajectories.from_angles(angles, params)


def _angle_problem(angles: np.ndarray, params: ArmParams) -> str | None:
    """What is wrong with ``angles`` as trajectories of ``params``' arm, or None."""
    expected = f"[n, {params.steps}, 2] (n trajectories, {params.steps} steps of {params.dt * 1e3:g} ms, 2 joints)"
    if angles.ndim != 3 or angles.shape[0] < 1 or angles.shape[1:] != (params.steps, 2):
        return f"have shape {list(angles.shape)}; expected {expected}"
    bad = ~np.isfinite(angles)
    if bad.any():
        i, t, j = np.argwhere(bad)[0]
        return (f"hold {int(bad.sum())} non-finite values (NaN or inf), the first at trajectory {i}, step {t}, "
                f"joint {j + 1}: give finite angles in radians")
    lower, upper = params.lower, params.upper
    for j in range(2):
        values = angles[..., j]
        low, high = float(values.min()), float(values.max())
        if low < lower[j] or high > upper[j]:
            where = np.argwhere((values < lower[j]) | (values > upper[j]))[0]
            hint = (" (the values look like degrees: convert with np.radians)"
                    if max(abs(low), abs(high)) > 2 * np.pi else "")
            return (f"of joint {j + 1} span [{low:.4g}, {high:.4g}] rad, outside its limits "
                    f"[{lower[j]:.4g}, {upper[j]:.4g}] rad (first at trajectory {where[0]}, step {where[1]}){hint}: "
                    f"keep the trajectories within the limits, or load with clip=True to clip them")
    return None


def load_trajectories(path: str | os.PathLike, params: ArmParams | None = None, *, clip: bool = False) -> Trajectories:
    """Read user trajectories from an ``.npz`` file holding ``angles`` ``[n, steps, 2]`` (rad).

    Parameters
    ----------
    path
        The ``.npz`` file (``np.savez(path, angles=...)``). Other arrays in it are ignored,
        except ``dt`` (s), which must then equal ``params.dt``.
    params
        The arm (default :class:`ArmParams`): fixes ``steps`` and the joint limits.
    clip
        Clip angles outside the joint limits onto them instead of refusing the file.

    Raises
    ------
    TrajectoryFileError
        (a ``ValueError``) naming the file and the problem: missing, not an ``.npz``
        archive, no ``angles`` array, not real numbers, wrong shape, NaN or inf, outside
        the joint limits, or a different ``dt``.
    """
    params = ArmParams() if params is None else params
    path = Path(path)
    name = repr(str(path))
    if not path.is_file():
        raise TrajectoryFileError(f"trajectory file {name} does not exist")
    if not zipfile.is_zipfile(path):
        raise TrajectoryFileError(f"trajectory file {name} is not an .npz archive: save it with "
                                  f"np.savez({name}, angles=angles), angles of shape [n, {params.steps}, 2] in radians")
    try:
        check_npz(path, what="trajectory file", error=TrajectoryFileError)
        with np.load(path, allow_pickle=False) as data:
            keys = list(data.files)
            if "angles" not in keys:
                raise TrajectoryFileError(f"trajectory file {name} has no array 'angles' (it has {keys}): store the "
                                          f"joint angles as angles=..., shape [n, {params.steps}, 2] in radians")
            angles = data["angles"]
            dt = data["dt"] if "dt" in keys else None
    except ARCHIVE_ERRORS as exc:
        if isinstance(exc, TrajectoryFileError):
            raise
        raise TrajectoryFileError(f"trajectory file {name} is not a readable .npz archive ({exc})") from None
    if angles.dtype.kind not in "biuf":
        raise TrajectoryFileError(f"trajectory file {name}: 'angles' holds {angles.dtype} values; "
                                  f"give real numbers (radians)")
    if dt is not None and not (dt.shape == () and dt.dtype.kind in "iuf" and np.isclose(float(dt), params.dt)):
        # one line whatever 'dt' holds: a number, or what the array is (its repr spans lines)
        made = f"dt = {float(dt)!r} s," if dt.shape == () and dt.dtype.kind in "iuf" else \
            f"a 'dt' of shape {list(dt.shape)} and dtype {dt.dtype}, not one number of seconds,"
        raise TrajectoryFileError(f"trajectory file {name} was made with {made} but the task steps by "
                                  f"{params.dt!r} s: resample the trajectories or drop 'dt'")
    angles = angles.astype(float)
    if clip and angles.ndim == 3 and angles.shape[1:] == (params.steps, 2):
        angles = np.clip(angles, params.lower, params.upper)  # NaN stays NaN and is refused below
    problem = _angle_problem(angles, params)
    if problem:
        raise TrajectoryFileError(f"trajectory file {name}: 'angles' {problem}")
    return Trajectories.from_angles(angles, params)


def save_trajectories(path: str | os.PathLike, trajectories: Trajectories) -> None:
    """Write ``trajectories`` as an ``.npz`` (``angles`` in rad, ``dt`` in s), atomically and byte-reproducibly."""
    write_npz(path, {"angles": np.asarray(trajectories.angles, dtype=float),
                     "dt": np.float64(trajectories.params.dt)})


def clock_input(steps: int = 250, n_channels: int = 20, *, kind: str = "rates", rate: float = 100.0,
                dt: float = 1e-3, rng: np.random.Generator | None = None) -> np.ndarray:
    """The network's clock: channel ``k`` is active in the ``k``-th of ``n_channels`` consecutive windows.

    Window ``k`` covers steps ``floor(k T / K) <= t < floor((k + 1) T / K)`` (``T`` = ``steps``,
    ``K`` = ``n_channels``), so exactly one channel is active at every step and the active
    channel tells the network the time.

    Parameters
    ----------
    steps, n_channels
        ``T`` and ``K``; ``1 <= K <= T``.
    kind
        ``"rates"``: the firing rate (Hz), ``rate`` inside a channel's window and 0 outside.
        ``"spikes"``: Poisson spikes (0 or 1 per step, probability ``rate * dt`` in the window),
        drawn from ``rng``.
    rate
        Firing rate of the active channel (Hz); ``rate * dt <= 1`` for spikes.
    dt
        Time step (s).
    rng
        Seeded generator; required for ``kind="spikes"``.

    Returns
    -------
    numpy.ndarray
        ``[steps, n_channels]`` float: rates (Hz) or spikes (0/1).
    """
    if not (isinstance(steps, (int, np.integer)) and steps >= 1):
        raise ValueError(f"steps must be a positive whole number, not {steps!r}")
    if not (isinstance(n_channels, (int, np.integer)) and 1 <= n_channels <= steps):
        raise ValueError(f"n_channels must be a whole number from 1 to steps ({steps}), not {n_channels!r}")
    if not (_positive(rate) and _positive(dt)):
        raise ValueError(f"rate (Hz) and dt (s) must be positive numbers, not {rate!r} and {dt!r}")
    bounds = (np.arange(n_channels + 1) * steps) // n_channels
    window = np.zeros((steps, n_channels))
    for k in range(n_channels):
        window[bounds[k]:bounds[k + 1], k] = 1.0
    if kind == "rates":
        return rate * window
    if kind == "spikes":
        if rng is None:
            raise ValueError("kind='spikes' draws Poisson spikes: pass rng=np.random.default_rng(seed)")
        if rate * dt > 1:
            raise ValueError(f"rate * dt = {rate * dt:g} is more than one spike per step: lower rate below {1 / dt:g} Hz")
        return (rng.random((steps, n_channels)) < rate * dt * window).astype(float)
    raise ValueError(f"kind must be 'rates' or 'spikes', not {kind!r}")


def loss(velocities_pred, target: Trajectories, *, position_weight: float | None = None) -> np.ndarray:
    """Per-trajectory loss ``[B]`` of predicted joint velocities against ``target``.

    With the predicted angles integrated from the target's start pose,
    ``theta_hat(t) = theta(0) + dt sum_{s<=t} v_hat(s)`` (no joint limits), and the hand
    positions ``p = forward_kinematics(theta)``::

        L = mean_{t, j} (v_hat_j(t) - v_j(t))^2  +  lambda mean_t |p_hat(t) - p(t)|^2

    in (rad/s)^2, with ``lambda`` = ``position_weight`` ((rad/s)^2 per m^2; default
    ``target.params.position_weight`` = 100). A 0.1 m hand error then costs as
    much as a 1 rad/s velocity error, and on the default trajectories predicting zero velocity scores
    about equally on the two terms (4.9 and 4.6 (rad/s)^2 on average).

    Parameters
    ----------
    velocities_pred
        ``[B, steps, 2]`` (rad/s), or ``[steps, 2]`` for one trajectory.
    target
        ``B`` trajectories, or one (``n = 1``), which every prediction is then scored against.
    position_weight
        ``lambda``; None takes the target's :class:`ArmParams`.
    """
    params = target.params
    weight = params.position_weight if position_weight is None else position_weight
    if not (_finite(weight) and weight >= 0):
        raise ValueError(f"position_weight must be a number >= 0, not {weight!r}")
    pred = np.asarray(velocities_pred, dtype=float)
    if pred.ndim == 2:
        pred = pred[None]
    if pred.ndim != 3 or pred.shape[1:] != (params.steps, 2):
        raise ValueError(f"velocities_pred must have shape [B, {params.steps}, 2] (rad/s), not {list(pred.shape)}")
    if target.n not in (1, pred.shape[0]):
        raise ValueError(f"{pred.shape[0]} predictions for {target.n} target trajectories: give one prediction per "
                         f"trajectory, or a single target trajectory")
    velocity_error = np.mean((pred - target.velocities) ** 2, axis=(1, 2))
    angles_pred = integrate_velocities(pred, target.angles[:, 0], params.dt)
    position_error = np.mean(np.sum((forward_kinematics(angles_pred, params) - target.xy) ** 2, axis=-1), axis=1)
    return velocity_error + weight * position_error


def plot(target: Trajectories, produced_before, produced_after, path: str | os.PathLike, *, index: int = 0,
         title: str | None = None) -> None:
    """Write a PNG at ``path``: trajectory ``index`` of ``target`` against the network's before and after learning.

    Left: the hand's path in the plane, with the arm drawn at the start pose. Right: the two
    joint angles over time. ``produced_before`` and ``produced_after`` are predicted joint
    velocities ``[steps, 2]`` or ``[B, steps, 2]`` (rad/s; row ``index`` is drawn), integrated
    from the target's start pose as in :func:`loss`. Uses matplotlib's object API on the Agg
    canvas (no pyplot state, no display); the file is written atomically.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    params = target.params
    if not 0 <= index < target.n:
        raise ValueError(f"index {index} is outside the {target.n} target trajectories")
    start = target.angles[index, 0]
    curves = {"target": (target.angles[index], dict(color="k", lw=2.0))}
    for label, produced, style in (("before learning", produced_before, dict(color="C3", lw=1.2, ls="--")),
                                   ("after learning", produced_after, dict(color="C0", lw=1.2))):
        produced = np.asarray(produced, dtype=float)
        produced = produced[index] if produced.ndim == 3 else produced
        if produced.shape != (params.steps, 2):
            raise ValueError(f"{label}: velocities must have shape [{params.steps}, 2] or [B, {params.steps}, 2] "
                             f"(rad/s), not {list(np.shape(produced))}")
        curves[label] = (integrate_velocities(produced, start, params.dt), style)

    fig = Figure(figsize=(11, 4.6), layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(2, 2, width_ratios=(1, 1.3))
    ax_xy = fig.add_subplot(grid[:, 0])
    ax_q = [fig.add_subplot(grid[0, 1]), fig.add_subplot(grid[1, 1])]
    l1, _ = params.link_lengths
    elbow = l1 * np.array([np.cos(start[0]), np.sin(start[0])])
    hand = forward_kinematics(start, params)
    ax_xy.plot([0, elbow[0], hand[0]], [0, elbow[1], hand[1]], "o-", color="0.6", lw=3, ms=5, label="arm at start")
    time_ms = np.arange(params.steps) * params.dt * 1e3
    for label, (angles, style) in curves.items():
        xy = forward_kinematics(angles, params)
        ax_xy.plot(xy[:, 0], xy[:, 1], label=label, **style)
        for j, ax in enumerate(ax_q):
            ax.plot(time_ms, angles[:, j], label=label, **style)
    reach = sum(params.link_lengths)
    ax_xy.set(xlim=(-reach * 1.05, reach * 1.05), ylim=(-reach * 1.05, reach * 1.05), aspect="equal",
              xlabel="x (m)", ylabel="y (m)", title="hand path")
    ax_xy.legend(loc="lower left", fontsize=8)
    ax_xy.grid(alpha=0.3)
    for j, ax in enumerate(ax_q):
        for limit in params.joint_limits[j]:
            ax.axhline(limit, color="0.7", lw=0.8, ls=":")
        ax.set_ylabel(f"theta_{j + 1} (rad)")
        ax.grid(alpha=0.3)
    ax_q[0].set_title("shoulder (1) and elbow (2) angles", fontsize=10)
    if title is not None:
        fig.suptitle(title, fontsize=11)
    ax_q[0].legend(loc="best", fontsize=8)
    ax_q[1].set_xlabel("time (ms)")
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
