"""Training for the chip you have: surrogate-gradient fine-tuning of a SMALL network against a
concrete chip's tiles, precision and faulty devices (``small finetune``, ``docs/finetune.md``).

* :mod:`train.finetune` -- the operation: options, the loop, the files it writes;
* :mod:`train.torchnet` -- the network IR as a torch module (``docs/semantics.md``, with a
  surrogate gradient for the spikes);
* :mod:`train.chip` -- where every synapse sits on the compiled chip, and what the chip's levels
  and devices make of a weight (quantisation, stuck and reversed devices);
* :mod:`train.rewire` -- connectivity masks that keep every tile's rows within its budget.

torch is an optional extra (``pip install small-toolchain[train]``): nothing here imports it at
module level, and :func:`require_torch` says how to install it.
"""

from __future__ import annotations

from small.errors import UnsupportedError

TORCH_VERSION = "2.13.0"
INSTALL_HINT = f"install the training extra: pip install 'small-toolchain[train]' (torch=={TORCH_VERSION}, CPU build)"


def require_torch():
    """The ``torch`` module; :class:`UnsupportedError` saying how to install it when it is missing."""
    try:
        import torch
    except ImportError:
        raise UnsupportedError(f"fine-tuning needs torch, which is not installed: {INSTALL_HINT}") from None
    return torch
