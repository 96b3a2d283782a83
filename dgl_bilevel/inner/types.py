"""The names inner problems, their training loop and the flat optimizer share for what they pass around."""
from __future__ import annotations

from typing import Callable

#: Inner parameters: a tuple of tensors.
Params = tuple
#: Called with the (detached) inner iterate after every inner step, e.g. to track validation accuracy.
Monitor = Callable[[Params], None]
