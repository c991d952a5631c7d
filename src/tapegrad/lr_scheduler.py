"""Learning-rate schedulers: :mod:`tapegrad.optim.lr_scheduler` under its older name."""

from .optim.lr_scheduler import *  # noqa: F403
from .optim.lr_scheduler import LRScheduler, __all__  # noqa: F401
