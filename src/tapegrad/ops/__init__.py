"""Ops: each a :class:`~tapegrad.autograd.Function` whose forward and backward sit together.

One module per op family (``conv``, ``pool``, ``loss``, ...). Ops validate their
arguments (``checks``), pick a kernel variant from ``tapegrad.kernels`` and call it.
"""
