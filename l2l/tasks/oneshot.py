"""Task ``arm``: meta-train the arm controller to learn a new trajectory from one demonstration.

``[run] task = "arm"``. A candidate is the learner's parameter vector (``l2l/learner.py``:
weights, feedback weights, learning rates); its loss is the mean arm loss *after* the one-shot
e-prop update, on ``batch`` random trajectories drawn from the evaluation's seed, with the
candidate compiled and run on ``hardware``. The ``[task]`` section:

============ ======= ========= =============================================================
field        type    default   meaning
============ ======= ========= =============================================================
hardware     string  "pcm"     ``float``, ``digital``, ``ideal``, ``pcm`` or ``tiox`` (``l2l/hardware.py``)
batch        integer 16        trajectories per evaluation
init_seed    integer 0         the random starting network (``LearnerSpec.initial``)
sigma0       number  0.02      default initial step size of the optimiser
t_learn      number  60        seconds after programming when the demonstration is learned
t_test       number  120       seconds after programming when the result is tested
n_clock      integer 20        and the other ``LearnerSpec`` fields: the architecture
n_lif        integer 20
n_alif       integer 20
tau_mem      number  0.02      s
tau_out      number  0.02      s
tau_adapt    number  0.2       s
beta         number  1.0       ALIF adaptation strength
threshold    number  1.0
gamma        number  0.3       e-prop pseudo-derivative dampening
levels       integer 17        device levels (17: PCM steps of 1/16 of the range)
tile         integer 128       rows and columns of a tile
============ ======= ========= =============================================================
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping

import numpy as np

from small.limits import CELL_BYTES, check_memory

from . import Task, register

__all__ = ["ArmTask"]


@register
@dataclass(frozen=True)
class ArmTask(Task):
    """One-shot trajectory learning on the simulated chip (see the module)."""

    name = "arm"

    spec: Any = None
    """The learner's :class:`~l2l.learner.LearnerSpec`."""
    hardware: str = "pcm"
    batch: int = 16
    init_seed: int = 0
    sigma0: float = 0.02
    t_learn: float = 60.0
    t_test: float = 120.0

    def __post_init__(self):
        if self.spec is None:
            return
        s = self.spec
        n = s.n_lif + s.n_alif
        # per trajectory: e-prop's eligibility trace per synapse and every neuron's state per step
        per_trajectory = ((s.n_clock + n) * n + s.arm.steps * (s.n_clock + n)) * 32
        check_memory(self.batch * per_trajectory + s.tile * s.tile * CELL_BYTES,
                     f"batch {self.batch} trajectories of {s.n_clock} clock + {n} neurons on {s.tile}x{s.tile} tiles",
                     error=ValueError)

    @classmethod
    def from_config(cls, section: Mapping[str, Any], where: str) -> ArmTask:
        from l2l.fields import Field, fields
        from l2l.hardware import HARDWARE
        from l2l.learner import LearnerSpec

        defaults = LearnerSpec()
        spec_fields = {
            name: Field(type(value), default=value, minimum=0 if isinstance(value, (int, float)) else None)
            for name, value in asdict(defaults).items() if name != "arm"
        }
        values = fields(section, where, {
            "hardware": Field(str, default="pcm", choices=HARDWARE),
            "batch": Field(int, default=16, minimum=1, doc="trajectories per evaluation"),
            "init_seed": Field(int, default=0),
            "sigma0": Field(float, default=0.02),
            "t_learn": Field(float, default=60.0, minimum=0),
            "t_test": Field(float, default=120.0, minimum=0),
            **spec_fields,
        })
        spec = LearnerSpec(**{name: values.pop(name) for name in spec_fields})
        return cls(spec=spec, **values)

    def x0(self) -> np.ndarray:
        return self.spec.initial(self.init_seed)

    def trajectories(self, seed: int):
        from l2l.tasks import arm

        return arm.random_trajectories(self.batch, self.spec.arm, rng=np.random.default_rng(seed))

    def evaluate(self, x: np.ndarray, seed: int) -> tuple[float, dict]:
        from l2l.learner import one_shot

        r = one_shot(self.spec, x, self.trajectories(seed), self.hardware, seed=seed,
                     t_learn=self.t_learn, t_test=self.t_test)
        return float(np.mean(r.loss_after)), {"loss_before": float(np.mean(r.loss_before)),
                                              "loss_after": float(np.mean(r.loss_after)), "ratio": r.ratio,
                                              "written_fraction": r.written_fraction}

    def describe(self) -> str:
        s = self.spec
        return (f"task 'arm' ({s.size} parameters: {s.n_lif} LIF + {s.n_alif} ALIF neurons, "
                f"{self.batch} trajectories per evaluation on {self.hardware} hardware)")
