# Cython declarations for block_pool.py (see setup.py).

cdef class BlockPool:
    cdef public long num_blocks
    cdef public list _free
