# Cython declarations for manager.py (see setup.py).

from servesim.kvcache.block_pool cimport BlockPool


cdef class KVCacheManager:
    cdef public long block_size
    cdef public BlockPool pool
    cdef public list _free
    cdef public dict _blocks

    cpdef long blocks_for(self, long num_tokens)
    cpdef long num_blocks_of(self, long request_id)
    cpdef bint allocate_slots(self, long request_id, long num_tokens) except -1
    cpdef bint append_block(self, long request_id) except -1
    cpdef free(self, long request_id)
