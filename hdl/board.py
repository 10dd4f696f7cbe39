"""A SMALL chip on an FPGA board: the chip, its UART host bridge, the board's pins and LEDs.

``BoardTop(capacity, baud=115200)`` (or ``BoardTop(image)``, the ROM chip of an image) is the
top-level design that :func:`hdl.export.build_bitstream` builds for a board (an
``amaranth-boards`` platform, the iCEBreaker by default):

- :class:`BridgedChip`: the :class:`~hdl.chip.Chip`, its host and configuration ports wired to
  a :class:`~hdl.host_bridge.HostBridge` (host protocol v2, ``docs/host-protocol.md``);
- the bridge's ``rx``/``tx`` on the platform's ``uart`` resource (on the iCEBreaker the FTDI
  chip's second channel: rx pin 6, tx pin 9), at ``baud`` from the platform's default clock
  (12 MHz on the iCEBreaker); the bridge synchronises ``rx`` itself;
- LEDs, where the board has them: ``led`` 0 (red on the iCEBreaker) lights when the bridge has
  lost a command frame (``overflow``, sticky until reset) or seen a framing error; ``led`` 1
  (green) blinks for about 50 ms after every command taken or output event sent (activity).

The design runs in the platform's default ``sync`` domain; amaranth's iCE40 platforms hold it in
reset for 15 us after configuration (the iCE40 block RAMs read zero before that).
"""

from __future__ import annotations

from amaranth.build import ResourceError
from amaranth.hdl import Elaboratable, Module, Signal
from amaranth.lib import io, wiring
from amaranth.lib.wiring import In, Out

from compiler.capacity import Capacity
from compiler.image import HardwareImage

from .chip import Chip
from .host_bridge import HostBridge
from .tile import LANES

DEFAULT_BAUD = 115200
ACTIVITY_S = 0.05  # how long the activity LED stays lit after an event


class BridgedChip(wiring.Component):
    """A chip behind its UART bridge: the two serial pins are its host ports.

    ``BridgedChip(spec, image=None, clk_freq=, baud=, fifo_depth=None, lanes=LANES)`` with ``spec``
    and ``image`` as for :class:`~hdl.chip.Chip`: ports ``rx`` (in), ``tx`` (out), and the
    bridge's sticky ``overflow`` and ``framing_error``. This is the design :class:`BoardTop` puts
    on a board's pins, and the one ``small verify --uart`` and ``--port sim`` simulate (where a
    fast ``baud`` keeps the serial frames short).
    """

    def __init__(self, spec: Capacity | HardwareImage, *, image: HardwareImage | None = None, clk_freq: int,
                 baud: int, fifo_depth: int | None = None, lanes: int = LANES):
        if isinstance(spec, HardwareImage) and spec.target != "digital":
            self._MustUse__silence = True
            raise ValueError(f"BridgedChip needs a digital image, not a {spec.target!r} one: a memristive chip's "
                             "analog ports would be left unconnected")
        self.chip = Chip(spec, image=image, lanes=lanes)
        self.bridge = HostBridge(self.chip.capacity, clk_freq=clk_freq, baud=baud, fifo_depth=fifo_depth)
        super().__init__({"rx": In(1, init=1), "tx": Out(1, init=1), "overflow": Out(1), "framing_error": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.chip = chip = self.chip
        m.submodules.bridge = bridge = self.bridge
        wiring.connect(m, bridge.commands, chip.commands)
        wiring.connect(m, chip.outputs, bridge.outputs)
        wiring.connect(m, bridge.config, chip.config)
        wiring.connect(m, chip.readback, bridge.readback)
        m.d.comb += [bridge.rx.eq(self.rx), self.tx.eq(bridge.tx), self.overflow.eq(bridge.overflow),
                     self.framing_error.eq(bridge.framing_error)]
        return m


class BoardTop(Elaboratable):
    """Chip + HostBridge + the board's UART pins and LEDs (see the module docstring).

    ``BoardTop(spec, image=None, baud=115200, fifo_depth=None, lanes=LANES)``: ``spec`` and
    ``image`` as for :class:`~hdl.chip.Chip`; ``fifo_depth`` is the bridge's command FIFO (by
    default ``n_inputs + 2``). ``chip`` and ``bridge`` are built at elaboration (the bridge
    needs the platform's clock frequency); a baud rate the clock cannot make raises
    ``ValueError`` then.
    """

    def __init__(self, spec: Capacity | HardwareImage, *, image: HardwareImage | None = None,
                 baud: int = DEFAULT_BAUD, fifo_depth: int | None = None, lanes: int = LANES):
        if isinstance(spec, HardwareImage) and spec.target != "digital":
            raise ValueError(f"BoardTop needs a digital image (the digital twin), not a {spec.target!r} one: "
                             "compile with --target digital")
        self.spec, self.image = spec, image
        self.baud = baud
        self.fifo_depth = fifo_depth
        self.lanes = lanes
        self.chip: Chip | None = None
        self.bridge: HostBridge | None = None

    def elaborate(self, platform):
        if platform is None:
            raise ValueError("BoardTop needs a board platform (hdl.export.build_bitstream gives it one); "
                             "export hdl.chip.Chip for a bare chip")
        m = Module()
        clk_freq = int(platform.default_clk_frequency)
        m.submodules.core = core = BridgedChip(self.spec, image=self.image, clk_freq=clk_freq, baud=self.baud,
                                               fifo_depth=self.fifo_depth, lanes=self.lanes)
        chip, bridge = self.chip, self.bridge = core.chip, core.bridge

        uart = platform.request("uart", 0, dir="-")
        m.submodules.rx_buffer = rx = io.Buffer("i", uart.rx)
        m.submodules.tx_buffer = tx = io.Buffer("o", uart.tx)
        m.d.comb += [core.rx.eq(rx.i), tx.o.eq(core.tx)]

        # activity: a counter reloaded by every event that crosses the host ports
        hold = max(1, int(clk_freq * ACTIVITY_S))
        activity = Signal(range(hold + 1))
        event = (bridge.commands.valid & bridge.commands.ready) | (chip.outputs.valid & chip.outputs.ready)
        with m.If(event):
            m.d.sync += activity.eq(hold)
        with m.Elif(activity != 0):
            m.d.sync += activity.eq(activity - 1)

        for index, value in ((0, core.overflow | core.framing_error), (1, activity != 0)):
            try:
                led = platform.request("led", index, dir="-")
            except ResourceError:
                continue  # a board with fewer LEDs
            m.submodules[f"led{index}_buffer"] = buffer = io.Buffer("o", led)
            m.d.comb += buffer.o.eq(value)
        return m
