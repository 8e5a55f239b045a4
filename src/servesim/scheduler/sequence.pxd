# Cython declarations for sequence.py (see setup.py).

cdef class Sequence:
    cdef public long rid
    cdef public double arrival_s
    cdef public long num_prompt
    cdef public long max_output
    cdef public long priority
    cdef public object session
    cdef public tuple prefix
    cdef public tuple chunks
    cdef public long adapter
    cdef public long cached_tokens
    cdef public long num_generated
    cdef public long num_computed
    cdef public double first_scheduled_s
    cdef public double first_token_s
    cdef public double last_token_s
    cdef public double max_itl_s
    cdef public long num_preemptions
    cdef public long group_join
    cdef public long group_generated0
    cdef public long group_computed0
    cdef public long group_epoch
    cdef public long group_next_block
