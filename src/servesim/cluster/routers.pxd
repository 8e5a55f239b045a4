# Cython declarations for routers.py (see setup.py).

cimport cython


cdef class RoundRobinRouter:
    cdef public long _next


cdef class LeastOutstandingRouter:
    @cython.locals(best=Py_ssize_t, i=Py_ssize_t, best_load=long, load=long)
    cpdef Py_ssize_t route(self, object request, object replicas) except? -1
