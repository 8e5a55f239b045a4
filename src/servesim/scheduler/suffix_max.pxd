# Cython declarations for suffix_max.py (see setup.py).

cdef class SuffixMax:
    cdef public list _index
    cdef public list _value

    cpdef push(self, long index, double value)
    cpdef object max_from(self, long index)
