"""A single-port RAM: the iCE40 UltraPlus's SPRAM on that device, a plain memory elsewhere.

A ``serial`` tile (``Capacity.neuron``) never reads and writes its weight or parameter memory in
the same cycle, so each needs one port. On an iCE40 UltraPlus (the UP5K of the iCEBreaker) such
a memory is a grid of ``SB_SPRAM256KA`` instances (16k x 16 bits each, four on the device):
``ceil(width / 16)`` side by side, ``ceil(depth / 16384)`` deep, the read data of the bank
addressed in the cycle before. Everywhere else (Amaranth's simulator, the Verilog that ``small
hdl`` writes for Verilator and Icarus, other FPGAs) it is an ``amaranth.lib.memory.Memory`` with
one read and one write port on the same address: the same behaviour, a read's word one cycle
after its address. SPRAM has no initial contents: a chip that uses it is loaded over its host
link, so a memory with initial values refuses to be built for it.
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, ClockSignal, Const, Instance, Module, Signal
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

SPRAM_DEPTH, SPRAM_WIDTH, SPRAM_CELLS = 16384, 16, 4
"""Words, bits per word and cells of the iCE40 UP5K's SPRAM."""


def spram_cells(width: int, depth: int) -> int:
    """SB_SPRAM256KA cells a ``width`` x ``depth`` memory takes."""
    return -(-width // SPRAM_WIDTH) * -(-depth // SPRAM_DEPTH)


def has_spram(platform) -> bool:
    """The platform's device is an iCE40 UltraPlus (it has SB_SPRAM256KA cells)."""
    return str(getattr(platform, "device", "")).startswith("iCE40UP")


class SinglePortRAM(wiring.Component):
    """``width`` x ``depth`` words: ``addr``, ``we`` with ``wdata``; ``rdata`` is the word at the
    ``addr`` of the cycle before (undefined after a write)."""

    def __init__(self, width: int, depth: int, init: list[int] | None = None):
        self.width, self.depth, self.init = width, depth, list(init or [])
        super().__init__({"addr": In(range(max(depth, 2))), "we": In(1), "wdata": In(width), "rdata": Out(width)})

    def elaborate(self, platform):
        m = Module()
        if not has_spram(platform):
            m.submodules.mem = mem = memory.Memory(shape=self.width, depth=self.depth, init=self.init)
            rd, wr = mem.read_port(), mem.write_port()
            m.d.comb += [rd.addr.eq(self.addr), wr.addr.eq(self.addr), wr.en.eq(self.we), wr.data.eq(self.wdata),
                         self.rdata.eq(rd.data)]
            return m
        if any(self.init):
            raise ValueError("the iCE40 UltraPlus's SPRAM has no initial contents: build the programmable chip "
                             "(without an image) and load the network over the host link (`small load`)")
        cols, banks = -(-self.width // SPRAM_WIDTH), -(-self.depth // SPRAM_DEPTH)
        low = self.addr[:14]
        bank = self.addr[14:] if banks > 1 else Const(0)
        bank_q = Signal(range(banks))  # the bank whose word DATAOUT holds
        m.d.sync += bank_q.eq(bank)
        words = []
        for b in range(banks):
            pieces = []
            for c in range(cols):
                out = Signal(SPRAM_WIDTH, name=f"spram{b}_{c}_out")
                lo, hi = c * SPRAM_WIDTH, min(self.width, (c + 1) * SPRAM_WIDTH)
                m.submodules[f"spram{b}_{c}"] = Instance(
                    "SB_SPRAM256KA", i_ADDRESS=low, i_DATAIN=self.wdata[lo:hi], i_MASKWREN=Const(0xF, 4),
                    i_WREN=self.we & (bank == b), i_CHIPSELECT=Const(1), i_CLOCK=ClockSignal(), i_STANDBY=Const(0),
                    i_SLEEP=Const(0), i_POWEROFF=Const(1), o_DATAOUT=out)
                pieces.append(out[:hi - lo])
            word = Signal(self.width, name=f"spram{b}_word")
            m.d.comb += word.eq(Cat(*pieces))
            words.append(word)
        m.d.comb += self.rdata.eq(Array(words)[bank_q] if banks > 1 else words[0])
        return m
