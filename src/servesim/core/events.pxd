# Cython declarations for events.py (see setup.py): C-typed fields and calls
# for the compiled core.  The .py file stays the one definition of behaviour.

cdef class EventLoop:
    cdef public list _heap
    cdef public long _seq
    cdef public set _cancelled
    cdef public double now
    cdef public long num_events

    cpdef long schedule(self, double time_s, long priority, object callback, object payload=*) except? -1
    cpdef cancel(self, long token)
