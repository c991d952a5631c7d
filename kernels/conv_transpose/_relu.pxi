# The bias_relu epilogue (kernels/fused) applied in place to a fresh output plane, shared by
# the transposed convolution's forward_relu drivers (_phase_cy, _direct_grad_cy), included
# textually after ../_common.pxi (which defines ``real``).


cdef inline void _relu_row(real* y, unsigned char* mask, Py_ssize_t n) noexcept nogil:
    # 0 where v < 0 (NaN and -0.0 pass), mask 1 where not v <= 0
    cdef Py_ssize_t k
    cdef real v
    for k in range(n):
        v = y[k]
        mask[k] = not (v <= 0)
        y[k] = 0 if v < 0 else v
